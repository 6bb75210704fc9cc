"""The JAX dual loss against the NumPy reference in solvers.dual (float64, 1e-10)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_nes.loss import (
    batch_dual_loss,
    dual_loss,
    dual_metrics,
    duals_from_flat,
    duals_to_flat,
)
from hybrid_nes.sampling import SelectionInputs, selection_inputs
from solvers import (
    Selection,
    certificate,
    dual_problem,
    duals_by_player,
    normalise,
    resolve_selection,
)
from solvers.dual import dual_gradient
from solvers.dual import dual_loss as reference_loss

CASES = [((3, 4), "cce"), ((3, 4), "ce"), ((2, 3, 2), "cce"), ((2, 3, 2), "ce")]


def _selections(shape, rng):
    target = rng.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape)
    return [
        Selection.me(),
        Selection.mre(target=target),
        Selection.mre(target=target, eps_hat=-0.1, eps_plus=3.0, rho=0.7),
        Selection.mw(mu=1.5, eps_hat=0.2, rho=2.0),
    ]


def _one(sel: SelectionInputs, i: int = 0) -> SelectionInputs:
    return SelectionInputs(*(jnp.asarray(x[i]) for x in sel))


@pytest.mark.parametrize("shape,concept", CASES)
def test_loss_gradient_and_gap_match_numpy_reference(shape, concept):
    rng = np.random.default_rng(sum(shape) + len(concept))
    with jax.enable_x64(True):
        # One compilation per case: eager dispatch is slow on a shared CPU.
        loss_fn = jax.jit(lambda g, s, a: dual_loss(g, s, duals_from_flat(a, shape, concept), concept))
        grad_fn = jax.jit(jax.grad(loss_fn, argnums=2))
        metrics_fn = jax.jit(lambda g, s, a: dual_metrics(g, s, duals_from_flat(a, shape, concept), concept))
        for selection in _selections(shape, rng):
            game = normalise(rng.normal(size=(len(shape), *shape)))
            params = resolve_selection(selection, game)
            problem = dual_problem(game, concept, params)
            alpha = rng.exponential(size=problem.num_constraints) * 0.5
            sel = _one(selection_inputs([params], shape))
            payoffs = jnp.asarray(game.payoffs)
            alpha_j = jnp.asarray(alpha)

            value = loss_fn(payoffs, sel, alpha_j)
            assert value.dtype == jnp.float64
            assert abs(float(value) - reference_loss(problem, alpha)) < 1e-10

            grad = grad_fn(payoffs, sel, alpha_j)
            np.testing.assert_allclose(np.asarray(grad), dual_gradient(problem, alpha), atol=1e-10)

            metrics = metrics_fn(payoffs, sel, alpha_j)
            cert = certificate(problem, alpha)
            np.testing.assert_allclose(np.asarray(metrics.joint).ravel(), cert.joint, atol=1e-12)
            assert abs(float(metrics.gap) - np.maximum(cert.gaps, 0).sum()) < 1e-10


@pytest.mark.parametrize("shape,concept", CASES)
def test_flat_layout_matches_solvers_gains(shape, concept):
    rng = np.random.default_rng(1)
    k = sum(n if concept == "cce" else n * (n - 1) for n in shape)
    flat = rng.normal(size=(3, k))
    with jax.enable_x64(True):
        per_player = duals_from_flat(jnp.asarray(flat), shape, concept)
        for ours, ref in zip(per_player, duals_by_player(flat, shape, concept), strict=True):
            np.testing.assert_array_equal(np.asarray(ours), ref)
        np.testing.assert_array_equal(np.asarray(duals_to_flat(per_player, concept)), flat)
    with pytest.raises(ValueError, match="entries"):
        duals_from_flat(jnp.zeros((k + 1,)), shape, concept)


def test_ce_loss_ignores_the_diagonal():
    rng = np.random.default_rng(2)
    shape = (3, 3)
    with jax.enable_x64(True):
        game = normalise(rng.normal(size=(2, *shape)))
        sel = _one(selection_inputs([resolve_selection(Selection.me(eps_hat=0.1, rho=2.0), game)], shape))
        duals = tuple(jnp.asarray(rng.exponential(size=(3, 3))) * (1 - jnp.eye(3)) for _ in range(2))
        noisy = tuple(d + 5.0 * jnp.eye(3) for d in duals)
        a = dual_loss(jnp.asarray(game.payoffs), sel, duals, "ce")
        b = dual_loss(jnp.asarray(game.payoffs), sel, noisy, "ce")
        assert abs(float(a - b)) < 1e-12


def test_batched_loss_is_jittable_and_matches_single_games():
    rng = np.random.default_rng(3)
    shape = (4, 3)
    games = [normalise(rng.normal(size=(2, *shape))) for _ in range(5)]
    params = [resolve_selection(Selection.me(), g) for g in games]
    sel = selection_inputs(params, shape)
    with jax.enable_x64(True):
        payoffs = jnp.asarray(np.stack([g.payoffs for g in games]))
        duals = tuple(jnp.asarray(rng.exponential(size=(5, n))) for n in shape)
        batched = jax.jit(batch_dual_loss, static_argnums=3)(payoffs, SelectionInputs(*map(jnp.asarray, sel)), duals, "cce")
        for i in range(5):
            single = dual_loss(payoffs[i], _one(sel, i), tuple(d[i] for d in duals), "cce")
            assert abs(float(batched[i] - single)) < 1e-12
