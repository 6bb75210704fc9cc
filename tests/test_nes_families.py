"""Structured training families: shapes, normalisation, defining properties, mixtures."""

from __future__ import annotations

import itertools
import json
import math

import jax
import numpy as np
import pytest

from hybrid_nes.families import (
    FAMILIES,
    HELD_OUT_FAMILIES,
    TRAIN_MIXTURE,
    check_mixture,
    mixture_counts,
    sample_family,
    sample_mixture,
    sample_training_batch,
)
from hybrid_nes.sampling import sample_batch

KEY = jax.random.PRNGKey(3)
SHAPES = [(2, 2), (3, 2, 2)]


def _raw(name, shape, batch=32, key=KEY):
    return np.asarray(FAMILIES[name].sample(key, batch, shape), np.float64)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_families_lie_on_the_sphere(name, shape):
    if not FAMILIES[name].supports(shape):
        with pytest.raises(ValueError, match="does not support"):
            sample_family(KEY, name, 4, shape)
        return
    games = np.asarray(sample_family(KEY, name, 16, shape), np.float64)
    assert games.shape == (16, len(shape), *shape)
    flat = games.reshape(16, len(shape), -1)
    assert np.all(np.isfinite(flat))
    np.testing.assert_allclose(flat.mean(-1), 0.0, atol=1e-5)
    # no constant player: every player is scaled onto the sphere, not left at zero
    np.testing.assert_allclose(np.linalg.norm(flat, axis=-1), math.sqrt(math.prod(shape)), rtol=1e-4)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_families_are_deterministic_by_key(name):
    shape = (2, 2) if name == "classic_2x2" else (3, 3)
    a = np.asarray(sample_family(jax.random.PRNGKey(5), name, 8, shape))
    b = np.asarray(sample_family(jax.random.PRNGKey(5), name, 8, shape))
    c = np.asarray(sample_family(jax.random.PRNGKey(6), name, 8, shape))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_zero_sum_sums_to_zero_after_normalisation():
    games = np.asarray(sample_family(KEY, "zero_sum", 64, (5, 5)), np.float64)
    np.testing.assert_allclose(games.sum(axis=1), 0.0, atol=1e-5)
    assert not FAMILIES["zero_sum"].supports((2, 2, 2))


def _surviving(game: np.ndarray) -> list[list[int]]:
    """Pure actions left by iterated elimination of strictly dominated pure actions."""
    n = game.shape[0]
    alive = [list(range(a)) for a in game.shape[1:]]
    changed = True
    while changed:
        changed = False
        for p in range(n):
            sub = game[(p, *np.ix_(*alive))]  # [alive_1, ..., alive_N]
            rows = np.moveaxis(sub, p, 0).reshape(len(alive[p]), -1)
            keep = [i for i in range(len(alive[p]))
                    if not any(np.all(rows[j] > rows[i]) for j in range(len(alive[p])) if j != i)]
            if len(keep) < len(alive[p]):
                alive[p] = [alive[p][i] for i in keep]
                changed = True
    return alive


@pytest.mark.parametrize("shape", [(4, 4), (3, 6), (3, 2, 3)])
def test_dominance_solvable_games_reduce_to_one_profile(shape):
    games = np.asarray(sample_family(KEY, "dominance_solvable", 24, shape), np.float64)
    for g in games:
        assert [len(a) for a in _surviving(g)] == [1] * len(shape)


def test_random_games_are_rarely_dominance_solvable():
    # the checker above can fail: random 4x4 games mostly keep several actions
    games = np.asarray(sample_family(KEY, "random", 24, (4, 4)), np.float64)
    assert sum(all(len(a) == 1 for a in _surviving(g)) for g in games) < 12


def test_coordination_diagonal_is_a_strict_equilibrium():
    games = np.asarray(sample_family(KEY, "coordination", 32, (4, 4)), np.float64)
    for g in games:
        for a in range(4):
            others = [b for b in range(4) if b != a]
            assert np.all(g[0, a, a] > g[0, others, a]) and np.all(g[1, a, a] > g[1, a, others])


@pytest.mark.parametrize(("name", "sign"), [("covariant_neg", -1), ("covariant_pos", 1)])
def test_covariant_games_have_the_correlation_sign(name, sign):
    games = np.asarray(sample_family(KEY, name, 64, (6, 6)), np.float64).reshape(64, 2, -1)
    corr = np.array([np.corrcoef(g[0], g[1])[0, 1] for g in games])
    assert np.all(sign * corr > 0.2)
    mixed = np.asarray(sample_family(KEY, "covariant_rand", 64, (6, 6)), np.float64).reshape(64, 2, -1)
    corr = np.array([np.corrcoef(g[0], g[1])[0, 1] for g in mixed])
    assert corr.min() < -0.3 and corr.max() > 0.3


def test_graphical_players_ignore_non_neighbours():
    games = _raw("graphical", (3, 3, 3), batch=64)
    independent = np.zeros((64, 3, 3), bool)
    for p, q in itertools.permutations(range(3), 2):
        spread = np.ptp(games[:, p], axis=q + 1)  # [B, ...]: how much q's action moves p's payoff
        independent[:, p, q] = np.all(spread.reshape(64, -1) < 1e-6, axis=1)
    share = independent[:, [0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]].mean()
    assert 0.05 < share < 0.95


