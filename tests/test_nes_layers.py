"""Equivariance and structure of the NES layers and network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_nes.network import NetworkConfig, count_parameters, make_network
from hybrid_nes.sampling import SelectionInputs, sample_batch

SMALL = dict(payoff_channels=(8, 8), dual_channels=8, dual_layers=(8,))
PRESETS = ("me", "mre", "eps_me", "mw")


def _trained_mode_network(concept: str, shape, small: bool = True, seed: int = 0):
    net = make_network(NetworkConfig(concept=concept, **(SMALL if small else {})))
    games, sel = sample_batch(jax.random.PRNGKey(seed), 6, shape, PRESETS)
    params, state = net.init(jax.random.PRNGKey(seed + 1), games, sel, True)
    # Random, non-trivial weights: perturb every parameter so that no branch is zero.
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 2), len(leaves))
    params = jax.tree_util.tree_unflatten(
        treedef, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )
    _, state = net.apply(params, state, None, games, sel, True)  # statistics of this batch
    apply = jax.jit(lambda g, s: net.apply(params, state, None, g, s, False)[0])
    return apply, games, sel


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


def test_parameters_do_not_depend_on_game_shape():
    for concept in ("cce", "ce"):
        net = make_network(NetworkConfig(concept=concept))
        shapes = []
        for shape in [(2, 2), (3, 7), (2, 3, 4)]:
            games, sel = sample_batch(jax.random.PRNGKey(0), 2, shape)
            params = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), games, sel, True))[0]  # noqa: B023
            shapes.append(jax.tree_util.tree_map(lambda x: x.shape, params))
        assert shapes[0] == shapes[1] == shapes[2]
    games, sel = sample_batch(jax.random.PRNGKey(0), 2, (4, 4))
    net = make_network(NetworkConfig(concept="cce"))
    params = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), games, sel, True))[0]
    assert 60_000 < count_parameters(params) < 100_000  # the paper's ~80k


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_duals_are_nonnegative_with_zero_ce_diagonal_and_small_at_init(concept):
    net = make_network(NetworkConfig(concept=concept, **SMALL))
    games, sel = sample_batch(jax.random.PRNGKey(3), 16, (4, 5), PRESETS)
    params, state = net.init(jax.random.PRNGKey(4), games, sel, True)
    duals, _ = net.apply(params, state, None, games, sel, True)
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
