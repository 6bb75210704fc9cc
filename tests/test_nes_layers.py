"""Equivariance and structure of the NES layers and network."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_nes.inference import chunk_size, fold_params, make_inference
from hybrid_nes.loss import duals_to_flat
from hybrid_nes.network import NetworkConfig, count_parameters, make_network
from hybrid_nes.sampling import SelectionInputs, sample_batch

SMALL = dict(payoff_channels=(8, 8), dual_channels=8, dual_layers=(8,))
PRESETS = ("me", "mre", "eps_me", "mw")


@functools.cache
def _small_network(concept: str):
    """``(net, params, perturbed params, BatchNorm statistics)`` of a SMALL network.

    Parameters and statistics do not depend on the game shape: one (slow) init per
    concept serves every shape. ``perturbed`` adds noise to every parameter so that no
    branch is zero; the statistics are those of a training batch under ``perturbed``.
    """
    net = make_network(NetworkConfig(concept=concept, **SMALL))
    games, sel = _init_batch()
    params, state = jax.jit(net.init, static_argnums=3)(jax.random.PRNGKey(1), games, sel, True)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    perturbed = jax.tree_util.tree_unflatten(
        treedef, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )
    _, stats = _jitted_apply(concept)(perturbed, state, None, games, sel, True)
    return net, params, perturbed, stats


def _init_batch():
    return sample_batch(jax.random.PRNGKey(3), 16, (4, 5), PRESETS)


@functools.cache
def _jitted_apply(concept: str):
    return jax.jit(make_network(NetworkConfig(concept=concept, **SMALL)).apply, static_argnums=5)


def _trained_mode_network(concept: str, shape, seed: int = 0):
    """Jitted inference of the perturbed SMALL network and a batch of ``shape`` games."""
    _, _, params, stats = _small_network(concept)
    games, sel = sample_batch(jax.random.PRNGKey(seed), 6, shape, PRESETS)
    apply = _jitted_apply(concept)
    return (lambda g, s: apply(params, stats, None, g, s, False)[0]), games, sel


def _permute_actions(games, sel, perms):
    for q, perm in enumerate(perms):
        games = jnp.take(games, perm, axis=q + 2)
        sel = sel._replace(base_logits=jnp.take(sel.base_logits, perm, axis=q + 1))
    return games, sel


def _permute_players(games, sel, order):
    games = jnp.transpose(games[:, list(order)], (0, 1, *(2 + q for q in order)))
    base = jnp.transpose(sel.base_logits, (0, *(1 + q for q in order)))
    return games, SelectionInputs(base, sel.eps_hat[:, list(order)], sel.eps_plus[:, list(order)], sel.rho)


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("shape,order", [((3, 4), None), ((3, 3), (1, 0)), ((2, 3, 3), (0, 2, 1))])
def test_permutations_of_actions_and_players_permute_duals(concept, shape, order):
    # Permutations that keep the shape reuse one compilation (slow on a shared CPU).
    apply, games, sel = _trained_mode_network(concept, shape)
    duals = apply(games, sel)
    rng = np.random.default_rng(0)
    perms = [rng.permutation(n) for n in shape]
    perms = [np.roll(p, 1) if np.all(p == np.arange(len(p))) else p for p in perms]  # never the identity
    permuted = apply(*_permute_actions(games, sel, perms))
    for q, perm in enumerate(perms):
        expected = duals[q][:, perm] if concept == "cce" else duals[q][:, perm][:, :, perm]
        np.testing.assert_allclose(np.asarray(permuted[q]), np.asarray(expected), atol=1e-5, rtol=1e-5)
        # not vacuous: the permutation moved different values
        assert not np.allclose(np.asarray(expected), np.asarray(duals[q]))
    if order is not None:
        swapped = apply(*_permute_players(games, sel, order))
        for i, q in enumerate(order):
            np.testing.assert_allclose(np.asarray(swapped[i]), np.asarray(duals[q]), atol=1e-5, rtol=1e-5)
        moved = [i for i, q in enumerate(order) if i != q]
        assert not np.allclose(np.asarray(duals[moved[0]]), np.asarray(duals[order[moved[0]]]))


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 3)])
def test_fast_inference_computes_the_network(concept, shape):
    # hybrid_nes.inference (BatchNorm folded, stacked branch weights, chunks of 2 games)
    # against the Haiku network in inference mode, with the permutation test's batch
    # (the same compiled reference).
    apply, games, sel = _trained_mode_network(concept, shape)
    want = np.asarray(duals_to_flat(apply(games, sel), concept))
    _, _, params, stats = _small_network(concept)
    config = NetworkConfig(concept=concept, **SMALL)
    cells = 2 * len(shape) * math.prod(shape)
    assert chunk_size(games.shape[0], shape, cells) == 2
    got = np.asarray(jax.jit(make_inference(config, cells))(fold_params(config, params, stats), games, sel))
    assert got.shape == want.shape and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert np.std(want) > 1e-2  # not vacuous: duals differ across games and constraints


def test_chunk_size_divides_the_batch():
    assert chunk_size(4096, (8, 8)) == 64
    assert chunk_size(4096, (16, 16)) == 16
    assert chunk_size(8, (8, 8)) == 8
    assert chunk_size(4096, (256, 256)) == 1  # one game larger than a chunk
    for batch in (8, 64, 4096):
        for shape in ((2, 2), (5, 7), (3, 3, 3)):
            assert batch % chunk_size(batch, shape) == 0


def test_parameters_do_not_depend_on_game_shape():
    for concept in ("cce", "ce"):
        net = make_network(NetworkConfig(concept=concept))
        shapes = []
        for shape in [(2, 2), (3, 7), (2, 3, 4)]:
            games, sel = sample_batch(jax.random.PRNGKey(0), 2, shape)
            params = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), games, sel, True))[0]  # noqa: B023
            shapes.append(jax.tree_util.tree_map(lambda x: x.shape, params))
        assert shapes[0] == shapes[1] == shapes[2]
        if concept == "cce":
            assert 60_000 < count_parameters(params) < 100_000  # the paper's ~80k


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_duals_are_nonnegative_with_zero_ce_diagonal_and_small_at_init(concept):
    _, params, _, state = _small_network(concept)  # the initial (unperturbed) parameters
    games, sel = _init_batch()
    duals, _ = _jitted_apply(concept)(params, state, None, games, sel, True)
    assert [d.shape[1] for d in duals] == [4, 5]
    for d in duals:
        assert bool(jnp.all(d >= 0))
        # init_duals = 0.1: the untrained network starts near 0.1, not softplus(0) = 0.69
        off = d if concept == "cce" else d[:, ~np.eye(d.shape[1], dtype=bool)]
        assert 0.05 < float(off.mean()) < 0.2
        if concept == "ce":
            assert float(jnp.abs(jnp.diagonal(d, axis1=1, axis2=2)).max()) == 0.0


def test_network_config_validation():
    with pytest.raises(ValueError, match="concept"):
        NetworkConfig(concept="ne")
    with pytest.raises(ValueError, match="channel"):
        NetworkConfig(payoff_channels=(0,))
    with pytest.raises(ValueError, match="unknown network config"):
        NetworkConfig.from_dict({"concept": "cce", "width": 3})
