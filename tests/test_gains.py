"""CCE / CE deviation gains in the ELL layout (solvers.gains) against brute force."""

import itertools

import numpy as np
import pytest

from solvers.gains import (
    check_concept,
    constraint_player,
    dense_gains,
    duals_by_player,
    duals_from_players,
    gains,
    gains_batch,
    num_constraints,
)


def brute_force_matrix(game: np.ndarray, concept: str) -> np.ndarray:
    """``[K, |A|]`` by definition (DESIGN §2), looping over every joint action."""
    shape = game.shape[1:]
    joints = list(itertools.product(*map(range, shape)))
    rows = []
    for p, n in enumerate(shape):
        pairs = [(d, None) for d in range(n)] if concept == "cce" else [
            (d, r) for d in range(n) for r in range(n) if r != d
        ]
        for dev, rec in pairs:
            row = []
            for a in joints:
                if rec is not None and a[p] != rec:
                    row.append(0.0)
                    continue
                b = list(a)
                b[p] = dev
                row.append(game[(p, *b)] - game[(p, *a)])
            rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("shape", [(2, 2), (3, 4), (1, 3), (2, 3, 4), (2, 2, 2, 2)])
def test_gains_match_definition(concept, shape):
    game = np.random.default_rng(sum(shape)).normal(size=(len(shape), *shape))
    g = gains(game, concept)
    assert g.num_constraints == num_constraints(shape, concept)
    np.testing.assert_allclose(dense_gains(g), brute_force_matrix(game, concept), atol=1e-14)


def test_ce_storage_is_sparse():
    shape = (16, 16)
    g = gains(np.zeros((2, *shape)), "ce")
    # |A| * sum_p (A_p - 1) stored gains, not |A| * K
    assert g.values.size == 256 * 30


def test_batch_matches_single():
    games = np.random.default_rng(4).normal(size=(3, 2, 3, 4))
    batch = gains_batch(games, "ce")
    for b in range(3):
        np.testing.assert_allclose(batch.values[b], gains(games[b], "ce").values)


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_dual_layout_round_trip(concept):
    shape = (2, 3, 4)
    flat = np.random.default_rng(5).random((7, num_constraints(shape, concept)))
    per_player = duals_by_player(flat, shape, concept)
    expected = [(7, n) if concept == "cce" else (7, n, n) for n in shape]
    assert [x.shape for x in per_player] == expected
    if concept == "ce":
        assert all(np.all(np.diagonal(x, axis1=-2, axis2=-1) == 0) for x in per_player)
    np.testing.assert_array_equal(duals_from_players(per_player, concept), flat)
    owners = constraint_player(shape, concept)
    assert np.bincount(owners).tolist() == [x[0].size - (x.shape[-1] if concept == "ce" else 0) for x in per_player]


def test_unknown_concept():
    with pytest.raises(ValueError, match="unknown concept"):
        check_concept("ne")
    with pytest.raises(TypeError):
        check_concept(3)
