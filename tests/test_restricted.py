"""Related warm starts restricted to the undominated actions (solvers.dominance, solvers.restricted)."""

from __future__ import annotations

import numpy as np
import pytest

from solvers import Status, normalise, solve
from solvers import related as rel
from solvers import restricted as rst
from solvers.dominance import eliminate
from solvers.evaluation_game import evaluation_game
from solvers.matrix_free import MatrixFreeGame

JOINT_TOL = 1e-7
WEAK = 4.0  # score handicap of the weak agents: dominated on every task


def _pair(seed: int, weak: int = 2, new_task_star: bool = False):
    """``(old, new)`` evaluation games, 6 agents x 9 tasks grown to 7 x 10; agents
    ``0..weak-1`` score ``WEAK`` below the rest. ``new_task_star``: agent 0 tops the new
    task by far (the new game no longer dominates it)."""
    scores = np.random.default_rng(seed).normal(size=(7, 10))
    scores[:weak] -= WEAK
    if new_task_star:
        scores[0, 9] = scores[:, 9].max() + 10.0
    return evaluation_game(scores[:6, :9]), evaluation_game(scores)


def _agent_marginals(joint):
    return joint.sum(axis=(0, 2)), joint.sum(axis=(0, 1))


def test_eliminate_iterated_mixed_dominance():
    """Column 2 is dominated by column 0; only then is row B dominated, by 1/2 T + 1/2 M."""
    rows = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 5.0]])
    cols = np.array([[2.0, 0.0, 1.0], [0.0, 2.0, -1.0], [1.0, 1.0, 0.0]])
    game = np.stack([rows, cols])
    out = eliminate(game, [np.array([0, 2]), np.array([1, 2])])
    assert [(d.player, d.action) for d in out.dominated] == [(1, 2), (0, 2)]
    np.testing.assert_array_equal(out.keep[0], [True, True, False])
    np.testing.assert_array_equal(out.keep[1], [True, True, False])
    row_b = out.dominated[1]
    np.testing.assert_allclose(row_b.weights, [0.5, 0.5, 0.0], atol=1e-9)
    assert row_b.margin == pytest.approx(0.5) and row_b.source == "lp"
    assert out.dominated[0].margin == pytest.approx(1.0)  # column 0 beats column 2 by 1 everywhere
    # Without the column's elimination, B is not dominated (it wins against column 2).
    alone = eliminate(game, [np.array([2]), np.array([], dtype=int)])
    assert alone.dominated == () and alone.keep[0].all()


def test_eliminate_tries_the_hint_first():
    rows = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    game = np.stack([rows, np.zeros((3, 2))])
    calls = []

    def hint(p, d, devs):
        calls.append((p, d, tuple(devs)))
        return np.array([2.0, 2.0])  # not normalised: eliminate normalises

    out = eliminate(game, [np.array([2]), np.array([], dtype=int)], hint)
    assert calls == [(0, 2, (0, 1))] and out.lps == 0
    assert out.dominated[0].source == "hint" and out.dominated[0].margin == pytest.approx(0.5)
    bad = eliminate(game, [np.array([2]), np.array([], dtype=int)], lambda p, d, devs: np.array([1.0, 0.0]))
    assert bad.lps == 1 and bad.dominated[0].source == "lp"  # the hint (T alone) does not dominate B
    assert eliminate(game, [np.array([2]), np.array([], dtype=int)], use_lp=False).dominated == ()
    assert eliminate(game, [np.array([2]), np.array([], dtype=int)], max_lps=0).lps == 0


def test_sub_rows_are_the_full_rows_on_the_sub_grid():
    """The sub-game's expected gains at a joint equal the full game's on ``sub_rows`` at
    that joint padded with zeros."""
    rng = np.random.default_rng(0)
    shape = (4, 5, 3)
    game = rng.normal(size=(3,) + shape)
    index = [np.array([0, 2, 3]), np.array([1, 4]), np.array([0, 1, 2])]
    sub = MatrixFreeGame(game[(slice(None),) + np.ix_(*index)], "ce")
    full = MatrixFreeGame(game, "ce")
    joint = rng.random(sub.shape)
    padded = np.zeros(shape)
    padded[np.ix_(*index)] = joint
    rows = rst.sub_rows(shape, index)
    assert rows.size == sub.num_constraints and np.unique(rows).size == rows.size
    np.testing.assert_allclose(full.expected_gains(padded)[rows], sub.expected_gains(joint), atol=1e-12)


