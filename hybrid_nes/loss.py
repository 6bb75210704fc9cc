"""The eps-MWMRE dual loss (DESIGN §4) in JAX, for training and evaluating the network.

Duals travel per player, as the network produces them: a tuple of N arrays,
``[A_p]`` (CCE, indexed by the deviation a') or ``[A_p, A_p]`` (CE, indexed
``[dev a', rec a'']``, diagonal ignored). ``duals_to_flat`` / ``duals_from_flat`` move to
and from the flat ``[K]`` layout of ``solvers.gains``.

The gains are never materialised: for player p,

    CCE: sum_a' alpha(a') A_p(a', a)      = sum_a' alpha(a') G_p(a', a_-p) - S_p G_p(a)
    CE:  sum_a',a'' alpha(a', a'') A_p(.) = sum_a' alpha(a', a_p) G_p(a', a_-p) - r(a_p) G_p(a)

with ``r(a'') = sum_a' alpha(a', a'')``: a contraction along the player's own axis,
``O(A_p |A|)`` per player. All functions here take ONE game; ``jax.vmap`` them (the
``batch_*`` versions do) over games.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_nes.sampling import SelectionInputs
from solvers.gains import check_concept

__all__ = [
    "Duals",
    "DualMetrics",
    "duals_to_flat",
    "duals_from_flat",
    "mask_diagonal",
    "logits",
    "dual_loss",
    "dual_metrics",
    "batch_dual_loss",
    "batch_dual_metrics",
]

Duals = tuple  # tuple of N arrays, [A_p] (CCE) or [A_p, A_p] (CE)


@cache
def _ce_pairs(num_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """(dev, rec) of player's flat CE constraints, in solvers.gains order."""
    dev, rec = np.nonzero(~np.eye(num_actions, dtype=bool))  # row-major = flat order
    # int32 whatever the x64 mode: JAX's index normalisation otherwise mixes int32 and
    # int64 when a process traced this in float32 before entering ``jax.enable_x64``
    return dev.astype(np.int32), rec.astype(np.int32)


def mask_diagonal(alpha: jax.Array) -> jax.Array:
    """Zeroes the diagonal of CE duals ``[..., A, A]`` (a deviation to itself gains 0)."""
    n = alpha.shape[-1]
    return alpha * (1.0 - jnp.eye(n, dtype=alpha.dtype))


def duals_to_flat(duals: Sequence[jax.Array], concept: str) -> jax.Array:
    """Per-player duals (leading batch axes allowed) to the flat ``[..., K]`` layout."""
    concept = check_concept(concept)
    blocks = []
    for alpha in duals:
        if concept == "cce":
            blocks.append(alpha)
        else:
            dev, rec = _ce_pairs(alpha.shape[-1])
            blocks.append(alpha[..., dev, rec])
    return jnp.concatenate(blocks, axis=-1)


def duals_from_flat(flat: jax.Array, shape: Sequence[int], concept: str) -> Duals:
    """Flat duals ``[..., K]`` to per-player arrays (CE: zero diagonal)."""
    concept = check_concept(concept)
    out, start = [], 0
    for n in shape:
        size = n if concept == "cce" else n * (n - 1)
        block = flat[..., start : start + size]
        start += size
        if concept == "cce":
            out.append(block)
        else:
            dev, rec = _ce_pairs(n)
            full = jnp.zeros(flat.shape[:-1] + (n, n), flat.dtype)
            out.append(full.at[..., dev, rec].set(block))
    if start != flat.shape[-1]:
        raise ValueError(
            f"flat duals have {flat.shape[-1]} entries; shape {tuple(shape)} and concept "
            f"{concept!r} need {start}"
        )
    return tuple(out)


def _player_sums(duals: Duals, concept: str) -> jax.Array:
    """``[N]`` ``S_p``: the sum of each player's (off-diagonal) duals."""
    if concept == "cce":
        return jnp.stack([a.sum() for a in duals])
    return jnp.stack([mask_diagonal(a).sum() for a in duals])


def logits(payoffs: jax.Array, base_logits: jax.Array, duals: Duals, concept: str) -> jax.Array:
    """``[A1..AN]`` logits ``b(a) - sum_{p,dev} alpha_p(dev) A_p(dev, a)`` of one game.

    Args:
      payoffs: ``[N, A1..AN]`` (normalised) payoffs.
      base_logits: ``[A1..AN]`` ``ln target + mu W``.
      duals: per-player duals (see module docstring).
      concept: "cce" or "ce".
    """
    concept = check_concept(concept)
    out = base_logits
    for p, alpha in enumerate(duals):
        g = payoffs[p]
        if concept == "cce":
            # sum_a' alpha(a') G(a', a_-p), constant along a_p.
            dev = jnp.expand_dims(jnp.tensordot(alpha, g, axes=(0, p)), p)
            out = out - (dev - alpha.sum() * g)
        else:
            alpha = mask_diagonal(alpha)
            # [rec, a_-p] -> rec moved to axis p: sum_a' alpha(a', a_p) G(a', a_-p).
            dev = jnp.moveaxis(jnp.tensordot(alpha, g, axes=(0, p)), 0, p)
            rec_sum = alpha.sum(axis=0)
            bshape = [1] * g.ndim
            bshape[p] = g.shape[p]
            out = out - (dev - rec_sum.reshape(bshape) * g)
    return out


