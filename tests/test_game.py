"""Validation and normalisation of games (solvers.game)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.game import as_game, as_game_batch, marginals, normalise, normalise_batch


def test_bimatrix_pair_is_stacked():
    row, col = np.arange(6.0).reshape(2, 3), -np.arange(6.0).reshape(2, 3)
    game = as_game((row, col))
    assert game.shape == (2, 2, 3)
    np.testing.assert_array_equal(game[1], col)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 2)), "shape"),
        (np.zeros((3, 2, 2)), "players"),
        (np.zeros((2, 0, 3)), "at least one action"),
        (np.full((2, 2, 2), np.nan), "NaN"),
        (np.full((2, 2, 2), np.inf), "inf"),
        ((np.zeros((2, 2)), np.zeros((2, 3))), "mismatched"),
    ],
)
def test_bad_games_raise_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        as_game(bad)


def test_non_numeric_game_raises_type_error():
    with pytest.raises(TypeError, match="numeric"):
        as_game(np.array([[["a", "b"]], [["c", "d"]]]))


def test_batch_validation():
    with pytest.raises(ValueError, match=r"\[B, N"):
        as_game_batch(np.zeros((2, 2, 2)))
    assert as_game_batch(np.zeros((4, 2, 3, 2))).shape == (4, 2, 3, 2)


def test_normalise_puts_each_player_on_the_sphere():
    rng = np.random.default_rng(0)
    game = as_game(rng.normal(size=(3, 2, 3, 4)) * 7 + 3)
    norm = normalise(game)
    flat = norm.payoffs.reshape(3, -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), np.sqrt(24.0), rtol=1e-12)
    # the map back: normalised = scale * (payoff - offset)
    np.testing.assert_allclose(
        norm.payoffs, norm.scale[:, None, None, None] * (game - norm.offset[:, None, None, None])
    )


def test_normalise_is_invariant_to_offset_and_scale():
    rng = np.random.default_rng(1)
    game = rng.normal(size=(2, 4, 5))
    moved = game * np.array([3.0, 0.25])[:, None, None] + np.array([-2.0, 9.0])[:, None, None]
    np.testing.assert_allclose(normalise(game).payoffs, normalise(moved).payoffs, atol=1e-12)


def test_constant_player_has_zero_payoffs_and_unit_scale():
    game = np.stack([np.full((3, 3), 5.0), np.arange(9.0).reshape(3, 3)])
    norm = normalise(game)
    assert np.all(norm.payoffs[0] == 0.0)
    assert norm.scale[0] == 1.0 and np.all(np.isfinite(norm.payoffs))


def test_batch_matches_single():
    rng = np.random.default_rng(2)
    games = rng.normal(size=(5, 2, 3, 3))
    batch = normalise_batch(games)
    for b in range(5):
        np.testing.assert_allclose(batch.payoffs[b], normalise(games[b]).payoffs)


def test_marginals_sum_out_other_players():
    joint = np.random.default_rng(3).dirichlet(np.ones(24)).reshape(2, 3, 4)
    m = marginals(joint)
    assert [x.shape for x in m] == [(2,), (3,), (4,)]
    np.testing.assert_allclose(m[1], joint.sum(axis=(0, 2)))


def test_valid_float64_game_is_returned_as_a_copy():
    game = np.arange(8.0).reshape(2, 2, 2)
    out = as_game(game)
    np.testing.assert_array_equal(out, game)
    out[0, 0, 0] = 99.0
    assert game[0, 0, 0] == 0.0
    assert as_game(np.arange(8).reshape(2, 2, 2)).dtype == np.float64


# ---------------------------------------------------------------------------------------
# Normalisation at extreme scales, against exact rational arithmetic.
# ---------------------------------------------------------------------------------------
def _exact_normalised(ints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised payoffs and ``1 / scale`` (the centred norm over sqrt(|A|)) of an integer
    game, from exact rationals (Fractions); only the final square root is rounded."""
    from fractions import Fraction

    n = ints.shape[0]
    flat = ints.reshape(n, -1)
    num_joint = flat.shape[1]
    out = np.zeros(flat.shape)
    unit = np.zeros(n)
    for p in range(n):
        values = [Fraction(int(v)) for v in flat[p]]
        mean = sum(values) / num_joint
        centred = [v - mean for v in values]
        sq = sum(c * c for c in centred)
        if sq == 0:
            unit[p] = math.nan
            continue
        norm = math.sqrt(sq)  # the one rounding: |A| sqrt-free otherwise
        unit[p] = norm / math.sqrt(num_joint)
        out[p] = [float(c) / norm * math.sqrt(num_joint) for c in centred]
    return out.reshape(ints.shape), unit


@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from([(2, 2), (3, 2), (2, 3, 2), (4, 4)]),
    seed=st.integers(0, 2**32 - 1),
    exponent=st.floats(-300.0, 300.0),
    offset=st.integers(-(10**13), 10**13),
)
def test_normalise_matches_exact_arithmetic_from_1e_minus_300_to_1e300(shape, seed, exponent, offset):
    rng = np.random.default_rng(seed)
    ints = rng.integers(-20, 21, size=(len(shape),) + shape)
    want, unit = _exact_normalised(ints)
    factor = 10.0**exponent
    for game, unit_scale in ((ints * factor, factor), (ints + float(offset), 1.0)):
        norm = normalise(np.asarray(game, dtype=np.float64))
        np.testing.assert_allclose(norm.payoffs, want, atol=1e-13)
        for p in range(len(shape)):
            if math.isnan(unit[p]):  # a constant player
                assert norm.scale[p] == 1.0 and not norm.payoffs[p].any()
            else:
                assert norm.scale[p] == pytest.approx(1.0 / (unit[p] * unit_scale), rel=1e-13)
        assert np.all(np.isfinite(norm.offset))