def test_restricted_solve_equals_the_full_game_solve():
    """Agents 0 and 1 are unplayed in the previous solution and dominated in the grown
    game: the warm start solves the 10 x 5 x 5 sub-game and certifies it on the full game;
    the joint is the full game's cold solve."""
    old, new = _pair(1)
    prev = solve(old, "ce", method="newton-cg")
    m1, m2 = _agent_marginals(prev.joint)
    assert m1[:2].max() < rst.RESTRICT_MASS and m2[:2].max() < rst.RESTRICT_MASS
    cold = solve(new, "ce", method="newton-cg")
    warm = solve(new, "ce", method="newton-cg", duals0=prev)
    assert warm.info["warm_start"] == rel.RESTRICTED and warm.status is Status.OPTIMAL
    assert set(warm.info["eliminated"]) == {(1, 0), (1, 1), (2, 0), (2, 1)}
    assert warm.info["restricted_shape"] == (10, 5, 5)
    assert warm.gap <= 1e-6 and abs(warm.duality_gap) <= 1e-6
    np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)
    assert warm.joint[:, :2].max() < 1e-15 and warm.joint[:, :, :2].max() < 1e-15
    # The full certificate holds at the returned duals: re-solving from them takes no step.
    again = solve(new, "ce", method="newton-cg", duals0=warm.duals, max_iter=1)
    assert again.status is Status.OPTIMAL


def test_support_grows_where_an_unplayed_action_is_no_longer_dominated():
    """Agent 0 tops the new task: it stays in the restricted game (not dominated), the new
    equilibrium plays it, and the answer is the full game's."""
    old, new = _pair(1, weak=3, new_task_star=True)
    prev = solve(old, "ce", method="newton-cg")
    assert _agent_marginals(prev.joint)[0][0] < rst.RESTRICT_MASS
    cold = solve(new, "ce", method="newton-cg")
    assert _agent_marginals(cold.joint)[0][0] > 1e-4  # the support grew
    warm = solve(new, "ce", method="newton-cg", duals0=prev)
    assert warm.info["warm_start"] == rel.RESTRICTED and warm.status is Status.OPTIMAL
    assert (1, 0) not in warm.info["eliminated"] and {(1, 1), (1, 2)} <= set(warm.info["eliminated"])
    np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)


def test_lift_failure_goes_on_on_the_full_game(monkeypatch):
    """Lifted duals that leave mass on the eliminated actions fail the full certificate:
    Newton goes on on the full game from them (``related→restricted→full``)."""
    old, new = _pair(1)
    prev = solve(old, "ce", method="newton-cg")
    cold = solve(new, "ce", method="newton-cg")
    monkeypatch.setattr(rst, "LIFT_SLACK", -1e3)  # no push at all on the eliminated rows
    warm = solve(new, "ce", method="newton-cg", duals0=prev)
    assert warm.info["warm_start"] == rel.RESTRICTED_FULL and warm.status is Status.OPTIMAL
    assert warm.timings["continue"] > 0
    np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)


def test_sub_game_not_optimal_restarts_cold():
    """A sub-game solve short of tolerance within the user's cap: a cold solve follows,
    its status (not optimal either, at this cap) reported as it is."""
    old, new = _pair(1)
    prev = solve(old, "ce", method="newton-cg")
    cold = solve(new, "ce", method="newton-cg", max_iter=2)
    warm = solve(new, "ce", method="newton-cg", duals0=prev, max_iter=2)
    assert warm.info["warm_start"] == rel.RESTART and warm.info["restricted_status"] != 0
    assert warm.status is cold.status and cold.status is not Status.OPTIMAL
    assert warm.iterations > cold.iterations and warm.timings["warm_attempt"] > 0


def test_route_applies_only_to_hard_constraint_ces():
    old, new = _pair(1)
    norm = normalise(new)
    maps = rel.resolve_action_map(old.shape[1:], new.shape[1:])
    prev_cce = solve(old, "cce", method="newton-cg")
    from solvers import as_selection, resolve_selection

    params = resolve_selection(as_selection("me"), norm)
    assert rst.attempt(norm, "cce", params, prev_cce, maps, 1e-8, 50, None, 50) is None
    soft = resolve_selection(as_selection("me", eps_hat=0.01), norm)
    prev = solve(old, "ce", method="newton-cg")
    assert rst.attempt(norm, "ce", soft, prev, maps, 1e-8, 50, None, 50) is None
    warm_cce = solve(new, "cce", method="newton-cg", duals0=prev_cce)
    assert warm_cce.info["warm_start"] not in (rel.RESTRICTED, rel.RESTRICTED_FULL)


def test_restricted_route_follows_an_action_map():
    """The new agent inserted first: the candidates are the mapped unplayed agents."""
    scores = np.random.default_rng(1).normal(size=(7, 10))
    scores[:2] -= WEAK
    old = evaluation_game(scores[:6, :9])
    new = evaluation_game(scores[[6, 0, 1, 2, 3, 4, 5]])
    prev = solve(old, "ce", method="newton-cg")
    agents = [-1, 0, 1, 2, 3, 4, 5]
    start = rel.related(prev, action_map=[list(range(9)) + [-1], agents, agents])
    warm = solve(new, "ce", method="newton-cg", duals0=start)
    cold = solve(new, "ce", method="newton-cg")
    assert warm.info["warm_start"] == rel.RESTRICTED and warm.status is Status.OPTIMAL
    assert set(warm.info["eliminated"]) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)
