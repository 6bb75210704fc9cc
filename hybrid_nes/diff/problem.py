"""The selection problem in JAX: normalisation, resolved selection, and the joint and
dual gradient at fixed duals (the maps the implicit step differentiates, DESIGN §4-§5)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_nes.diff.status import Config
from solvers.gains import gain_layout
from solvers.game import CONSTANT_ULPS

__all__ = ["Theta", "normalise", "resolve", "sigma_and_gradient"]

_EPS = float(np.finfo(np.float64).eps)  # as solvers.game: the forward solve is float64


class Theta(NamedTuple):
    """The problem data the solution depends on (normalised units).

    Attributes:
      gn: ``[N, |A|]`` normalised payoffs; scale: ``[N]`` payoff units per normalised unit;
      base: ``[|A|]`` base logits; eps_hat, eps_plus: ``[N]``.
    """

    gn: jax.Array
    scale: jax.Array
    base: jax.Array
    eps_hat: jax.Array
    eps_plus: jax.Array


def normalise(payoffs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(normalised [N, |A|], scale [N])`` as ``solvers.game.normalise_batch``, in JAX.

    The same steps and constant-player rule (``CONSTANT_ULPS``): centre on the midrange
    ``c``, divide by the largest deviation ``r``, then centre on the mean and put on the
    sphere. ``c`` and ``r`` are held constant in the derivative: the normalised payoffs do
    not depend on them, and ``scale = sqrt(|A|) / (||e|| r) = sqrt(|A|) / ||G_p - mean||``
    for any ``r``, so the gradient is that of the plain formula.
    """
    num_players = payoffs.shape[0]
    flat = payoffs.reshape(num_players, -1)
    num_joint = flat.shape[1]
    fixed = jax.lax.stop_gradient(flat)
    hi, lo = fixed.max(axis=1), fixed.min(axis=1)
    top = jnp.maximum(jnp.abs(hi), jnp.abs(lo))
    dev_fixed = fixed - (0.5 * hi + 0.5 * lo)[:, None]
    radius = jnp.abs(dev_fixed).max(axis=1)
    tiny = ((0.5 * hi - 0.5 * lo) <= (0.5 * CONSTANT_ULPS * _EPS) * top) | (radius == 0.0)
    safe_radius = jnp.where(tiny, 1.0, radius)
    unit = (flat - (0.5 * hi + 0.5 * lo)[:, None]) / safe_radius[:, None]
    centred = unit - unit.mean(axis=1, keepdims=True)
    sq = jnp.sum(centred * centred, axis=1)
    tiny = tiny | (jax.lax.stop_gradient(sq) == 0.0)
    norm = jnp.sqrt(jnp.where(tiny, 1.0, sq))
    scale = jnp.where(tiny, 1.0, math.sqrt(num_joint) / norm / safe_radius)
    return jnp.where(tiny[:, None], 0.0, centred * (math.sqrt(num_joint) / norm)[:, None]), scale


def resolve(cfg: Config, preset: str, plus: Any, payoffs: jax.Array, target: jax.Array | None,
            welfare: jax.Array | None, mu: jax.Array | None, eps_hat: jax.Array | None) -> Theta:
    """The normalised game and resolved selection (as ``solvers.selection.resolve_selection``)."""
    num_players = len(cfg.shape)
    num_joint = int(np.prod(cfg.shape))
    z2 = math.sqrt(num_joint)
    gn, scale = normalise(payoffs)
    if target is not None:
        flat_t = target.reshape(-1)
        base = jnp.log(flat_t / flat_t.sum())
    else:
        base = jnp.full((num_joint,), -math.log(num_joint), dtype=gn.dtype)
    if mu is not None:
        if welfare is None:
            w = gn.sum(axis=0)
        else:
            w = welfare.reshape(-1) - welfare.mean()
            wsq = jnp.sum(w * w)
            tiny = jax.lax.stop_gradient(wsq) <= 1e-24
            w = jnp.where(tiny, 0.0, w * (z2 / jnp.sqrt(jnp.where(tiny, 1.0, wsq))))
        base = base + mu * w
    if cfg.hard:
        eps_plus_n = jnp.full((num_players,), jnp.inf, dtype=gn.dtype)
    elif plus is None:
        eps_plus_n = jnp.full((num_players,), 2.0 * z2, dtype=gn.dtype)
    else:
        eps_plus_n = jnp.asarray(plus, dtype=gn.dtype) * scale
    if preset == "ms":
        eps_hat_n = -eps_plus_n
    else:
        eps_hat_n = jnp.clip(jnp.broadcast_to(eps_hat, (num_players,)) * scale, -z2, z2)
    return Theta(gn, scale, base, eps_hat_n, eps_plus_n)


def sigma_and_gradient(cfg: Config, alpha, gn, base, eps_hat, eps_plus, support):
    """``(sigma [|A|], g [K])`` at fixed duals: the joint and the dual gradient (DESIGN §4)."""
    layout = gain_layout(cfg.shape, cfg.concept)
    rows = jnp.asarray(layout.rows, dtype=jnp.int32)
    sp = jnp.asarray(layout.slot_player, dtype=jnp.int32)
    values = gn[sp[None, :], jnp.asarray(layout.dev, dtype=jnp.int32)] - gn[sp, :].T  # [|A|, c]
    lg = base - jnp.sum(values * alpha[rows], axis=1)
    lg = jnp.where(support, lg, -jnp.inf)
    sigma = jax.nn.softmax(lg)
    num = layout.player.shape[0]
    expected = jax.ops.segment_sum((values * sigma[:, None]).reshape(-1), rows.reshape(-1), num_segments=num)
    player = jnp.asarray(layout.player, dtype=jnp.int32)
    if cfg.hard:
        eps = eps_hat
    else:
        s = jax.ops.segment_sum(alpha, player, num_segments=len(cfg.shape))
        eps = eps_plus - (eps_plus - eps_hat) * jnp.exp(-s / cfg.rho)
    return sigma, eps[player] - expected
