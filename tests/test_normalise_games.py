"""``solvers.game.normalise_games``: ``solve_batch``'s normalisation is ``solve``'s, game by
game (bit for bit), and refuses what ``normalise_batch`` refuses, with its message."""

from __future__ import annotations

import numpy as np
import pytest

import solvers
from solvers.game import PARALLEL_MIN_PAYOFFS, normalise_batch, normalise_fast, normalise_games


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (600, 2, 8, 8), (5, 3, 3, 2, 4)])
def test_each_game_is_normalised_as_solve_normalises_it(shape):
    games = np.random.default_rng(0).standard_normal(shape) * 10.0 ** np.random.default_rng(1).uniform(
        -5, 5, (shape[0], 1) + (1,) * (len(shape) - 2))
    games[0, 0] = 3.0  # a constant player
    assert (np.prod(shape) >= PARALLEL_MIN_PAYOFFS) == (shape[0] == 600)  # both passes run
    norm = normalise_games(games)
    ref = normalise_batch(games)
    for b in range(shape[0]):
        one = normalise_fast(games[b])
        np.testing.assert_array_equal(norm.payoffs[b], one.payoffs)
        np.testing.assert_array_equal(norm.scale[b], one.scale)
        np.testing.assert_array_equal(norm.offset[b], one.offset)
    np.testing.assert_allclose(norm.payoffs, ref.payoffs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm.scale, ref.scale, rtol=1e-12)


@pytest.mark.parametrize("bad, match", [(1e308, "spread overflows"), (1e-310, "normalisation factor")])
def test_it_raises_what_normalise_batch_raises(bad, match):
    games = np.random.default_rng(2).standard_normal((4, 2, 3, 3))
    games[2, 1] = 0.0
    games[2, 1, 0, 0] = bad
    if bad > 1.0:
        games[2, 1, 1, 1] = -bad
    with pytest.raises(ValueError, match=match) as found:
        normalise_games(games)
    with pytest.raises(ValueError) as expected:
        normalise_batch(games)
    assert str(found.value) == str(expected.value) and "game 2" in str(found.value)


def test_solve_batch_gives_solves_answers_bit_for_bit():
    games = np.random.default_rng(3).standard_normal((16, 2, 5, 4))
    batch = solvers.solve_batch(games)
    for i, game in enumerate(games):
        one = solvers.solve(game)
        for x, y in ((batch[i].joint, one.joint), (batch[i].duals, one.duals), (batch[i].gaps, one.gaps),
                     (batch[i].scale, one.scale)):
            np.testing.assert_array_equal(x, y)
        assert (batch[i].status, batch[i].iterations) == (one.status, one.iterations)
