"""Games on the L2-invariant sphere and sampled selection parameters."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from hybrid_nes.sampling import (
    TRAIN_PRESETS,
    sample_batch,
    sample_games,
    sample_selection,
    selection_inputs,
)
from solvers import Selection, normalise, resolve_selection


@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (2, 3, 4)])
def test_games_lie_on_the_invariant_sphere(shape):
    games = np.asarray(sample_games(jax.random.PRNGKey(0), 64, shape), np.float64)
    assert games.shape == (64, len(shape), *shape)
    flat = games.reshape(64, len(shape), -1)
    np.testing.assert_allclose(flat.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=-1), math.sqrt(math.prod(shape)), rtol=1e-5)
    # already normalised: solvers.normalise leaves them (up to float32) unchanged
    np.testing.assert_allclose(normalise(games[0]).payoffs, games[0], atol=1e-5)


def test_sampling_is_seeded():
    a = sample_batch(jax.random.PRNGKey(7), 8, (3, 3), TRAIN_PRESETS)
    b = sample_batch(jax.random.PRNGKey(7), 8, (3, 3), TRAIN_PRESETS)
    c = sample_batch(jax.random.PRNGKey(8), 8, (3, 3), TRAIN_PRESETS)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.allclose(np.asarray(a[0]), np.asarray(c[0]))


def test_presets_follow_table_3():
    shape = (4, 4)
    z2 = 4.0
    games = sample_games(jax.random.PRNGKey(1), 400, shape)
    key = jax.random.PRNGKey(2)
    me = sample_selection(key, games, ("me",))
    np.testing.assert_allclose(np.asarray(me.base_logits), -math.log(16), rtol=1e-6)
    assert np.all(np.isinf(np.asarray(me.rho))) and np.all(np.asarray(me.eps_hat) == 0)

    mre = sample_selection(key, games, ("mre",))
    target = np.exp(np.asarray(mre.base_logits, np.float64)).reshape(400, -1)
    np.testing.assert_allclose(target.sum(-1), 1.0, rtol=1e-5)
    # Dirichlet(1) entries: mean 1/|A|, variance (|A|-1)/(|A|^2 (|A|+1))
    assert abs(target.mean() - 1 / 16) < 1e-6
    assert abs(target.var() / ((15) / (256 * 17)) - 1.0) < 0.1

    eps = sample_selection(key, games, ("eps_me",))
    eps_hat, eps_plus = np.asarray(eps.eps_hat), np.asarray(eps.eps_plus)
    assert eps_hat.min() >= -z2 and eps_hat.max() <= z2 and eps_hat.std() > 1.0
    assert np.all(eps_plus > eps_hat) and np.all(np.isfinite(np.asarray(eps.rho)))

    ms = sample_selection(key, games, ("ms",))
    np.testing.assert_allclose(np.asarray(ms.eps_hat), -np.asarray(ms.eps_plus))

    mixed = sample_selection(key, games, ("me", "mre"))
    uniform = np.all(np.isclose(np.asarray(mixed.base_logits).reshape(400, -1), -math.log(16)), axis=1)
    assert 100 < uniform.sum() < 300  # about half of each


def test_unknown_preset_and_bad_shape_raise():
    games = sample_games(jax.random.PRNGKey(1), 2, (2, 2))
    with pytest.raises(ValueError, match="presets"):
        sample_selection(jax.random.PRNGKey(0), games, ("mg",))
    with pytest.raises(ValueError, match="N >= 2"):
        sample_games(jax.random.PRNGKey(0), 2, (3,))
    with pytest.raises(ValueError, match="at least one action"):
        sample_games(jax.random.PRNGKey(0), 2, (3, 0))


def test_selection_inputs_stack_resolved_selections():
    rng = np.random.default_rng(0)
    shape = (2, 3)
    games = [normalise(rng.normal(size=(2, *shape))) for _ in range(3)]
    params = [resolve_selection(Selection.me(eps_hat=0.1, rho=2.0), g) for g in games]
    sel = selection_inputs(params, shape)
    assert sel.base_logits.shape == (3, *shape) and sel.eps_hat.shape == (3, 2) and sel.rho.shape == (3,)
    np.testing.assert_allclose(sel.eps_hat[1], params[1].eps_hat)
    with pytest.raises(ValueError, match="shape"):
        selection_inputs(params, (3, 2, 1))
    with pytest.raises(ValueError, match="entropy"):
        selection_inputs([resolve_selection(Selection.mg(), games[0])], shape)
    with pytest.raises(ValueError, match="empty"):
        selection_inputs([], shape)
