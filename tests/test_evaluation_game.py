"""solvers.evaluation_game: the [task, agent, agent] game from scores, each normaliser, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from solvers.evaluation_game import NORMALISERS, evaluation_game, score_margins


def _scores(num_agents: int = 5, num_tasks: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num_agents, num_tasks)) * rng.uniform(0.5, 3.0, size=num_tasks) + rng.normal(size=num_tasks)


def _brute_game(scores: np.ndarray, norm_column) -> np.ndarray:
    """The game by the definition, one cell at a time."""
    num_agents, num_tasks = scores.shape
    game = np.zeros((3, num_tasks, num_agents, num_agents))
    for t in range(num_tasks):
        s = norm_column(scores[:, t])
        for a1, a2 in itertools.product(range(num_agents), repeat=2):
            d = s[a1] - s[a2]
            game[:, t, a1, a2] = (abs(d), d, -d)
    return game


def test_shape_player_order_and_ptp_matches_the_definition():
    scores = _scores()
    game = evaluation_game(scores, "ptp")
    assert game.shape == (3, 4, 5, 5) and game.dtype == np.float64
    expected = _brute_game(scores, lambda s: (s - s.min()) / (s.max() - s.min()))
    np.testing.assert_allclose(game, expected, rtol=0, atol=1e-14)
    # ptp: the best agent of each task beats the worst by exactly 1
    assert np.allclose(game[1].max(axis=(1, 2)), 1.0)


def test_zscore_and_rank_match_scipy():
    scores = _scores(6, 3, seed=1)
    scores[2, 1] = scores[4, 1]  # a tie for the ranks
    np.testing.assert_allclose(evaluation_game(scores, "zscore"), _brute_game(scores, stats.zscore), atol=1e-13)
    rank = evaluation_game(scores, "rank")
    np.testing.assert_allclose(rank, _brute_game(scores, lambda s: (stats.rankdata(s) - 1) / 5), atol=1e-14)
    assert rank[1, 1, 2, 4] == 0.0  # tied agents share their mean rank
    # rank margins are multiples of 1/(2(A-1)) (half ranks from ties)
    np.testing.assert_allclose(rank[1] * 10, np.round(rank[1] * 10), atol=1e-12)


@pytest.mark.parametrize("normaliser", ["ptp", "zscore", "rank"])
def test_per_task_affine_invariance(normaliser):
    scores = _scores(4, 5, seed=2)
    moved = scores * np.array([1.0, 2.0, 0.5, 10.0, 3.0]) + np.array([5.0, -1.0, 0.0, 2.0, 100.0])
    np.testing.assert_allclose(evaluation_game(moved, normaliser), evaluation_game(scores, normaliser), atol=1e-12)


def test_winrate_with_sd_is_the_normal_cdf_minus_half():
    scores = _scores(4, 3, seed=3)
    sd = np.random.default_rng(4).uniform(0.1, 1.0, size=scores.shape)
    sd[0, 0] = sd[1, 0] = 0.0  # both exact: a hard comparison
    d = score_margins(scores, "winrate", sd)
    for t, a1, a2 in itertools.product(range(3), range(4), range(4)):
        scale = math.hypot(sd[a1, t], sd[a2, t])
        diff = scores[a1, t] - scores[a2, t]
        p = stats.norm.cdf(diff / scale) if scale > 0 else 0.5 + 0.5 * np.sign(diff)
        assert d[t, a1, a2] == pytest.approx(p - 0.5, abs=1e-13)
    np.testing.assert_array_equal(d, -d.transpose(0, 2, 1))  # exactly antisymmetric
    assert d[0, 0, 1] in (0.5, -0.5)
    game = evaluation_game(scores, "winrate", sd=0.3)  # a scalar sd for every cell
    np.testing.assert_allclose(game[1, 0, 0, 1], stats.norm.cdf((scores[0, 0] - scores[1, 0]) / (0.3 * 2**0.5)) - 0.5)


def test_winrate_without_sd_counts_wins_and_half_ties():
    scores = np.array([[3.0, 1.0], [2.0, 1.0], [2.0, 0.0]])
    d = score_margins(scores, "winrate")
    assert d[0, 0, 1] == 0.5 and d[0, 1, 0] == -0.5 and d[0, 1, 2] == 0.0
    assert d[1, 0, 1] == 0.0 and d[1, 2, 0] == -0.5


@pytest.mark.parametrize("normaliser", NORMALISERS)
def test_payoff_conventions_hold_for_every_normaliser(normaliser):
    scores = _scores(5, 6, seed=5)
    sd = 0.4 if normaliser == "winrate" else None
    game = evaluation_game(scores, normaliser, sd)
    np.testing.assert_array_equal(game[0], np.abs(game[1]))
    np.testing.assert_array_equal(game[2], -game[1])
    np.testing.assert_array_equal(game[1], -game[1].transpose(0, 2, 1))
    # agent 0 beats agent 1 on task t exactly when its score is higher
    assert np.all(np.sign(game[1, :, 0, 1]) == np.sign(scores[0] - scores[1]))


@pytest.mark.parametrize(
    ("scores", "kwargs", "error", "match"),
    [
        (np.array([[1.0, np.nan], [2.0, 3.0]]), {}, ValueError, r"scores\[0, 1\].*nan.*finite"),
        (np.array([[1.0, 2.0], [np.inf, 3.0]]), {"agents": ["a", "b"]}, ValueError, r"agent 1 \('b'\).*inf"),
        (np.array([[1.0, 2.0], [1.0, 3.0]]), {"tasks": ["easy", "hard"]}, ValueError,
         r"task 0 \('easy'\): every agent scores 1.*drop it"),
        (np.array([[1.0, 2.0]]), {}, ValueError, r">= 2 agents"),
        (np.array([1.0, 2.0]), {}, ValueError, r"2-D"),
        (np.zeros((3, 0)), {}, ValueError, r">= 1 task"),
        ([["a", "b"], ["c", "d"]], {}, TypeError, r"numeric"),
        (np.eye(2), {"normaliser": "elo"}, ValueError, r"normaliser must be one of"),
        (np.eye(2), {"normaliser": "ptp", "sd": 1.0}, ValueError, r"sd is used only by normaliser='winrate'"),
        (np.eye(2), {"normaliser": "winrate", "sd": np.ones((2, 3))}, ValueError, r"sd must be a scalar or.*\(2, 3\)"),
        (np.eye(2), {"normaliser": "winrate", "sd": [[1.0, -0.1], [1.0, 1.0]]}, ValueError,
         r"sd\[0, 1\].*-0.1.*>= 0"),
        (np.eye(2), {"normaliser": "winrate", "sd": [[1.0, np.nan], [1.0, 1.0]]}, ValueError, r"sd\[0, 1\]"),
        (np.eye(2), {"agents": ["only one"]}, ValueError, r"1 agent names for 2 agents"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(scores, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluation_game(scores, **kwargs)
