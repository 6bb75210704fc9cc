"""The fast inference path computes the Haiku network's function (inference mode)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hybrid_nes.inference import chunk_size, fold_params, make_inference
from hybrid_nes.loss import duals_to_flat
from hybrid_nes.model import load_pretrained
from hybrid_nes.network import NetworkConfig, make_network
from hybrid_nes.sampling import sample_batch

SMALL = dict(payoff_channels=(8, 8), dual_channels=8, dual_layers=(8,))
PRESETS = ("me", "mre", "eps_me", "mw")


def _random_network(config: NetworkConfig, shape, seed: int = 0):
    """Perturbed parameters (no branch zero, BatchNorm scale/offset not 1/0) and the
    BatchNorm statistics of a training batch (non-trivial mean and var)."""
    net = make_network(config)
    games, sel = sample_batch(jax.random.PRNGKey(seed), 16, shape, PRESETS)
    params, state = net.init(jax.random.PRNGKey(seed + 1), games, sel, True)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 2), len(leaves))
    params = jax.tree_util.tree_unflatten(
        treedef, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )
    _, stats = jax.jit(net.apply, static_argnums=5)(params, state, None, games, sel, True)
    return net, params, stats


def _reference(net, config, params, stats, games, sel):
    duals, _ = jax.jit(net.apply, static_argnums=5)(params, stats, None, games, sel, False)
    return np.asarray(duals_to_flat(duals, config.concept))


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 3)])
def test_folded_chunked_inference_equals_the_haiku_network(concept, shape):
    config = NetworkConfig(concept=concept, **SMALL)
    net, params, stats = _random_network(config, shape)
    games, sel = sample_batch(jax.random.PRNGKey(7), 32, shape, PRESETS)
    want = _reference(net, config, params, stats, games, sel)
    # 8 games per chunk: the compiled loop runs 4 chunks.
    cells = 8 * len(shape) * int(np.prod(shape))
    assert chunk_size(32, shape, cells) == 8
    got = np.asarray(jax.jit(make_inference(config, cells))(fold_params(config, params, stats), games, sel))
    assert got.shape == want.shape and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert np.std(want) > 1e-2  # not vacuous: the duals vary across games and constraints


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_shipped_networks_predict_as_the_haiku_network(concept):
    model = load_pretrained(concept)
    shape = (8, 8)
    games, sel = sample_batch(jax.random.PRNGKey(3), 24, shape, ("me", "mre"))
    net = make_network(model.config)
    want = _reference(net, model.config, model.params, model.statistics(shape), games, sel)
    got = model.predict_normalised(np.asarray(games), sel)  # padded to 32 games, one chunk
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_chunk_size_divides_the_batch():
    assert chunk_size(4096, (8, 8)) == 64
    assert chunk_size(4096, (16, 16)) == 16
    assert chunk_size(8, (8, 8)) == 8
    assert chunk_size(4096, (256, 256)) == 1  # one game larger than a chunk
    for batch in (8, 64, 4096):
        for shape in ((2, 2), (5, 7), (3, 3, 3)):
            assert batch % chunk_size(batch, shape) == 0
