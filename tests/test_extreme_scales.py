"""Extreme payoff scales and status honesty (issue 18).

Equilibria are invariant to per-player positive scale and offset (DESIGN §5): a finite
game and its copy scaled by 1e-300..1e300, or offset by up to 1e13, get the same joint,
and ``status == "optimal"`` always comes with finite gaps, a finite non-negative duality
gap and a joint that is a distribution. The references are independent of the solver
where one exists: the prisoner's dilemma has the unique (C)CE (D, D); chicken's ME CE
has a closed form (tests/test_classic_games.py).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import solvers
from solvers import Solution, Status, normalise
from solvers import api as solvers_api
from solvers import game as solvers_game
from solvers import kernels as solvers_kernels
from solvers import single as solvers_single
from solvers import small as solvers_small
from solvers.dual import certificate, dual_problem
from solvers.game import CONSTANT_ULPS, normalise_batch
from solvers.selection import Selection, resolve_selection
from solvers.small_screen import read_buffer
from solvers.solution import DUALITY_GAP_ROUNDING

#: Prisoner's dilemma, actions (C, D): the unique CE and CCE is (D, D).
PD = np.stack([np.array([[-1.0, -3.0], [0.0, -2.0]]), np.array([[-1.0, 0.0], [-3.0, -2.0]])])
PD_JOINT = np.array([[0.0, 0.0], [0.0, 1.0]])
#: Chicken, actions (Chicken, Dare), and its ME CE in closed form.
CHICKEN = np.stack([np.array([[6.0, 2.0], [7.0, 0.0]]), np.array([[6.0, 7.0], [2.0, 0.0]])])
_B = 1.0 / (2.5 + 2.0**-0.2)
CHICKEN_ME_CE = np.array([[2.0**-0.2 * _B, _B], [_B, _B / 2]])

#: Two exact solves of equivalent games agree to this (the solver's tol is 1e-8).
JOINT_TOL = 1e-7
F64_MAX = float(np.finfo(np.float64).max)
KUHN_CE = Path(__file__).parent / "data" / "kuhn3_ce_meta_6x6x6.npy"

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _solve(entry: str, game: np.ndarray, concept: str, selection: str = "me", **kw) -> Solution:
    if entry == "solve":
        return solvers.solve(game, concept, selection, **kw)
    if entry == "solve_batch":  # batched with the unscaled PD, which must not matter
        return solvers.solve_batch(np.stack([game, PD]), concept, selection, **kw)[0]
    from hybrid_nes import solve_exact

    return solve_exact(game, concept, selection, warm_start="cold", **kw)


def check_honest(sol: Solution) -> None:
    """What ``status == "optimal"`` promises, checked independently of the guard."""
    assert sol.status is Status.OPTIMAL, (sol, sol.info)
    assert np.all(np.isfinite(sol.joint)) and sol.joint.min() >= 0.0
    assert sol.joint.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.isfinite(sol.gaps)) and math.isfinite(sol.gap)
    assert np.all(np.isfinite(sol.eps))
    assert math.isfinite(sol.duality_gap) and sol.duality_gap >= 0.0
    assert math.isfinite(sol.objective)


# ---------------------------------------------------------------------------------------
# The reported cases: PD x1e-13, +1e13, x1e155, x1e300, near 1.8e308.
# ---------------------------------------------------------------------------------------
PD_CASES = {
    "x1e-13": PD * 1e-13,
    "+1e13": PD + 1e13,
    "x1e-300": PD * 1e-300,
    "x1e155": PD * 1e155,
    "x1e300": PD * 1e300,
    "max|payoff| 1.68e308": PD * 5.6e307,
    "max|payoff| = float64 max": PD / 3.0 * F64_MAX,
}


@pytest.mark.parametrize("entry", ["solve", "solve_batch", "solve_exact"])
@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("case", sorted(PD_CASES))
def test_prisoners_dilemma_at_extreme_scales(case, concept, entry):
    game = PD_CASES[case]
    sol = _solve(entry, game, concept)
    check_honest(sol)
    np.testing.assert_allclose(sol.joint, PD_JOINT, atol=1e-9)  # (D, D): solver-independent
    # the gap in payoff units is the normalised one divided back: it scales with the game
    assert sol.gap <= 1e-8 / sol.scale.min()


@pytest.mark.parametrize("factor", [1e-300, 1e-13, 1e13, 1e300])
def test_chicken_me_ce_closed_form_at_extreme_scales(factor):
    sol = solvers.solve(CHICKEN * factor, "ce", "me")
    check_honest(sol)
    np.testing.assert_allclose(sol.joint, CHICKEN_ME_CE, atol=JOINT_TOL)
    sol = solvers.solve(CHICKEN + 1e13, "ce", "me")
    check_honest(sol)
    np.testing.assert_allclose(sol.joint, CHICKEN_ME_CE, atol=JOINT_TOL)


# ---------------------------------------------------------------------------------------
# Invariance over 1e-300..1e300 and offsets up to 1e13 (hypothesis).
# ---------------------------------------------------------------------------------------
SHAPES = [(2, 2), (3, 3), (2, 4), (2, 2, 2)]


@st.composite
def base_games(draw) -> np.ndarray:
    """PD, chicken, or a random game with dyadic payoffs (multiples of 1/8 in [-8, 8]),
    so that offsets up to 1e13 are added exactly in float64."""
    kind = draw(st.sampled_from(["pd", "chicken", "random"]))
    if kind == "pd":
        return PD.copy()
    if kind == "chicken":
        return CHICKEN.copy()
    shape = draw(st.sampled_from(SHAPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(-64, 65, size=(len(shape),) + shape) / 8.0


def _per_player(values, n: int) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape((n,) + (1,) * n)


def _joint(game, concept, selection):
    sol = solvers.solve(game, concept, selection)
    check_honest(sol)
    return sol.joint


concepts = st.sampled_from(["cce", "ce"])
selections = st.sampled_from(["me", "mw"])


@SETTINGS
@given(game=base_games(), concept=concepts, selection=selections, data=st.data())
def test_scale_invariance_from_1e_minus_300_to_1e300(game, concept, selection, data):
    n = game.shape[0]
    exponents = data.draw(st.lists(st.floats(-300.0, 300.0), min_size=n, max_size=n))
    scaled = game * _per_player([10.0**e for e in exponents], n)
    np.testing.assert_allclose(_joint(scaled, concept, selection), _joint(game, concept, selection), atol=JOINT_TOL)


@SETTINGS
@given(game=base_games(), concept=concepts, selection=selections, data=st.data())
def test_offset_invariance_up_to_1e13(game, concept, selection, data):
    n = game.shape[0]
    offsets = data.draw(st.lists(st.integers(-(10**13), 10**13), min_size=n, max_size=n))
    moved = game + _per_player(offsets, n)
    assert np.all(moved - _per_player(offsets, n) == game)  # the offset copy is exact
    np.testing.assert_allclose(_joint(moved, concept, selection), _joint(game, concept, selection), atol=JOINT_TOL)


@SETTINGS
@given(game=base_games(), data=st.data())
def test_power_of_two_scale_and_offset_give_identical_normalised_games(game, data):
    """``2^j (G + offset)`` is exact in float64, and so is the normalisation: bit-identical."""
    n = game.shape[0]
    exps = data.draw(st.lists(st.integers(-950, 950), min_size=n, max_size=n))
    offsets = data.draw(st.lists(st.integers(-(10**13), 10**13), min_size=n, max_size=n))
    moved = (game + _per_player(offsets, n)) * _per_player([2.0**e for e in exps], n)
    assert np.all(np.isfinite(moved))
    a, b = normalise(game), normalise(moved)
    np.testing.assert_array_equal(a.payoffs, b.payoffs)
    np.testing.assert_allclose(b.scale, a.scale * np.array([2.0**-e for e in exps]), rtol=1e-15)
    # the compiled normaliser of solvers.solve's fast path agrees
    fast = solvers_game.normalise_fast(moved)
    np.testing.assert_allclose(fast.payoffs, b.payoffs, atol=1e-13)
    np.testing.assert_allclose(fast.scale, b.scale, rtol=1e-13)
    np.testing.assert_allclose(fast.offset, b.offset, rtol=1e-13)


@SETTINGS
@given(game=base_games(), exponent=st.floats(-300.0, 300.0), concept=concepts)
def test_batch_and_pipeline_agree_with_solve_at_extreme_scales(game, exponent, concept):
    scaled = game * 10.0**exponent
    ref = _joint(game, concept, "me")
    batch = solvers.solve_batch(np.stack([scaled, game]), concept, "me")
    for sol in batch:
        check_honest(sol)
        np.testing.assert_allclose(sol.joint, ref, atol=JOINT_TOL)


# ---------------------------------------------------------------------------------------
# The normaliser: constant players, safety, refusals.
# ---------------------------------------------------------------------------------------
def test_constant_player_is_judged_against_its_own_float64_resolution():
    ulp = np.spacing(1e16)  # 2.0
    game = np.stack([
        np.array([[1e16, 1e16 + ulp], [1e16, 1e16]]),  # one ulp of its magnitude: rounding
        np.array([[1e13, 1e13 + 1], [1e13 + 2, 1e13 + 3]]),  # spread 3 at 1e13: real payoffs
    ])
    norm = normalise(game)
    assert not norm.payoffs[0].any() and norm.scale[0] == 1.0
    np.testing.assert_allclose(norm.payoffs[1], normalise(game[1:2].repeat(2, 0) - 1e13).payoffs[0])
    assert norm.scale[1] == pytest.approx(2.0 / np.linalg.norm(np.arange(4.0) - 1.5))
    tiny = np.stack([PD[0] * 1e-13, PD[1]])
    assert normalise(tiny).payoffs[0].any()  # the old rule called this constant
    # the threshold itself: CONSTANT_ULPS eps of the magnitude is constant, 2x that is not
    x = 1.0 + np.arange(2) * CONSTANT_ULPS * np.finfo(float).eps
    assert not normalise(np.stack([np.array([x, x]), PD[1]])).payoffs[0].any()
    x2 = 1.0 + np.arange(2) * 2 * CONSTANT_ULPS * np.finfo(float).eps
    assert normalise(np.stack([np.array([x2, x2]), PD[1]])).payoffs[0].any()


def test_normalise_never_overflows_near_float64_max():
    game = np.stack([np.array([[F64_MAX, 0.0], [-0.0, F64_MAX / 2]]), np.array([[F64_MAX, F64_MAX], [F64_MAX / 3, 0.0]])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning either
        norm = normalise(game)
    flat = norm.payoffs.reshape(2, -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 2.0, rtol=1e-15)
    assert np.all(np.isfinite(norm.scale)) and np.all(norm.scale > 0)
    np.testing.assert_allclose(norm.payoffs, normalise(game / F64_MAX).payoffs, atol=1e-15)
    assert np.all(np.isfinite(norm.offset))


def test_spread_that_overflows_is_refused_with_a_reason():
    game = np.stack([np.array([[1e308, -1e308], [0.0, 1.0]]), PD[1]])
    with pytest.raises(ValueError, match="spread overflows float64"):
        normalise(game)
    with pytest.raises(ValueError, match="spread overflows float64"):
        solvers.solve(game, "cce")
    with pytest.raises(ValueError, match="spread overflows float64"):
        solvers.solve_batch(np.stack([game, PD]), "ce")


def test_subnormal_spread_is_refused_with_a_reason():
    game = PD * 1e-320
    with pytest.raises(ValueError, match="normalisation factor .* overflows"):
        solvers.solve(game, "cce")
    with pytest.raises(ValueError, match="normalisation factor .* overflows"):
        normalise_batch(game[None])


# ---------------------------------------------------------------------------------------
# Payoff-unit outputs and warm starts at the extremes.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [1e-300, 1e300])
@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_duals_round_trip_as_warm_start(factor, concept):
    rng = np.random.default_rng(3)
    game = rng.normal(size=(2, 3, 3)) * factor
    sol = solvers.solve(game, concept, "me")
    check_honest(sol)
    assert np.all(np.isfinite(sol.duals)) and "duals_overflow" not in sol.info
    warm = solvers.solve(game, concept, "me", duals0=sol.duals)
    check_honest(warm)
    np.testing.assert_allclose(warm.joint, sol.joint, atol=JOINT_TOL)
    # the payoff-unit values scale with the game: eps and gaps by factor, duals by 1/factor
    ref = solvers.solve(game / factor, concept, "me")
    np.testing.assert_allclose(sol.joint, ref.joint, atol=JOINT_TOL)
    np.testing.assert_allclose(sol.duals / (1.0 / factor), ref.duals, rtol=1e-6, atol=1e-6 * ref.duals.max())
    assert warm.iterations <= ref.iterations


def test_duals_that_overflow_in_payoff_units_are_flagged_and_refused_as_warm_start():
    game = PD * 1e-307  # scale ~1e307: duals of ~36 in normalised units overflow
    with pytest.warns(RuntimeWarning, match="overflow float64"):
        sol = solvers.solve(game, "ce")
    check_honest(sol)  # the joint and its certificate are fine
    np.testing.assert_allclose(sol.joint, PD_JOINT, atol=1e-9)
    assert not np.all(np.isfinite(sol.duals))
    assert "overflow" in sol.info["duals_overflow"]
    np.testing.assert_allclose(sol.info["normalised_duals"], solvers.solve(PD, "ce").duals / normalise(PD).scale[
        solvers_api.gain_layout((2, 2), "ce").player], rtol=1e-9)
    with pytest.raises(ValueError, match="duals_overflow"):
        solvers.solve(game, "ce", duals0=sol.duals)
    with pytest.warns(RuntimeWarning, match="overflow float64"):
        batch = solvers.solve_batch(np.stack([game, game]), "ce")
    assert all("duals_overflow" in s.info and s.ok for s in batch)


# ---------------------------------------------------------------------------------------
# The guard: "optimal" implies a finite certificate and a distribution.
# ---------------------------------------------------------------------------------------
def _solution(**changes) -> Solution:
    good = solvers.solve(PD, "cce")
    fields = {name: getattr(good, name) for name in Solution.__dataclass_fields__}
    fields["info"] = dict(good.info)
    fields.update(changes)
    return Solution(**fields)


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"joint": np.array([[0.25, 0.25], [0.25, np.nan]])}, "sums to"),
        ({"joint": np.zeros((2, 2))}, "sums to"),
        ({"joint": np.array([[0.5, 0.5], [0.5, 0.5]])}, "sums to"),
        ({"joint": np.array([[-0.25, 0.25], [0.5, 0.5]])}, "negative"),
        ({"joint": np.array([[np.inf, 0.0], [0.0, 0.0]])}, "sums to"),
        ({"gap": math.nan}, "gap is not finite"),
        ({"gaps": np.array([0.0, math.inf])}, "gap is not finite"),
        ({"eps": np.array([math.nan, 0.0])}, "eps"),
        ({"duality_gap": math.nan}, "duality gap"),
        ({"duality_gap": -1e-9}, "duality gap"),
        ({"objective": -math.inf}, "objective"),
    ],
)
def test_guard_downgrades_an_optimal_label_it_cannot_back(changes, reason):
    sol = _solution(status=Status.OPTIMAL, **changes)
    assert sol.status is Status.INACCURATE
    assert reason in sol.info["status_reason"]
    assert not sol.ok


def test_guard_clamps_rounding_level_negative_duality_gaps_only():
    sol = _solution(status=Status.OPTIMAL, duality_gap=-1e-14, objective=-1.4)
    assert sol.ok and sol.duality_gap == 0.0 and sol.info["duality_gap_raw"] == -1e-14
    bad = _solution(status=Status.MAX_ITER, duality_gap=-1e-6)
    assert bad.status is Status.MAX_ITER and bad.duality_gap == -1e-6  # sign kept, not optimal
    edge = -2 * DUALITY_GAP_ROUNDING
    assert _solution(status=Status.OPTIMAL, duality_gap=edge, objective=1.0).status is Status.INACCURATE
    assert _solution(status=Status.OPTIMAL, duality_gap=edge, objective=10.0).ok  # relative to |objective|
    assert _solution(status=Status.OPTIMAL).ok  # the untouched solution passes


def _corrupt(joint: np.ndarray) -> np.ndarray:
    out = np.array(joint, dtype=np.float64)
    out.reshape(-1)[0] = np.nan
    return out


def test_guard_catches_a_bad_joint_through_solve_and_solve_exact(monkeypatch):
    real = solvers_single.solve_single

    def bad_solve_single(*args):
        joint, gaps, eps, stats = real(*args)
        return _corrupt(joint), gaps, eps, stats

    real_small = solvers_small._solve_small

    def bad_solve_small(game, ints, floats, buf):
        # A kernel whose joint ends NaN: its last step screens the buffer it leaves.
        code, (_, _, its, *_) = real_small(game, ints, floats, buf)
        cuts = solvers_small.plan(CHICKEN.shape[1:], "ce", "me", "auto", 1e-8, None, "auto", True).cut_array
        buf[cuts[4]] = np.nan
        screen, gap, _, *stats, finite = read_buffer(buf, cuts)
        return code, (screen, gap, its, *stats, finite != 0.0)

    monkeypatch.setattr(solvers_single, "solve_single", bad_solve_single)
    monkeypatch.setattr(solvers_small, "_solve_small", bad_solve_small)
    sol = solvers.solve(CHICKEN, "ce")
    assert sol.status is Status.INACCURATE and "sums to" in sol.info["status_reason"]
    monkeypatch.setattr(solvers_small, "plan", lambda *a: None)  # the general path
    sol = solvers.solve(CHICKEN, "ce")
    assert sol.status is Status.INACCURATE and "sums to" in sol.info["status_reason"]
    from hybrid_nes import solve_exact

    sol = solve_exact(CHICKEN, "ce", warm_start="cold")
    assert sol.status is Status.INACCURATE and "sums to" in sol.info["status_reason"]


def test_guard_catches_a_bad_joint_through_solve_batch(monkeypatch):
    kernels = solvers_kernels
    real = kernels.certify

    def bad_certify(*args):
        joint, gaps, eps, stats = real(*args)
        joint[0] = _corrupt(joint[0])
        return joint, gaps, eps, stats

    def bad_batch(real_batch):
        def run(*args):
            real_batch(*args)
            args[11][0] = _corrupt(args[11][0])  # joint [B, |A|] of solvers.small._batch_*
        return run

    monkeypatch.setattr(kernels, "certify", bad_certify)
    monkeypatch.setattr(solvers_small, "_batch_serial", bad_batch(solvers_small._batch_serial))
    monkeypatch.setattr(solvers_small, "_batch_parallel", bad_batch(solvers_small._batch_parallel))
    sols = solvers.solve_batch(np.stack([CHICKEN, PD, CHICKEN * 3]), "ce")
    assert sols[0].status is Status.INACCURATE and "sums to" in sols[0].info["status_reason"]
    assert sols[1].ok and sols[2].ok
    monkeypatch.setattr(solvers_small, "plan", lambda *a: None)  # the general path
    sols = solvers.solve_batch(np.stack([CHICKEN, PD, CHICKEN * 3]), "ce")
    assert sols[0].status is Status.INACCURATE and "sums to" in sols[0].info["status_reason"]
    assert sols[1].ok and sols[2].ok
    from hybrid_nes import solve_batch as nes_batch

    sols = nes_batch(np.stack([CHICKEN, PD]), "ce", warm_start="cold")
    assert sols[0].status is Status.INACCURATE and sols[1].ok


# ---------------------------------------------------------------------------------------
# The duality gap contract: >= 0 (the Kuhn-poker CE meta-game gave -9.1e-9).
# ---------------------------------------------------------------------------------------
def test_kuhn_poker_ce_meta_game_duality_gap_is_nonnegative_and_certified():
    """A 6x6x6 CE meta-game of 3-player Kuhn poker (an hn_mece-driven JPSRO run). Its dual
    optimum sits at duals ~1e3 (sum 1.5e3) with violation 1e-10, so ``L - P = alpha . g``
    came out -9.1e-9: no certificate. The relaxed certificate is a sum of non-negative
    terms and is checked here against the NumPy reference."""
    game = np.load(KUHN_CE)
    sol = solvers.solve(game, "ce")
    check_honest(sol)
    assert 0.0 <= sol.duality_gap <= 1e-8
    norm = normalise(game)
    problem = dual_problem(norm, "ce", resolve_selection(Selection.me(), norm))
    alpha = sol.info.get("restricted_duals", sol.duals) / sol.scale[problem.player]
    cert = certificate(problem, alpha)
    assert cert.duality_gap >= 0.0
    assert cert.duality_gap == pytest.approx(sol.duality_gap, abs=1e-12)
    # the uncorrected L - P of the same point: negative once sigma violates a constraint
    assert cert.dual - cert.primal <= cert.duality_gap


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), shape=st.sampled_from([(3, 3), (4, 4), (2, 2, 2), (3, 3, 3)]),
       concept=concepts, selection=st.sampled_from(["me", "mw", "ms"]))
def test_reported_duality_gap_is_never_negative(seed, shape, concept, selection):
    rng = np.random.default_rng(seed)
    game = rng.normal(size=(len(shape),) + shape)
    if seed % 2:
        game = np.round(2 * game)  # dominated actions: CEs on a face, large duals
    sol = solvers.solve(game, concept, selection)
    assert sol.duality_gap >= 0.0 or not sol.ok
    if sol.ok:
        check_honest(sol)


def test_hard_certificate_is_the_relaxed_gap_on_a_violating_point():
    """Away from the optimum, a point whose joint violates constraints: the reference
    certificate equals ``sum max(alpha_k g_k, 0)`` and ``dual - primal`` is below it."""
    norm = normalise(PD)
    problem = dual_problem(norm, "ce", resolve_selection(Selection.me(), norm))
    alpha = np.full(problem.num_constraints, 0.3)  # sigma(alpha) is not yet (D, D)
    cert = certificate(problem, alpha)
    g = problem.eps_hat[problem.player] - cert.expected_gains
    assert np.any(g < 0)  # violated rows
    assert cert.duality_gap == pytest.approx(float(np.sum(np.maximum(alpha * g, 0.0))), abs=1e-15)
    assert cert.dual - cert.primal == pytest.approx(float(alpha @ g), abs=1e-12)
    assert cert.dual - cert.primal < cert.duality_gap


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_given_welfare_is_normalised_like_payoffs(concept):
    """MWME with a welfare tensor x1e-13, x1e300 or +1e13 selects what the tensor itself
    selects (the old rule called a welfare spread below 1e-12 zero welfare)."""
    welfare = np.array([[3.0, 0.0], [1.0, 2.0]])  # favours (C, C) in chicken
    ref = solvers.solve(CHICKEN, concept, "mwme", welfare=welfare, mu=5.0)
    check_honest(ref)
    flat = solvers.solve(CHICKEN, concept, "me")
    assert np.abs(ref.joint - flat.joint).max() > 1e-3  # the welfare matters
    for moved in (welfare * 1e-13, welfare * 1e300, welfare + 1e13):
        sol = solvers.solve(CHICKEN, concept, "mwme", welfare=moved, mu=5.0)
        check_honest(sol)
        np.testing.assert_allclose(sol.joint, ref.joint, atol=JOINT_TOL)
    with pytest.raises(ValueError, match="welfare cannot be normalised"):
        solvers.solve(CHICKEN, concept, "mwme", welfare=np.array([[1e308, -1e308], [0.0, 0.0]]), mu=5.0)


def test_nes_warm_start_at_extreme_scales():
    """The network sees normalised games; its duals go to payoff units and back. At
    x1e-307 they overflow there: that game starts cold (with a warning), not an error."""
    from hybrid_nes import solve_batch as nes_batch

    game = np.random.default_rng(1).normal(size=(2, 4, 4))
    ref = solvers.solve(game, "ce")
    with pytest.warns(RuntimeWarning, match="overflow float64"):
        sols = nes_batch(np.stack([game * 1e-307, game * 1e-300, game * 1e300]), "ce", warm_start="nes")
    for sol in sols:
        check_honest(sol)
        np.testing.assert_allclose(sol.joint, ref.joint, atol=JOINT_TOL)
    assert [s.info["warm_start"] for s in sols] == ["cold", "nes", "nes"]
