"""solve / solve_batch / refine_batch: results, payoff units, warm starts, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from solvers import Selection, Solution, Status, refine_batch, solve, solve_batch
from solvers.dual import dual_problem, joint_from_duals
from solvers.game import normalise, normalise_batch
from solvers.lp import max_welfare
from solvers.selection import resolve_selection

PD = np.array([[[-1.0, -3.0], [0.0, -2.0]], [[-1.0, 0.0], [-3.0, -2.0]]])
TOL = 1e-8


def _game(shape, seed):
    return np.random.default_rng(seed).normal(size=(len(shape),) + shape)


def _check(sol: Solution, tol: float = TOL) -> None:
    assert sol.status is Status.OPTIMAL
    assert np.all(sol.joint >= 0) and sol.joint.sum() == pytest.approx(1.0, abs=1e-12)
    assert sol.normalised_gap <= tol
    assert abs(sol.duality_gap) <= tol
    assert np.all(sol.duals >= 0)
    for p, m in enumerate(sol.marginals):
        axes = tuple(i for i in range(sol.joint.ndim) if i != p)
        np.testing.assert_allclose(m, sol.joint.sum(axis=axes), atol=1e-15)


@pytest.mark.parametrize("shape", [(4, 4), (8, 8), (3, 2, 3), (1, 3)])
@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_solve_random_games(shape, concept):
    for seed in range(3):
        sol = solve(_game(shape, seed), concept)
        _check(sol)
        assert sol.concept == concept and sol.selection.name == "me"
        assert sol.joint.shape == shape
        assert sol.timings["total"] > 0
        assert sol.iterations >= 1


@pytest.mark.parametrize("preset", ["mre", "mw", "mwme", "ms"])
def test_presets(preset):
    game = _game((4, 3), 11)
    kw = {"mre": {"target": np.full((4, 3), 1 / 12)}, "mwme": {"welfare": _game((4, 3), 12)[0]}}
    sol = solve(game, "ce", preset, **kw.get(preset, {}))
    assert sol.status is Status.OPTIMAL and sol.selection.name == preset
    assert abs(sol.duality_gap) <= TOL


def test_mre_with_uniform_target_is_me():
    game = _game((3, 4), 13)
    me = solve(game, "cce")
    mre = solve(game, "cce", "mre", target=np.full((3, 4), 1 / 12))
    np.testing.assert_allclose(me.joint, mre.joint, atol=1e-9)


def test_bimatrix_pair_and_payoff_units():
    game = _game((3, 4), 14)
    sol = solve((game[0], game[1]), "ce")
    scaled = solve((5.0 * game[0] + 2.0, 0.5 * game[1] - 1.0), "ce")
    np.testing.assert_allclose(sol.joint, scaled.joint, atol=1e-9)
    np.testing.assert_allclose(scaled.scale, sol.scale / [5.0, 0.5], rtol=1e-12)
    np.testing.assert_allclose(scaled.gaps * scaled.scale, sol.gaps * sol.scale, atol=1e-12)
    # Payoff-unit duals alpha_p = s_p alpha'_p: back in normalised units they give the joint.
    norm = normalise(5.0 * game + 1.0)
    problem = dual_problem(norm, "ce", resolve_selection(Selection.me(), norm))
    sol5 = solve(5.0 * game + 1.0, "ce")
    alpha = sol5.duals / sol5.scale[problem.player]
    np.testing.assert_allclose(joint_from_duals(problem, alpha), sol5.joint.ravel(), atol=1e-12)
    np.testing.assert_allclose(sol5.duals * 5.0, sol.duals, rtol=1e-9, atol=1e-9)


def test_gap_is_in_payoff_units():
    game = _game((3, 3), 15)
    sol = solve(100.0 * game, "cce", eps_hat=1.0)  # 1 payoff unit of slack
    assert sol.status is Status.OPTIMAL
    np.testing.assert_allclose(sol.eps, 1.0)
    assert sol.gap <= 1.0 + 1e-6 and sol.gap == pytest.approx(sol.gaps.max())


def test_prisoners_dilemma_ce_is_defect_defect():
    for concept in ("cce", "ce"):
        sol = solve(PD, concept)
        _check(sol)
        assert sol.joint[1, 1] == pytest.approx(1.0, abs=1e-8)


def test_warm_start_round_trip():
    for concept, game in (("cce", _game((5, 5), 16)), ("ce", _game((5, 5), 17)), ("ce", PD)):
        first = solve(game, concept)
        again = solve(game, concept, duals0=first.duals)
        np.testing.assert_allclose(again.joint, first.joint, atol=1e-9)
        assert again.iterations <= 1
        assert again.status is Status.OPTIMAL


def test_face_always_gives_exact_zeros():
    sol = solve(PD, "ce", face="always")
    _check(sol)
    assert sol.joint[1, 1] == 1.0 and sol.info["face"]
    assert sol.info["restricted_duals"].shape == sol.duals.shape
    again = solve(PD, "ce", duals0=sol.duals)  # lifted duals are a valid warm start
    np.testing.assert_allclose(again.joint, sol.joint, atol=1e-12)


def test_constant_player_and_constant_game():
    game = _game((3, 3), 18)
    game[1] = 2.5
    _check(solve(game, "ce"))
    flat = solve(np.ones((2, 2, 3)), "cce")
    _check(flat)
    np.testing.assert_allclose(flat.joint, 1 / 6)


def test_gd_and_newton_agree():
    game = _game((4, 4), 19)
    newton = solve(game, "cce", method="newton")
    gd = solve(game, "cce", method="gd")
    assert gd.method.startswith("gd") and newton.method.startswith("newton")
    np.testing.assert_allclose(gd.joint, newton.joint, atol=1e-6)


def test_cvxpy_and_gini_methods_delegate():
    game = _game((3, 3), 20)
    ref = solve(game, "cce", method="cvxpy")
    assert ref.method.startswith("cvxpy")
    np.testing.assert_allclose(ref.joint, solve(game, "cce").joint, atol=1e-6)
    gini = solve(game, "cce", "mg")
    assert gini.selection.objective == "gini" and gini.status is Status.OPTIMAL


def test_infeasible_eps_hat():
    sol = solve(_game((3, 3), 21), "cce", eps_hat=-50.0)
    assert sol.status is Status.INFEASIBLE and math.isnan(sol.duality_gap)


def test_status_is_honest_under_tiny_budgets():
    # Whatever path finishes the solve, "optimal" must mean the tolerances hold.
    for seed in range(3):
        for max_iter in (1, 2):
            sol = solve(_game((6, 6), 22 + seed), "ce", max_iter=max_iter)
            if sol.status is Status.OPTIMAL:
                assert sol.normalised_gap <= TOL and abs(sol.duality_gap) <= TOL
            else:
                assert sol.status in (Status.MAX_ITER, Status.INACCURATE)


def test_near_lp_max_welfare_ce_is_certified_by_newton():
    # MW-CE with a large welfare weight is nearly an LP: Newton needs hundreds of
    # iterations while the active set settles (426 here). Under the old cap of 200 it
    # went to the CVXPY polish, which missed tol ("inaccurate", 2 s).
    game = _game((16, 16), 0)
    mu = 100.0
    sol = solve(game, "ce", "mw", mu=mu)
    _check(sol)
    assert "cvxpy" not in sol.method and sol.iterations > 200
    # Independent check: the LP's maximum welfare (HiGHS) bounds the answer's welfare,
    # mu <s, W> + H(s) >= mu W_LP gives <s, W> >= W_LP - ln|A| / mu.
    norm = normalise(game)
    welfare = norm.payoffs.sum(axis=0)
    lp = max_welfare(norm.payoffs, "ce")
    w = float(np.sum(sol.joint * welfare))
    assert lp.welfare - math.log(welfare.size) / mu - 1e-7 <= w <= lp.welfare + 1e-7


def test_refine_batch_without_polish_reports_max_iter():
    games = normalise_batch(np.stack([_game((6, 6), s) for s in range(3)]))
    params = resolve_selection(Selection.me(), normalise(_game((6, 6), 0)))
    res = refine_batch(games.payoffs, "ce", params, max_iter=1, face="never", polish=False)
    assert all(s is Status.MAX_ITER for s in res.status)
    full = refine_batch(games.payoffs, "ce", params)
    assert all(s is Status.OPTIMAL for s in full.status)
    assert np.all(full.violation <= TOL)
    # Network-style warm start in normalised units: the optimum's duals stop at once.
    warm = refine_batch(games.payoffs, "ce", params, alpha0=full.alpha)
    assert np.all(warm.iterations <= 1)
    np.testing.assert_allclose(warm.joint, full.joint, atol=1e-9)


def test_solve_batch_matches_solve():
    games = np.stack([_game((4, 5), s) for s in range(6)])
    batch = solve_batch(games, "ce")
    for g, sol in zip(games, batch, strict=True):
        np.testing.assert_allclose(sol.joint, solve(g, "ce").joint, atol=1e-9)
        _check(sol)


def test_solve_batch_mixed_shapes_keep_order():
    games = [_game((3, 3), 1), _game((2, 4), 2), _game((3, 3), 3), PD]
    out = solve_batch(games, "cce", duals0=[None, None, None, np.zeros(4)])
    assert [s.joint.shape for s in out] == [(3, 3), (2, 4), (3, 3), (2, 2)]
    for g, s in zip(games, out, strict=True):
        np.testing.assert_allclose(s.joint, solve(g, "cce").joint, atol=1e-9)


def test_solve_batch_warm_start_array():
    games = np.stack([_game((4, 4), s) for s in range(4)])
    first = solve_batch(games, "cce")
    again = solve_batch(games, "cce", duals0=np.stack([s.duals for s in first]))
    assert all(s.iterations <= 1 for s in again)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"game": np.array([[[np.nan, 0.0], [0.0, 0.0]]] * 2)}, ValueError, "NaN"),
        ({"game": np.array([[[np.inf, 0.0], [0.0, 0.0]]] * 2)}, ValueError, "inf"),
        ({"game": np.zeros((3, 3))}, ValueError, "shape"),
        ({"game": np.zeros((2, 3, 3, 3))}, ValueError, "players"),
        ({"game": np.zeros((2, 0, 3))}, ValueError, "at least one action"),
        ({"game": np.array([["a", "b"], ["c", "d"]])}, TypeError, "numeric"),
        ({"concept": "nash"}, ValueError, "concept"),
        ({"selection": "maxent"}, ValueError, "preset"),
        ({"selection": 3}, TypeError, "selection"),
        ({"selection": "mre", "target": np.array([[0.5, 0.5, 0.0]] * 3) / 3}, ValueError, "full support"),
        ({"selection": "mre", "target": np.full((2, 2), 0.25)}, ValueError, "shape"),
        ({"selection": "mw", "mu": -1.0}, ValueError, "mu"),
        ({"rho": -1.0}, ValueError, "rho"),
        ({"eps_hat": 0.5, "eps_plus": 0.1, "rho": 1.0}, ValueError, "eps_plus"),
        ({"duals0": np.zeros(5)}, ValueError, "duals0"),
        ({"duals0": -np.ones(18)}, ValueError, "duals0"),
        ({"duals0": np.full(18, np.nan)}, ValueError, "duals0"),
        ({"method": "simplex"}, ValueError, "method"),
        ({"tol": 0.0}, ValueError, "tol"),
        ({"tol": "tight"}, TypeError, "tol"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"max_iter": 2.5}, TypeError, "max_iter"),
        ({"face": "sometimes"}, ValueError, "face"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"game": _game((3, 3), 0), "concept": "ce"}
    args.update(kwargs)
    game = args.pop("game")
    concept = args.pop("concept")
    with pytest.raises(error, match=match):
        solve(game, concept, **args)


def test_bad_batch_input():
    games = np.stack([_game((3, 3), s) for s in range(3)])
    with pytest.raises(ValueError, match="duals0"):
        solve_batch(games, "cce", duals0=np.zeros((2, 6)))
    with pytest.raises(ValueError, match="duals0"):
        solve_batch(games, "cce", duals0=-np.ones((3, 6)))
    with pytest.raises(ValueError, match="empty"):
        solve_batch([], "cce")
    with pytest.raises(TypeError, match="games"):
        solve_batch(3.0, "cce")
    bad = games.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        solve_batch(bad, "cce")


def test_auto_switches_from_gradient_to_newton(monkeypatch):
    import dataclasses

    import solvers.policy as policy

    # force the large-K path on a small game
    monkeypatch.setattr(policy, "DEFAULT_POLICY", dataclasses.replace(policy.DEFAULT_POLICY, newton_max_duals=4,
                                                                       auto_gd_iter=3))
    sol = solve(_game((4, 4), 30), "cce", method="auto")
    assert sol.method == "gd+newton"
    _check(sol)
    np.testing.assert_allclose(sol.joint, solve(_game((4, 4), 30), "cce", method="newton").joint, atol=1e-8)


def test_auto_first_pass_rule():
    import solvers.api as api
    from solvers.policy import DEFAULT_POLICY as P

    # 2-player hard-constraint CEs with many duals get the short first-order pass, others not.
    assert api.auto_first_pass("ce", 2, P.auto_prepass_min_duals, hard=True) == P.auto_prepass_iter
    assert api.auto_first_pass("ce", 2, 112, hard=True) == 0  # 8x8 CE: Newton alone
    assert api.auto_first_pass("cce", 2, 2 * 32, hard=True) == 0
    assert api.auto_first_pass("ce", 3, 396, hard=True) == 0  # 12x12x12 CE: Newton takes ~5 iterations
    assert api.auto_first_pass("ce", 2, 480, hard=False) == 0  # soft constraints (MS)
    # Above NEWTON_MAX_DUALS: a first-order pass before Newton (hard constraints), the
    # first-order method to convergence (soft constraints: strongly convex dual).
    assert api.auto_first_pass("ce", 3, P.newton_max_duals + 1, hard=True) == P.auto_gd_iter
    assert api.auto_first_pass("ce", 2, P.newton_max_duals + 1, hard=False) == P.auto_gd_iter_soft
    assert P.auto_gd_iter_soft > P.auto_gd_iter


def test_auto_on_a_large_soft_constraint_ce_converges_first_order():
    # 28x28 MS-CE, 1,512 duals: the first-order method alone certifies it (Newton after a
    # 500-iteration pass had most duals free: 32x32 3.6 s per game instead of 0.5 s).
    game = _game((28, 28), 3)
    sol = solve(game, "ce", "ms")
    ref = solve(game, "ce", "ms", method="newton")
    for s in (sol, ref):  # soft constraints: the gap is the solved-for eps, not ~0
        assert s.status is Status.OPTIMAL and abs(s.duality_gap) <= TOL
    assert sol.method == "gd"
    np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-6)
    np.testing.assert_allclose(sol.eps, ref.eps, atol=1e-6)


@pytest.mark.parametrize("batched", [False, True])
def test_auto_prepass_on_a_large_ce_agrees_with_newton(batched):
    game = _game((12, 12), 31)  # 264 CE duals
    if batched:
        sol = solve_batch(game[None], "ce", method="auto")[0]
    else:
        sol = solve(game, "ce", method="auto")
    assert sol.method.startswith("gd")
    _check(sol)
    np.testing.assert_allclose(sol.joint, solve(game, "ce", method="newton").joint, atol=1e-7)


def test_stack_solutions_checks_one_shape():
    from solvers.solution import stack_solutions

    sols = solve_batch(np.stack([_game((3, 4), s) for s in range(2)]), "cce")
    arrays = stack_solutions(sols)
    assert arrays["joint"].shape == (2, 3, 4) and list(arrays["status"]) == ["optimal", "optimal"]
    np.testing.assert_array_equal(arrays["iterations"], [s.iterations for s in sols])
    with pytest.raises(ValueError, match="one game shape"):
        stack_solutions([sols[0], solve(_game((2, 2), 0), "cce")])
    with pytest.raises(ValueError, match="no solutions"):
        stack_solutions([])


def test_polish_can_be_switched_off():
    game = _game((6, 6), 22)
    polished = solve(game, "ce", max_iter=1)
    assert "cvxpy" in polished.method
    plain = solve(game, "ce", max_iter=1, polish=False)
    assert "cvxpy" not in plain.method and plain.status is Status.MAX_ITER
    batch = solve_batch(np.stack([game, _game((6, 6), 23)]), "ce", max_iter=1, polish=False)
    assert all("cvxpy" not in s.method and s.status is Status.MAX_ITER for s in batch)
    with pytest.raises(TypeError, match="polish"):
        solve(game, "ce", polish="no")
    with pytest.raises(TypeError, match="polish"):
        solve_batch(game[None], "ce", polish=None)


# ---------------------------------------------------------------------------------------
# One input rule for solve and every form of solve_batch.


def test_complex_payoffs_are_a_type_error_in_every_entry_point():
    game = _game((3, 3), 0) + 1j  # the imaginary part used to be dropped by solve_batch
    with pytest.raises(TypeError, match="game must be real"):
        solve(game, "ce")
    with pytest.raises(TypeError, match="games must be real"):
        solve_batch(game[None], "ce")
    with pytest.raises(TypeError, match=r"games\[0\] must be real"):
        solve_batch([game], "ce")


def test_bool_payoffs_are_read_as_zero_one_in_every_entry_point():
    game = _game((3, 3), 1) > 0  # solve_batch used to refuse bool arrays
    ref = solve(game.astype(np.float64), "ce")
    for sol in (solve(game, "ce"), solve_batch(game[None], "ce")[0], solve_batch([game], "ce")[0]):
        _check(sol)
        np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-12)


@pytest.mark.parametrize("entry", ["solve", "solve_batch"])
def test_unknown_keyword_is_a_type_error_naming_it(entry):
    game = _game((3, 3), 2)
    with pytest.raises(TypeError, match="'model'"):
        if entry == "solve":
            solve(game, "ce", "me", model="cce")
        else:
            solve_batch(game[None], "ce", "me", model="cce")


def test_me_with_a_target_is_refused_not_mre():
    game = _game((3, 3), 3)
    target = np.random.default_rng(3).dirichlet(np.ones(9)).reshape(3, 3)
    with pytest.raises(ValueError, match="'mre'"):
        solve(game, "ce", "me", target=target)
    with pytest.raises(ValueError, match="'mre'"):
        solve_batch(game[None], "ce", "me", target=target)
    with pytest.raises(ValueError, match="eps_hat would be ignored"):
        solve(game, "ce", "ms", eps_hat=0.1)


def test_soft_constraint_optimal_is_the_penalised_optimum_with_positive_gap():
    # "ms": eps is chosen by the penalty (Solution.eps); "optimal" certifies that
    # problem's optimum, so a positive gap <= eps is expected (README, Solution docstring).
    game = np.random.default_rng(0).normal(size=(2, 4, 4)) * np.array([3.0, 0.5])[:, None, None]
    sol = solve(game, "ce", "ms", tol=TOL)
    assert sol.status is Status.OPTIMAL
    assert sol.gap > 0.1  # not an exact CE: its gap 0.27 is the chosen eps of player 0
    assert np.all(sol.gaps <= sol.eps + TOL / sol.scale)
    assert np.all(sol.gaps * sol.scale <= sol.eps * sol.scale + TOL)
    # Maximum strength pushes every eps_p down onto its player's gap.
    np.testing.assert_allclose(sol.eps * sol.scale, sol.gaps * sol.scale, atol=TOL)
    # The CVXPY model of the same penalised problem has the same optimum.
    ref = solve(game, "ce", "ms", method="cvxpy")
    assert ref.status is Status.OPTIMAL
    np.testing.assert_allclose(sol.eps, ref.eps, atol=1e-6)
    np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-6)
    # Batched solves report the same relation.
    games = np.stack([np.random.default_rng(s).normal(size=(2, 4, 4)) for s in range(4)])
    for s in solve_batch(games, "ce", "ms"):
        assert s.ok and np.all(s.gaps * s.scale <= s.eps * s.scale + TOL)
