"""``kernels.player_sums_one`` / ``player_gaps_one`` keep their running value in a register
over each run of one player's rows; the results must be the plain scatter loops', bit for
bit, whatever the order of the players (the certificate recomputes them)."""

import numpy as np
import pytest
from numba import njit

from solvers import kernels as kn


@njit
def _sums_scatter(alpha, player, out):
    out[:] = 0.0
    for k in range(alpha.shape[0]):
        out[player[k]] += alpha[k]


@njit
def _gaps_scatter(mean, player, gaps):
    gaps[:] = -np.inf
    for k in range(mean.shape[0]):
        if mean[k] > gaps[player[k]]:
            gaps[player[k]] = mean[k]
    for p in range(gaps.shape[0]):
        if gaps[p] == -np.inf:
            gaps[p] = 0.0


@pytest.mark.parametrize("player_major", [True, False])
def test_player_sums_and_gaps_match_the_scatter_loops(player_major):
    rng = np.random.default_rng(7)
    for _ in range(500):
        num, num_players = int(rng.integers(0, 40)), int(rng.integers(1, 5))
        player = rng.integers(0, num_players, num)
        if player_major:
            player = np.sort(player)
        # Magnitudes over ten decades (rounding depends on the order), zeros, -0.0 and -inf.
        alpha = rng.standard_normal(num) * 10.0 ** rng.integers(-5, 5, num)
        alpha[rng.random(num) < 0.2] = 0.0
        alpha[rng.random(num) < 0.05] = -0.0
        want, got = np.empty(num_players), np.empty(num_players)
        _sums_scatter(alpha, player, want)
        kn.player_sums_one(alpha, player, got)
        assert np.array_equal(want.view(np.int64), got.view(np.int64))
        alpha[rng.random(num) < 0.05] = -np.inf
        _gaps_scatter(alpha, player, want)
        kn.player_gaps_one(alpha, player, got)
        assert np.array_equal(want.view(np.int64), got.view(np.int64))