def test_congestion_games_are_potential_games():
    # exact potential: the payoff changes around every 2x2 cycle of deviations sum to 0
    for g in _raw("congestion", (5, 6), batch=16):
        for a, a2, b, b2 in itertools.product(range(5), range(5), range(6), range(6)):
            cycle = (g[0, a2, b] - g[0, a, b]) + (g[1, a2, b2] - g[1, a2, b]) \
                + (g[0, a, b2] - g[0, a2, b2]) + (g[1, a, b] - g[1, a, b2])
            assert abs(cycle) < 1e-5


def test_location_shares_sum_to_one():
    games = _raw("location", (4, 5), batch=16)
    np.testing.assert_allclose(games.sum(axis=1), 1.0, rtol=1e-5)


def test_classic_games_follow_an_ordinal_class():
    games = _raw("classic_2x2", (2, 2), batch=256)
    assert not FAMILIES["classic_2x2"].supports((3, 3))
    zero_sum = np.all(np.abs(games.sum(axis=1)) < 1e-6, axis=(1, 2))
    assert 0 < zero_sum.mean() < 0.5  # matching pennies, among the others
    symmetric = np.all(np.abs(games[:, 0] - np.swapaxes(games[:, 1], 1, 2)) < 1e-6, axis=(1, 2))
    assert symmetric.mean() > 0.4  # the five symmetric ordinal classes and pure coordination


def test_mixtures_validate_and_split_batches():
    assert check_mixture(None) is None
    assert check_mixture({"random": 1, "zero_sum": 2.0}) == (("random", 1.0), ("zero_sum", 2.0))
    assert check_mixture([["random", 1]]) == (("random", 1.0),)
    for bad in ({"nope": 1.0}, {"random": -1.0}, {"random": 0.0}, [("random", 1.0), ("random", 2.0)], {}):
        with pytest.raises(ValueError):
            check_mixture(bad)
    with pytest.raises(TypeError):
        check_mixture([("random",)])
    counts = dict(mixture_counts(TRAIN_MIXTURE, 100, (8, 8)))
    assert sum(counts.values()) == 100 and "classic_2x2" not in counts
    assert counts["random"] == max(counts.values())
    assert "classic_2x2" in dict(mixture_counts(TRAIN_MIXTURE, 100, (2, 2)))
    assert not set(HELD_OUT_FAMILIES) & {name for name, _ in TRAIN_MIXTURE}
    with pytest.raises(ValueError, match="supports"):
        mixture_counts((("classic_2x2", 1.0),), 8, (3, 3))
    games = sample_mixture(KEY, 50, (3, 3), TRAIN_MIXTURE)
    assert games.shape == (50, 2, 3, 3)


def test_training_batch_without_mixture_is_the_sphere_sampler():
    a = sample_training_batch(KEY, 8, (3, 3), ("me", "mre"))
    b = sample_batch(KEY, 8, (3, 3), ("me", "mre"))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    games, sel = sample_training_batch(KEY, 8, (3, 3), ("me",), TRAIN_MIXTURE)
    assert games.shape == (8, 2, 3, 3) and sel.base_logits.shape == (8, 3, 3)


def test_train_config_carries_the_mixture():
    from hybrid_nes.train import TrainConfig

    config = TrainConfig(families={"random": 1.0, "zero_sum": 1.0})
    assert config.families == (("random", 1.0), ("zero_sum", 1.0))
    back = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and hash(back) == hash(config)
    assert TrainConfig().families is None
    with pytest.raises(ValueError, match="families"):
        TrainConfig(families={"zero_sum": -1.0})


def test_a_train_step_on_the_mixture_is_finite():
    from hybrid_nes.network import NetworkConfig
    from hybrid_nes.train import TrainConfig, init_state, make_train_step

    config = TrainConfig(network=NetworkConfig(payoff_channels=(8,), dual_channels=8, dual_layers=(8,)),
                         shapes=((2, 2),), batch_size=32, families=TRAIN_MIXTURE)
    state = init_state(config)
    out = make_train_step(config)(state.params, state.bn_state, state.opt_state, np.int32(0), np.float32(1e-3), (2, 2))
    assert np.isfinite(float(out[3])) and np.isfinite(float(out[4]))


def test_the_training_data_stream_is_a_function_of_seed_and_step():
    """The sampler jitted apart from the step draws ``fold_in(fold_in(PRNGKey(seed), 2), step)``."""
    from hybrid_nes.network import NetworkConfig
    from hybrid_nes.train import TrainConfig, make_sampler

    # test_nes_budget's ahead-of-time config but for the seed: the sampler is shared by
    # seeds, so its jitted (3, 2) mixture sampler, compiled there, serves this test too
    config = TrainConfig(network=NetworkConfig(payoff_channels=(8,), dual_channels=8, dual_layers=(8,)),
                         shapes=((3, 2),), batch_size=16, families=TRAIN_MIXTURE, seed=5)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(5), 2), 7)
    want = jax.jit(lambda k: sample_training_batch(k, 16, (3, 2), config.presets, TRAIN_MIXTURE))(key)
    got = make_sampler(config)(np.int32(7), (3, 2))
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = make_sampler(config)(np.int32(8), (3, 2))
    assert not np.array_equal(np.asarray(other[0]), np.asarray(got[0]))