def _penalty_terms(sel: SelectionInputs, sums: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(penalty, eps [N]) of one game; hard constraints (rho = inf) handled in-graph.

    With ``width = 0`` and ``eps_plus -> eps_hat`` the soft formula reduces to the hard
    one, so one expression serves both without inf * 0 in the forward or backward pass.
    """
    hard = jnp.isinf(sel.rho)
    rho = jnp.where(hard, 1.0, sel.rho)
    eps_plus = jnp.where(hard, sel.eps_hat, sel.eps_plus)
    width = eps_plus - sel.eps_hat
    decay = jnp.exp(-sums / rho)
    penalty = jnp.sum(eps_plus * sums + rho * width * decay)
    eps = eps_plus - width * decay
    return penalty, eps


def dual_loss(payoffs: jax.Array, sel: SelectionInputs, duals: Duals, concept: str) -> jax.Array:
    """The convex dual loss ``L(alpha)`` of one game (DESIGN §4); a scalar.

    Args:
      payoffs: ``[N, A1..AN]`` normalised payoffs.
      sel: one game's ``SelectionInputs`` (``base_logits [A1..AN]``, ``eps_hat [N]``,
        ``eps_plus [N]``, ``rho []``).
      duals: per-player duals, non-negative.
      concept: "cce" or "ce".
    """
    lg = logits(payoffs, sel.base_logits, duals, concept)
    penalty, _ = _penalty_terms(sel, _player_sums(duals, concept))
    return jax.nn.logsumexp(lg) + penalty


class DualMetrics(NamedTuple):
    """What a dual point gives for one game (normalised units).

    Attributes:
      loss: ``L(alpha)``.
      gap: the paper's (C)CE gap, ``sum_p max(0, max_dev E_sigma[A_p(dev)])``.
      joint: ``[A1..AN]`` ``sigma(alpha)``.
    """

    loss: jax.Array
    gap: jax.Array
    joint: jax.Array


def dual_metrics(payoffs: jax.Array, sel: SelectionInputs, duals: Duals, concept: str) -> DualMetrics:
    """Loss, (C)CE gap and joint of one game at ``duals``."""
    concept = check_concept(concept)
    lg = logits(payoffs, sel.base_logits, duals, concept)
    joint = jax.nn.softmax(lg.reshape(-1)).reshape(lg.shape)
    penalty, _ = _penalty_terms(sel, _player_sums(duals, concept))
    loss = jax.nn.logsumexp(lg) + penalty
    gaps = []
    for p in range(payoffs.shape[0]):
        g = payoffs[p]
        payoff = jnp.sum(joint * g)
        if concept == "cce":
            # E_sigma[G(a', a_-p)] = <G(a', .), marginal of a_-p>
            other = joint.sum(axis=p)
            dev = jnp.tensordot(jnp.moveaxis(g, p, 0), other, axes=g.ndim - 1)  # [A_p]
            best = jnp.max(dev - payoff)
        else:
            # E[A(a', a'')] = sum_{a_-p} sigma(a'', a_-p) (G(a', a_-p) - G(a'', a_-p))
            gm = jnp.moveaxis(g, p, 0).reshape(g.shape[p], -1)  # [A_p, |A_-p|]
            jm = jnp.moveaxis(joint, p, 0).reshape(g.shape[p], -1)
            cross = gm @ jm.T  # [dev, rec]
            own = jnp.sum(gm * jm, axis=1)  # [rec]
            gain = cross - own[None, :]
            best = jnp.max(jnp.where(jnp.eye(g.shape[p], dtype=bool), -jnp.inf, gain), initial=0.0)
        gaps.append(jnp.maximum(best, 0.0))
    return DualMetrics(loss, jnp.sum(jnp.stack(gaps)), joint)


def batch_dual_loss(payoffs: jax.Array, sel: SelectionInputs, duals: Duals, concept: str) -> jax.Array:
    """``[B]`` dual losses of a batch (``payoffs [B, N, A1..AN]``, duals with a B axis)."""
    return jax.vmap(lambda g, s, d: dual_loss(g, s, d, concept))(payoffs, sel, tuple(duals))


def batch_dual_metrics(payoffs: jax.Array, sel: SelectionInputs, duals: Duals, concept: str) -> DualMetrics:
    """``DualMetrics`` with a leading batch axis."""
    return jax.vmap(lambda g, s, d: dual_metrics(g, s, d, concept))(payoffs, sel, tuple(duals))
