"""Tests for solvers.cvx: the CVXPY reference, Max Gini and the polish step.

Every check is against an independent computation: brute-force loops over joint actions,
closed-form optima, KKT conditions, or a second solver.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from solvers import cvx as P
from solvers.cvx import finish
from solvers.dual import dual_problem, joint_from_duals, restrict
from solvers.face import polytope_face
from solvers.gains import dense_gains, gains
from solvers.game import normalise
from solvers.lp import constraint_matrix
from solvers.selection import Selection, SelectionParams, resolve_selection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Agreement between two accurate solves of the same convex problem.
OBJ_TOL = 1e-7
#: Feasibility of a reference joint (normalised units).
FEAS_TOL = 1e-9
#: A raw interior-point joint is accurate to about the square root of its objective's
#: accuracy (the objective is flat at the optimum); the Newton-refined one to rounding.
RAW_JOINT_TOL = 2e-6
JOINT_TOL = 1e-10

CHICKEN = np.stack([np.array([[6.0, 2.0], [7.0, 0.0]]), np.array([[6.0, 7.0], [2.0, 0.0]])])


def random_game(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(len(shape),) + shape)


def params_for(payoffs: np.ndarray, selection: str | Selection) -> tuple[np.ndarray, SelectionParams]:
    sel = selection if isinstance(selection, Selection) else getattr(Selection, selection)()
    ng = normalise(payoffs)
    return ng.payoffs, resolve_selection(sel, ng)


def brute_force_expected_gains(payoffs: np.ndarray, joint: np.ndarray, concept: str) -> dict:
    """``{(p, dev) or (p, dev, rec): E_joint[gain]}`` by looping over joint actions."""
    shape = payoffs.shape[1:]
    out: dict = {}
    for p, n in enumerate(shape):
        for dev in range(n):
            recs = [None] if concept == "cce" else [r for r in range(n) if r != dev]
            for rec in recs:
                total = 0.0
                for a in itertools.product(*(range(m) for m in shape)):
                    if rec is not None and a[p] != rec:
                        continue
                    b = list(a)
                    b[p] = dev
                    total += joint[a] * (payoffs[(p, *b)] - payoffs[(p, *a)])
                out[(p, dev) if rec is None else (p, dev, rec)] = total
    return out


# --- constraint rows -----------------------------------------------------------------


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("shape", [(2, 3), (3, 2, 2), (4, 4)])
def test_constraint_matrix_matches_brute_force_and_gains_layout(concept, shape):
    payoffs = random_game(1, shape)
    joint = np.random.default_rng(2).dirichlet(np.ones(int(np.prod(shape)))).reshape(shape)
    matrix, player = constraint_matrix(payoffs, concept)
    expected = matrix @ joint.ravel()
    brute = brute_force_expected_gains(payoffs, joint, concept)
    assert matrix.shape[0] == len(brute)
    # Same row order as solvers.gains (player-major, deviation, recommendation != dev).
    np.testing.assert_allclose(expected, np.array(list(brute.values())), atol=1e-12)
    np.testing.assert_array_equal(player, [key[0] for key in brute])
    np.testing.assert_allclose(matrix.toarray(), dense_gains(gains(payoffs, concept)), atol=1e-12)


# --- reference_solve -----------------------------------------------------------------


def gibbs_residual(payoffs, concept, params, res) -> float:
    """``max |sigma - softmax(b - M' alpha)|`` on the support: the stationarity condition."""
    matrix, _ = constraint_matrix(payoffs, concept)
    sigma = res.joint.ravel()
    support = sigma > 1e-7
    logits = params.base_logits - matrix.T @ res.duals
    lg = logits[support]
    gibbs = np.exp(lg - lg.max())
    gibbs *= sigma[support].sum() / gibbs.sum()
    return float(np.max(np.abs(gibbs - sigma[support])))


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("preset", ["me", "mw", "ms"])
def test_reference_solvers_agree_and_satisfy_kkt(concept, preset):
    payoffs, params = params_for(random_game(3, (4, 4)), preset)
    results = {s: P.reference_solve(payoffs, concept, params, solver=s) for s in P.ENTROPY_SOLVERS}
    clarabel = results["CLARABEL"]
    assert clarabel.status == "optimal"
    assert clarabel.violation <= FEAS_TOL
    assert -1e-8 <= clarabel.duality_gap <= 1e-7
    assert np.all(clarabel.duals >= 0)
    assert gibbs_residual(payoffs, concept, params, clarabel) < 1e-6
    for name, res in results.items():
        assert res.status.startswith("optimal"), name
        # SCS is a first-order method: a looser but still tight agreement.
        tol = OBJ_TOL if name != "SCS" else 1e-4
        assert res.objective == pytest.approx(clarabel.objective, abs=tol), name
    if math.isinf(params.rho):
        np.testing.assert_array_equal(clarabel.eps, params.eps_hat)
    else:
        assert np.all(clarabel.eps < params.eps_plus)
        # Maximum strength: strictly negative gaps are reached (eps_hat = -eps_plus).
        assert np.all(clarabel.gaps <= clarabel.eps + FEAS_TOL)


@pytest.mark.parametrize("seed", range(3))
def test_reference_face_and_plain_agree_on_ce(seed):
    payoffs, params = params_for(random_game(10 + seed, (6, 6)), "me")
    faced = P.reference_solve(payoffs, "ce", params, face=True)
    plain = P.reference_solve(payoffs, "ce", params, face=False)
    assert faced.status == "optimal"
    assert faced.violation <= 1e-11
    # Without the face LP an interior-point solver loses digits on a face; still close.
    assert plain.objective == pytest.approx(faced.objective, abs=1e-6)
    np.testing.assert_allclose(plain.joint, faced.joint, atol=1e-5)


def test_reference_trivial_game_is_the_target():
    """A game with constant payoffs has no binding constraint: the answer is the target."""
    payoffs = np.zeros((2, 3, 4))
    target = np.random.default_rng(4).dirichlet(np.ones(12)).reshape(3, 4)
    for concept in ("cce", "ce"):
        _, params = params_for(payoffs, Selection.mre(target))
        res = P.reference_solve(payoffs, concept, params)
        np.testing.assert_allclose(res.joint, target, atol=JOINT_TOL)
        assert res.objective == pytest.approx(0.0, abs=1e-9)  # -KL(target || target)


def test_reference_uniform_objective_is_zero_for_me_on_symmetric_zero_sum():
    """Rock-paper-scissors: the uniform joint is a CE, so ME selects it (objective 0)."""
    rps = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
    payoffs, params = params_for(np.stack([rps, -rps]), "me")
    for concept in ("cce", "ce"):
        res = P.reference_solve(payoffs, concept, params)
        np.testing.assert_allclose(res.joint, np.full((3, 3), 1 / 9), atol=JOINT_TOL)
        assert res.objective == pytest.approx(0.0, abs=1e-9)


def test_reference_chicken_me_ce_closed_form():
    """ME CE of chicken: sigma = [[a, b], [b, b/2]], b = 1/(2.5 + 2^-0.2), a = 2^-0.2 b.

    CE constraints (C = 0, D = 1): a <= 2b, a <= 2c, d <= b/2, d <= c/2. Uniform violates
    d <= b/2, so by symmetry (b = c) the optimum has d = b/2 and maximises the entropy
    on the line a + 2.5 b = 1: 2.5 ln a = 2.5 ln b - 0.5 ln 2.
    """
    b = 1.0 / (2.5 + 2.0**-0.2)
    expected = np.array([[2.0**-0.2 * b, b], [b, b / 2]])
    payoffs, params = params_for(CHICKEN, "me")
    for solver in P.ENTROPY_SOLVERS:
        res = P.reference_solve(payoffs, "ce", params, solver=solver)
        np.testing.assert_allclose(res.joint, expected, atol=JOINT_TOL)
        raw = P.reference_solve(payoffs, "ce", params, solver=solver, refine=False)
        np.testing.assert_allclose(raw.joint, expected, atol=RAW_JOINT_TOL)
        closed = P.entropy_objective(expected, params.eps_hat, params.base_logits, params.eps_hat, params.eps_plus, params.rho)
        assert res.objective == pytest.approx(closed, abs=1e-9)


def test_reference_soft_player_without_deviations():
    """Under CE a one-action player has no constraint rows: with soft constraints its
    eps sits at the penalty's optimum eps_hat (MS: -eps_plus), not at 0."""
    payoffs, params = params_for(random_game(15, (1, 3)), "ms")
    res = P.reference_solve(payoffs, "ce", params)
    assert res.eps[0] == pytest.approx(params.eps_hat[0], abs=1e-6)
    assert abs(res.duality_gap) <= 1e-8
    problem = dual_problem(normalise(random_game(15, (1, 3))), "ce", params)
    out = P.polish(problem)
    assert out.status == "optimal" and abs(out.duality_gap) <= 1e-8


def test_reference_infeasible_eps():
    payoffs, params = params_for(random_game(5, (3, 3)), "me")
    params = params._replace(eps_hat=np.full(2, -50.0))
    res = P.reference_solve(payoffs, "cce", params)
    assert res.status == "infeasible"
    assert res.violation > 0


def test_reference_reports_times_and_validates():
    payoffs, params = params_for(random_game(6, (3, 3)), "me")
    res = P.reference_solve(payoffs, "cce", params)
    assert res.solve_time > 0 and res.setup_time > 0
    with pytest.raises(ValueError, match="solver"):
        P.reference_solve(payoffs, "cce", params, solver="GUROBI")
    with pytest.raises(ValueError, match="concept"):
        P.reference_solve(payoffs, "nash", params)
    with pytest.raises(ValueError, match="base_logits"):
        P.reference_solve(payoffs, "cce", params._replace(base_logits=np.zeros(5)))


def test_reference_passes_gini_params_to_max_gini():
    payoffs, params = params_for(CHICKEN, "mg")
    res = P.reference_solve(payoffs, "ce", params)
    np.testing.assert_allclose(res.joint, np.array([[9.0, 10.0], [10.0, 5.0]]) / 34, atol=1e-8)


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("preset", ["me", "mw", "ms"])
def test_reference_refinement_is_a_kkt_point(concept, preset):
    """The Newton-refined answer: multipliers >= 0, feasible, Gibbs form, zero duality
    gap, and the same optimum whichever interior-point solver started it."""
    payoffs, params = params_for(random_game(21, (5, 5)), preset)
    clarabel = P.reference_solve(payoffs, concept, params)
    ecos = P.reference_solve(payoffs, concept, params, solver="ECOS")
    raw = P.reference_solve(payoffs, concept, params, refine=False)
    assert clarabel.solver == "CLARABEL+newton" and clarabel.status == "optimal"
    assert ecos.solver == "ECOS+newton"
    np.testing.assert_allclose(clarabel.joint, ecos.joint, atol=JOINT_TOL)
    np.testing.assert_allclose(clarabel.joint, raw.joint, atol=RAW_JOINT_TOL)
    assert clarabel.violation <= 1e-12
    assert abs(clarabel.duality_gap) <= 1e-10
    if concept == "cce":  # full support: the Gibbs form holds on every joint action
        assert gibbs_residual(payoffs, concept, params, clarabel) < 1e-12


@pytest.mark.parametrize("preset", ["me", "mw", "ms"])
def test_reference_duals_certify_in_the_foundation_dual(preset):
    """Cross-check with solvers.dual: the reference's multipliers (same flat layout) give
    the reference joint and a zero duality gap in ``solvers.dual.certificate``."""
    from solvers.dual import certificate

    ng = normalise(random_game(16, (4, 5)))
    params = resolve_selection(getattr(Selection, preset)(), ng)
    ref = P.reference_solve(ng.payoffs, "cce", params)
    cert = certificate(dual_problem(ng, "cce", params), ref.duals)
    np.testing.assert_allclose(cert.joint, ref.joint.ravel(), atol=1e-10)
    assert cert.duality_gap == pytest.approx(0.0, abs=1e-9)
    assert cert.dual == pytest.approx(ref.objective + ref.duality_gap, abs=1e-9)


# --- max_gini ------------------------------------------------------------------------


def test_max_gini_chicken_ce_closed_form():
    """min ||sigma||^2 on chicken's CE polytope: d = b/2 active, b = c by symmetry;
    min a^2 + 2.25 b^2 s.t. a + 2.5 b = 1 gives b = 10a/9: sigma = [[9, 10], [10, 5]] / 34."""
    for solver in ("OSQP", "CLARABEL"):
        res = P.max_gini(CHICKEN, "ce", solver=solver)
        assert res.status == "optimal", solver
        np.testing.assert_allclose(res.joint, np.array([[9.0, 10.0], [10.0, 5.0]]) / 34, atol=1e-9)
        assert res.objective == pytest.approx(306 / 34**2, abs=1e-10)
        assert 0 <= res.duality_gap + 1e-12 and res.duality_gap <= P.GINI_GAP_TOL


def test_max_gini_matching_pennies_is_uniform():
    mp = np.array([[1.0, -1.0], [-1.0, 1.0]])
    for concept in ("cce", "ce"):
        res = P.max_gini(np.stack([mp, -mp]), concept)
        np.testing.assert_allclose(res.joint, np.full((2, 2), 0.25), atol=1e-9)


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("shape", [(5, 5), (3, 3, 3)])
def test_max_gini_osqp_matches_interior_point(concept, shape):
    payoffs = normalise(random_game(7, shape)).payoffs
    osqp = P.max_gini(payoffs, concept)
    ipm = P.max_gini(payoffs, concept, solver="CLARABEL", fallback=None)
    assert osqp.status == "optimal"
    assert osqp.violation <= FEAS_TOL
    assert osqp.objective == pytest.approx(ipm.objective, abs=1e-8)
    np.testing.assert_allclose(osqp.joint, ipm.joint, atol=1e-5)
    assert np.all(osqp.joint >= 0) and osqp.joint.sum() == pytest.approx(1.0, abs=1e-12)


def test_gini_dual_bound_is_a_lower_bound():
    payoffs = normalise(random_game(8, (4, 4))).payoffs
    matrix, _ = constraint_matrix(payoffs, "cce")
    rhs = np.zeros(matrix.shape[0])
    best = P.max_gini(payoffs, "cce").objective
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert P.gini_dual_bound(matrix, rhs, rng.exponential(size=matrix.shape[0])) <= best + 1e-12
    assert P.gini_dual_bound(matrix, rhs, np.zeros(matrix.shape[0])) == pytest.approx(1 / 16)


def test_max_gini_osqp_inaccurate_falls_back():
    """A hopelessly loose OSQP run is not certified: the CLARABEL fallback answers."""
    payoffs = normalise(random_game(9, (4, 4))).payoffs
    res = P.max_gini(payoffs, "ce", eps_abs=1e-2, eps_rel=1e-2, polishing=False, max_iter=5)
    assert res.status == "optimal"
    assert res.solver == "CLARABEL"
    loose = P.max_gini(payoffs, "ce", fallback=None, eps_abs=1e-2, eps_rel=1e-2, polishing=False, max_iter=5)
    assert loose.status != "optimal"


def test_max_gini_validates():
    with pytest.raises(ValueError, match="eps_hat"):
        P.max_gini(CHICKEN, "ce", eps_hat=np.zeros(3))
    with pytest.raises(ValueError, match="solver"):
        P.max_gini(CHICKEN, "ce", solver="HIGHS")


# --- polish --------------------------------------------------------------------------


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("preset", ["me", "mw", "ms"])
def test_polish_matches_reference(concept, preset):
    payoffs, params = params_for(random_game(11, (5, 4)), preset)
    problem = dual_problem(normalise(random_game(11, (5, 4))), concept, params)
    start = joint_from_duals(problem, np.zeros(problem.num_constraints))
    res = P.polish(problem, start)
    ref = P.reference_solve(payoffs, concept, params)
    assert res.status in ("optimal", "inaccurate")
    assert res.joint.shape == (20,)
    assert res.objective == pytest.approx(ref.objective, abs=1e-6)
    np.testing.assert_allclose(res.joint, ref.joint.ravel(), atol=1e-5)
    if res.status == "optimal":
        assert res.violation <= P.FEASIBILITY_TOL
        assert res.duality_gap == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("solver", ["ECOS", "SCS"])
def test_polish_other_solvers(solver):
    ng = normalise(random_game(17, (4, 4)))
    params = resolve_selection(Selection.me(), ng)
    problem = dual_problem(ng, "ce", params)
    res = P.polish(problem, solver=solver, fallbacks=())
    ref = P.reference_solve(ng.payoffs, "ce", params)
    assert res.solver.startswith(solver)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(ref.objective, abs=1e-8)


def test_polish_on_a_restricted_face():
    """Given the face (support and equalities), polish keeps zero mass off the support."""
    ng = normalise(random_game(12, (6, 6)))
    params = resolve_selection(Selection.me(), ng)
    problem = dual_problem(ng, "ce", params)
    matrix, player = constraint_matrix(ng.payoffs, "ce")
    face = polytope_face(matrix, np.zeros(matrix.shape[0]))
    assert not face.support.all()  # this game's CE polytope lies on a face
    restricted = restrict(problem, face.support, face.equalities)
    res = P.polish(restricted, None)
    ref = P.reference_solve(ng.payoffs, "ce", params)
    assert res.status == "optimal"
    assert np.all(res.joint[~face.support] == 0)
    assert res.objective == pytest.approx(ref.objective, abs=1e-8)
    # Free rows may carry negative multipliers; the rest are >= 0.
    assert np.all(res.duals[~face.equalities] >= 0)


def test_polish_skips_the_fallbacks_after_a_nearly_feasible_clarabel_answer(monkeypatch):
    """MW-CE near an LP: CLARABEL ends "inaccurate" at a violation of ~3e-9; ECOS, less
    accurate and far slower on large games, is not tried after it."""
    ng = normalise(random_game(2, (10, 10)))
    problem = dual_problem(ng, "ce", resolve_selection(Selection.mw(), ng))
    tried = []
    solve_entropy = finish.solve_entropy

    def spy(*args, **kwargs):
        tried.append(args[1])
        return solve_entropy(*args, **kwargs)

    monkeypatch.setattr(finish, "solve_entropy", spy)
    res = P.polish(problem, fallbacks=("ECOS",))
    assert tried == ["CLARABEL"]
    assert res.status == "inaccurate" and res.violation <= P.FALLBACK_SKIP_VIOLATION
    # Without the rule ECOS would run and not do better.
    ecos = P.polish(problem, solver="ECOS", fallbacks=())
    assert ecos.violation >= res.violation or ecos.status != "optimal"


def test_polish_keeps_a_better_start():
    """The start joint is returned when it is feasible and better than the solvers'."""
    ng = normalise(random_game(13, (3, 3)))
    params = resolve_selection(Selection.me(), ng)
    problem = dual_problem(ng, "cce", params)
    ref = P.polish(problem)
    # A cap of one iteration gives CLARABEL no chance; ECOS is not in the chain.
    res = P.polish(problem, ref.joint, fallbacks=(), max_iter=1)
    assert res.solver == "start"
    np.testing.assert_allclose(res.joint, ref.joint)
    assert res.status != "optimal"


def test_polish_validates_start_shape():
    ng = normalise(random_game(14, (3, 3)))
    problem = dual_problem(ng, "cce", resolve_selection(Selection.me(), ng))
    with pytest.raises(ValueError, match="joint0"):
        P.polish(problem, np.ones(4) / 4)


# --- imports -------------------------------------------------------------------------


def _run_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_solvers_imports_neither_cvxpy_nor_jax_and_polish_runs_without_jax():
    """One fresh process: ``import solvers`` loads neither; the polish loads CVXPY only."""
    code = (
        "import sys, numpy as np, solvers, solvers.cvx, solvers.polish\n"
        "print('jax' in sys.modules, 'cvxpy' in sys.modules)\n"
        "from solvers.dual import dual_problem\n"
        "from solvers.game import normalise\n"
        "from solvers.selection import Selection, resolve_selection\n"
        "ng = normalise(np.random.default_rng(0).normal(size=(2, 3, 3)))\n"
        "res = solvers.cvx.polish(dual_problem(ng, 'ce', resolve_selection(Selection.me(), ng)))\n"
        # False also says the guard's sys.modules["jax"] = None is gone: JAX stays importable.
        "print(res.status, 'cvxpy' in sys.modules, 'jax' in sys.modules)\n"
    )
    assert _run_python(code).split() == ["False", "False", "optimal", "True", "False"]
