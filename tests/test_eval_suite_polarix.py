"""benchmarks.eval_suite's polarix comparison: CE gap of a given joint, joint distances, the
same game as polarix's ``agent_vs_task_game``, and agreement with polarix's own gap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from benchmarks import eval_suite as es
from solvers import solve


def _brute_ce_gaps(game: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """Each player's CE gap by the definition, one joint action at a time."""
    num_players = game.shape[0]
    gaps = np.zeros(num_players)
    for p in range(num_players):
        n = game.shape[1 + p]
        for a, dev in itertools.product(range(n), repeat=2):
            gain = 0.0
            for idx in itertools.product(*(range(k) for k in game.shape[1:])):
                if idx[p] == a:
                    moved = idx[:p] + (dev,) + idx[p + 1:]
                    gain += joint[idx] * (game[(p,) + moved] - game[(p,) + idx])
            gaps[p] = max(gaps[p], gain)
    return gaps


def test_gap_of_a_pure_joint_by_hand():
    # coordination game, both players [[2, 0], [0, 1]]; all mass on (0, 1): player 0
    # gains 1 by playing 1, player 1 gains 2 by playing 0.
    g = np.array([[2.0, 0.0], [0.0, 1.0]])
    game = np.stack([g, g])
    joint = np.zeros((2, 2))
    joint[0, 1] = 1.0
    np.testing.assert_allclose(es.ce_gaps(game, joint), [1.0, 2.0])
    # normalised: s_p = sqrt(|A|) / ||G_p - mean|| = 2 / sqrt(2.75)
    assert es.normalised_ce_gap(game, joint) == pytest.approx(2.0 * 2.0 / math.sqrt(2.75), rel=1e-12)


def test_gaps_match_the_definition_on_an_evaluation_game():
    game = es.eval_game(3, 2, seed=1)
    joint = np.random.default_rng(2).dirichlet(np.ones(game[0].size)).reshape(game.shape[1:])
    gaps = es.ce_gaps(game, joint)
    np.testing.assert_allclose(gaps, _brute_ce_gaps(game, joint), rtol=1e-12, atol=1e-15)
    assert gaps.max() > 1e-3  # a random joint is no CE: the check is not vacuous


def test_gap_of_our_certified_joint_matches_the_solution():
    game = es.eval_game(4, 3)
    sol = solve(game, "ce", "me")
    assert sol.ok
    assert es.normalised_ce_gap(game, sol.joint) == pytest.approx(sol.normalised_gap, rel=1e-6, abs=1e-12)
    assert es.normalised_ce_gap(game, sol.joint) <= 1e-8


def test_compare_joints_distances_entropy_and_renormalisation():
    game = es.eval_game(3, 2)
    ours = np.full(game.shape[1:], 1.0 / game[0].size)
    theirs = ours.copy()
    theirs[0, 0, 0] += 0.01
    theirs[1, 2, 1] -= 0.01
    out = es.compare_joints(game, ours, theirs * 1.5)  # renormalised back to sum 1
    assert out["theirs_sum_defect"] == pytest.approx(0.5)
    assert out["l1"] == pytest.approx(0.02)
    assert out["max_abs"] == pytest.approx(0.01)
    assert out["entropy_ours"] == pytest.approx(math.log(game[0].size))
    assert out["entropy_diff"] < 0  # the uniform joint has the largest entropy
    assert out["theirs_gap_normalised"] == pytest.approx(es.normalised_ce_gap(game, theirs))
    with pytest.raises(ValueError, match="action shape"):
        es.compare_joints(game, ours, theirs[:, :2])


def test_polarix_table_reports_an_unfinished_run():
    row = {"game": "eval:30x100", "ours": {"seconds": 0.5, "status": "optimal", "gap_normalised": 2e-9},
           "polarix": {"status": "not finished after 120 s", "seconds": None}}
    (line,) = es._polarix_table([row])
    assert line["polarix status"] == "not finished after 120 s"
    assert math.isnan(line["polarix s"]) and math.isnan(line["polarix gap (norm.)"])
    assert line["ours gap (norm.)"] == 2e-9


def test_same_game_and_same_gap_as_polarix():
    polarix = pytest.importorskip("polarix")
    import jax.numpy as jnp

    agents, tasks = 4, 3
    scores = es.eval_scores(agents, tasks)
    pgame = polarix.agent_vs_task_game(agents=[f"a{i}" for i in range(agents)], tasks=[f"t{j}" for j in range(tasks)],
                                       agent_vs_task=jnp.asarray(scores), normalizer="ptp")
    game = es.eval_game(agents, tasks)
    np.testing.assert_allclose(np.asarray(pgame.payoffs, dtype=np.float64), game, atol=1e-6)
    gen = polarix.ce_maxent(pgame)
    for _ in range(30):  # a joint on the way, far from a CE: its gap is large
        result = next(gen)
    joint = np.asarray(result.joint, dtype=np.float64)
    joint /= joint.sum()
    own = float(result.extra["ce_gap"])
    assert own > 1e-3
    assert es.ce_gaps(game, joint).max() == pytest.approx(own, rel=1e-4)
