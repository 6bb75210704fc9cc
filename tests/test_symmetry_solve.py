"""``symmetry=`` in solvers.solve / solve_batch: verified groups, duals shared by newton-cg
(solvers.matrix_free.TiedGame), certificates on the full problem, symmetric ME-(C)CE."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import solvers
from solvers.evaluation_game import evaluation_game
from solvers.game import normalise
from solvers.matrix_free import MatrixFreeGame, TiedGame
from solvers.symmetry import joint_asymmetry

AGENTS = ((1, 2),)


def _eval_game(agents: int, tasks: int, seed: int = 0) -> np.ndarray:
    return evaluation_game(np.random.default_rng(seed).normal(size=(agents, tasks)), "ptp")


def _symmetric_three_player(n: int, seed: int) -> np.ndarray:
    """``G_p(a) = f(a_p, sorted others)``: every pair of players exchangeable."""
    f = np.random.default_rng(seed).normal(size=(n, n, n))
    game = np.zeros((3, n, n, n))
    for a in itertools.product(range(n), repeat=3):
        for p in range(3):
            others = sorted(a[q] for q in range(3) if q != p)
            game[(p,) + a] = f[a[p], others[0], others[1]]
    return game


@pytest.mark.parametrize("concept", ["ce", "cce"])
def test_tied_passes_equal_the_full_passes_on_tied_vectors(concept):
    game = normalise(_symmetric_three_player(4, seed=1)).payoffs
    tied = TiedGame(game, concept, ((0, 1, 2),))
    full = MatrixFreeGame(game, concept)
    rng = np.random.default_rng(0)
    v = tied.tie(rng.random(full.num_constraints))
    np.testing.assert_allclose(tied.tie(v), v, rtol=0, atol=1e-15)  # a projection
    assert not np.allclose(tied.tie(rng.random(full.num_constraints)), 0.0)
    np.testing.assert_allclose(tied.weighted_gains(v), full.weighted_gains(v), rtol=0, atol=1e-12)
    sigma = np.exp(-tied.weighted_gains(v))
    sigma /= sigma.sum()  # swap-invariant
    mean = full.expected_gains(sigma)
    np.testing.assert_allclose(tied.expected_gains(sigma), mean, rtol=0, atol=1e-14)
    curv = np.zeros(3)
    np.testing.assert_allclose(tied.hessian_vector(sigma, mean, curv, v), full.hessian_vector(sigma, mean, curv, v),
                               rtol=0, atol=1e-13)
    np.testing.assert_allclose(tied.hessian_diagonal(sigma, mean, curv), full.hessian_diagonal(sigma, mean, curv),
                               rtol=0, atol=1e-14)
    assert [tied.block_source(p) for p in range(3)] == [0, 0, 0]
    assert type(tied.untied()) is MatrixFreeGame


@pytest.mark.parametrize("concept", ["ce", "cce"])
def test_evaluation_game_me_is_symmetric_with_and_without_shared_duals(concept):
    # [3, 20, 15, 15]: "auto" takes newton-cg for the CE (K = 800), the layout for the CCE.
    payoffs = _eval_game(15, 20, seed=2)
    plain = solvers.solve(payoffs, concept)
    for method in ("auto", "newton-cg"):
        for symmetry in ([(1, 2)], "auto"):
            sol = solvers.solve(payoffs, concept, method=method, symmetry=symmetry)
            assert sol.status == "optimal"
            assert sol.info["symmetry"] == AGENTS
            assert sol.info["symmetry_shared"] == (sol.method == "newton-cg")
            assert sol.info.get("symmetry_symmetrised", False) == (sol.method != "newton-cg")
            assert sol.info["joint_asymmetry"] == joint_asymmetry(sol.joint, AGENTS) <= 1e-12
            np.testing.assert_allclose(sol.joint, plain.joint, rtol=0, atol=1e-7)
    assert joint_asymmetry(plain.joint, AGENTS) <= 1e-7
    assert "symmetry" not in plain.info


@pytest.mark.parametrize("concept", ["ce", "cce"])
def test_symmetric_three_player_game_shares_a_group_of_three(concept):
    payoffs = _symmetric_three_player(5, seed=3)
    plain = solvers.solve(payoffs, concept, method="newton")
    sol = solvers.solve(payoffs, concept, method="newton-cg", symmetry="auto")
    assert sol.status == "optimal" and sol.info["symmetry"] == ((0, 1, 2),) and sol.info["symmetry_shared"]
    everyone = ((0, 1, 2),)
    assert joint_asymmetry(sol.joint, everyone) <= 1e-12 and joint_asymmetry(plain.joint, everyone) <= 1e-7
    np.testing.assert_allclose(sol.joint, plain.joint, rtol=0, atol=1e-7)
    # A warm start that is not symmetric is tied first.
    warm = solvers.solve(payoffs, concept, method="newton-cg", symmetry=[(0, 1, 2)],
                         duals0=plain.duals * np.linspace(0.5, 1.5, plain.duals.size))
    assert warm.status == "optimal"
    np.testing.assert_allclose(warm.joint, plain.joint, rtol=0, atol=1e-7)


def test_non_symmetric_groups_are_refused_naming_players_and_size():
    payoffs = _eval_game(4, 5, seed=1)
    with pytest.raises(ValueError, match=r"players 0 and 1 are not exchangeable: 5 vs 4 actions"):
        solvers.solve(payoffs, "ce", symmetry=[(0, 1)])
    bent = payoffs.copy()
    bent[2, 3, 1, 0] += 1e-3
    with pytest.raises(ValueError, match=r"symmetry=\[\(1, 2\)\]: players 1 and 2 are not exchangeable: swapping "
                                         r"them changes player \d's payoff at joint action \(3, \d, \d\) by 0\.001"):
        solvers.solve(bent, "ce", symmetry=[(1, 2)])
    with pytest.raises(ValueError, match=r"symmetry=\[\(1, 2\)\]: players 1 and 2"):
        solvers.solve_batch([payoffs, bent], "ce", symmetry=[(1, 2)])
    with pytest.raises(ValueError, match="symmetry must be None, 'auto'"):
        solvers.solve(payoffs, "ce", symmetry="yes")
    with pytest.raises(ValueError, match="more than one group"):
        solvers.solve(payoffs, "ce", symmetry=[(1, 2), (2, 1)])
    assert solvers.solve(bent, "ce", symmetry="auto").info["symmetry"] == ()


def test_an_asymmetric_selection_is_refused_on_the_shared_path():
    payoffs = _eval_game(4, 5, seed=1)
    target = np.random.default_rng(0).random(payoffs.shape[1:]) + 0.1
    with pytest.raises(ValueError, match="target .*players 1 and 2"):
        solvers.solve(payoffs, "ce", "mre", target=target / target.sum(), method="newton-cg", symmetry=[(1, 2)])


def test_solve_batch_with_symmetry_matches_solve():
    games = [_eval_game(15, 20, seed=s) for s in (5, 6)]
    batch = solvers.solve_batch(games, "ce", symmetry=[(1, 2)])
    for game, got in zip(games, batch, strict=True):
        want = solvers.solve(game, "ce", symmetry=[(1, 2)])
        assert got.status == "optimal" and got.info["symmetry_shared"] and got.method == want.method
        np.testing.assert_allclose(got.joint, want.joint, rtol=0, atol=1e-12)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 4), concept=st.sampled_from(["ce", "cce"]),
       everyone=st.booleans())
def test_shared_duals_give_the_full_problems_answer(seed, n, concept, everyone):
    # A symmetric 3-player game (groups (0, 1, 2) or (1, 2)) or an evaluation game [task, agent, agent].
    payoffs = _symmetric_three_player(n, seed) if everyone else _eval_game(n, n + 1, seed)
    groups = ((0, 1, 2),) if everyone else AGENTS
    ref = solvers.solve(payoffs, concept, method="newton")
    sol = solvers.solve(payoffs, concept, method="newton-cg", symmetry=groups)
    assert sol.info["symmetry_shared"]
    assert joint_asymmetry(ref.joint, groups) <= 1e-7
    if sol.status == "optimal":  # newton-cg has no facial reduction: a face may end max_iter, honestly
        assert joint_asymmetry(sol.joint, groups) <= 1e-12
        np.testing.assert_allclose(sol.joint, ref.joint, rtol=0, atol=1e-7)
    else:
        assert max(sol.info["violation"], sol.info["kkt"], abs(sol.duality_gap)) > 1e-8  # the full certificate


@pytest.mark.parametrize("method", ["newton", "gd", "auto"])
def test_gain_layout_routes_symmetrise_and_recertify(method):
    payoffs = _symmetric_three_player(4, seed=7)
    everyone = ((0, 1, 2),)
    plain = solvers.solve(payoffs, "ce", method=method)
    sol = solvers.solve(payoffs, "ce", method=method, symmetry=[(0, 1, 2)])
    assert plain.status == sol.status == "optimal"
    assert sol.info["symmetry_symmetrised"] and not sol.info["symmetry_shared"]
    assert joint_asymmetry(sol.joint, everyone) <= 1e-14 and sol.info["joint_asymmetry"] <= 1e-14
    np.testing.assert_allclose(sol.joint, plain.joint, rtol=0, atol=1e-7)
    assert sol.duals.shape == plain.duals.shape == (36,) and sol.gap <= 1e-7
    segments = sol.duals.reshape(3, 12)  # rows of players 0, 1, 2 (4 x 3 each): tied
    np.testing.assert_allclose(segments, np.broadcast_to(segments[0], (3, 12)), rtol=1e-12, atol=1e-12)
    cvx = solvers.solve(payoffs, "ce", method="cvxpy", symmetry=[(0, 1, 2)])
    assert "symmetry_symmetrised" not in cvx.info and cvx.info["symmetry"] == everyone


def test_tied_solve_of_a_not_quite_symmetric_game_is_finished_untied():
    # TiedGame bypasses the check: players 1 and 2 differ by 1e-3 at one entry, so the
    # tied optimum is not the full one; the full certificate catches it and Newton goes on
    # untied to the full problem's answer (never a wrong "optimal").
    from solvers.newton import OPTIMAL
    from solvers.newton_cg import newton_cg
    from solvers.selection import Selection, resolve_selection

    payoffs = _eval_game(5, 6, seed=4)
    payoffs[2, 1, 2, 3] += 1e-3
    norm = normalise(payoffs)
    params = resolve_selection(Selection.me(), norm)
    args = (params.base_logits, params.eps_hat, params.eps_plus, float(params.rho))
    full = newton_cg(MatrixFreeGame(norm.payoffs, "cce"), *args)
    tied = newton_cg(TiedGame(norm.payoffs, "cce", AGENTS), *args)
    assert full.status == tied.status == OPTIMAL
    assert tied.iterations > 0 and max(tied.violation, tied.kkt, abs(tied.duality_gap)) <= 1e-8
    np.testing.assert_allclose(tied.joint, full.joint, rtol=0, atol=1e-7)
    assert joint_asymmetry(tied.joint, AGENTS) > 1e-9  # the true answer is not symmetric
