"""Invariances of ``solvers.solve`` (DESIGN §5): per-player payoff offset and positive
scale leave the selected joint unchanged; permuting players or one player's actions
permutes it the same way."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import solvers

#: Two exact solves of equivalent games agree to this (the solver's tol is 1e-8).
JOINT_TOL = 1e-7

SHAPES = [(2, 2), (3, 3), (2, 4), (4, 3), (2, 2, 2), (3, 2, 2)]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

concepts = st.sampled_from(["cce", "ce"])
selections = st.sampled_from(["me", "mw"])


@st.composite
def games(draw) -> np.ndarray:
    shape = draw(st.sampled_from(SHAPES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    game = rng.normal(size=(len(shape),) + shape)
    if draw(st.booleans()):  # integer payoffs: ties and faces (dominated actions) are common
        game = np.round(2 * game)
    return game


def solve_joint(game: np.ndarray, concept: str, selection: str) -> np.ndarray:
    sol = solvers.solve(game, concept, selection)
    assert sol.status is solvers.Status.OPTIMAL, sol
    return sol.joint


@SETTINGS
@given(game=games(), concept=concepts, selection=selections, data=st.data())
def test_offset_and_scale_invariance(game, concept, selection, data):
    n = game.shape[0]
    scale = np.array(data.draw(st.lists(st.floats(1e-2, 1e2), min_size=n, max_size=n)))
    offset = np.array(data.draw(st.lists(st.floats(-100.0, 100.0), min_size=n, max_size=n)))
    moved = game * scale.reshape((n,) + (1,) * n) + offset.reshape((n,) + (1,) * n)
    np.testing.assert_allclose(
        solve_joint(moved, concept, selection), solve_joint(game, concept, selection), atol=JOINT_TOL
    )


@SETTINGS
@given(game=games(), concept=concepts, selection=selections, data=st.data())
def test_player_permutation_equivariance(game, concept, selection, data):
    n = game.shape[0]
    perm = data.draw(st.permutations(range(n)))
    # New player i is old player perm[i]; joint axes are reordered the same way.
    permuted = np.stack([np.transpose(game[perm[i]], perm) for i in range(n)])
    np.testing.assert_allclose(
        solve_joint(permuted, concept, selection),
        np.transpose(solve_joint(game, concept, selection), perm),
        atol=JOINT_TOL,
    )


@SETTINGS
@given(game=games(), concept=concepts, selection=selections, data=st.data())
def test_action_permutation_equivariance(game, concept, selection, data):
    n = game.shape[0]
    player = data.draw(st.integers(0, n - 1))
    perm = np.array(data.draw(st.permutations(range(game.shape[1 + player]))))
    permuted = np.take(game, perm, axis=1 + player)
    np.testing.assert_allclose(
        solve_joint(permuted, concept, selection),
        np.take(solve_joint(game, concept, selection), perm, axis=player),
        atol=JOINT_TOL,
    )
