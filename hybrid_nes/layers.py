"""Equivariant Haiku layers of the Neural Equilibrium Solver (DESIGN §8, paper sec. 4.4, app. C).

Layouts (channels last, so that every projection is one matmul over the last axis):

- payoff activations ``x: [B, N, A1..AN, C]`` (the paper's ``[B, C, N, A1..AN]``);
- CCE dual activations: a tuple of N arrays ``[B, A_p, C]``;
- CE dual activations: a tuple of N arrays ``[B, A_p (dev), A_p (rec), C]``.

Every layer is ``sum_i pool_i(x) @ W_i + b``: a linear map of the channel-concatenation of
equivariant poolings (mean and max). Pool-then-project: each pooled branch is projected at
its pooled size and broadcast after the matmul, so a layer costs ``O(C_in C_out |A|)`` for
the identity branch plus ``O(C_in |A|)`` per pooling, not ``O(pools C_in C_out |A|)``.
Weights do not depend on the game's size or player count, and are shared across players
through the relation "own action axis" / "other players' axes", which is what makes the
layers equivariant to player permutations as well as to per-player action permutations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

__all__ = [
    "POOLS",
    "BatchNorm",
    "PayoffLayer",
    "PayoffToDuals",
    "CCEDualLayer",
    "CEDualLayer",
]

#: The pooling functions used everywhere (paper app. D: "both mean and max pooling").
POOLS: tuple[str, ...] = ("mean", "max")


def _pool(x: jax.Array, axes: Sequence[int], kind: str) -> jax.Array:
    axes = tuple(axes)
    if not axes:
        return x
    if kind == "mean":
        return jnp.mean(x, axis=axes, keepdims=True)
    return jnp.max(x, axis=axes, keepdims=True)


class _Projections(hk.Module):
    """Named weight matrices ``[C_in, C_out]`` sharing one variance budget.

    Each branch gets std ``scale / sqrt(C_in * num_terms)`` so that the sum of the
    branches has about unit variance for unit-variance inputs (paper app. D.1).
    """

    def __init__(self, out_channels: int, num_terms: int, scale: float = 1.0, name: str | None = None):
        super().__init__(name=name)
        self.out_channels = out_channels
        self.num_terms = num_terms
        self.scale = scale

    def __call__(self, term: str, x: jax.Array) -> jax.Array:
        c_in = x.shape[-1]
        std = self.scale / (c_in * self.num_terms) ** 0.5
        w = hk.get_parameter(
            f"w_{term}", [c_in, self.out_channels], x.dtype, init=hk.initializers.TruncatedNormal(std)
        )
        return x @ w

    def bias(self, dtype, init: float = 0.0) -> jax.Array:
        return hk.get_parameter("b", [self.out_channels], dtype, init=hk.initializers.Constant(init))


class BatchNorm(hk.Module):
    """BatchNorm over every axis but the channels, shared by a tuple of arrays.

    Training mode normalises with the batch's statistics and stores them in the state
    (``mean``, ``var``: ``[C]``); inference uses the stored ones. The stored statistics
    are those of the last batch, not a running average: after training they are
    re-estimated per game shape (``hybrid_nes.calibration.calibrate_statistics``), so that
    inference on one game equals inference on a large batch.
    """

    def __init__(self, eps: float = 1e-5, name: str | None = None):
        super().__init__(name=name)
        self.eps = eps

    def __call__(self, xs: Sequence[jax.Array], is_training: bool) -> tuple[jax.Array, ...]:
        c = xs[0].shape[-1]
        dtype = xs[0].dtype
        if is_training:
            count = sum(x.size // c for x in xs)
            mean = sum(x.reshape(-1, c).sum(0) for x in xs) / count
            var = sum(((x.reshape(-1, c) - mean) ** 2).sum(0) for x in xs) / count
            hk.set_state("mean", jax.lax.stop_gradient(mean))
            hk.set_state("var", jax.lax.stop_gradient(var))
        else:
            mean = hk.get_state("mean", [c], dtype, init=jnp.zeros)
            var = hk.get_state("var", [c], dtype, init=jnp.ones)
        scale = hk.get_parameter("scale", [c], dtype, init=jnp.ones)
        offset = hk.get_parameter("offset", [c], dtype, init=jnp.zeros)
        mult = scale * jax.lax.rsqrt(var + self.eps)
        return tuple((x - mean) * mult + offset for x in xs)


class PayoffLayer(hk.Module):
    """Payoffs -> payoffs: ``[B, N, A1..AN, C_in] -> [B, N, A1..AN, C_out]``.

    Branches for output player p (each with mean and max): own axis ``a_p``, the other
    axes ``a_-p``, all axes; the same three after pooling over players first; pooling
    over players alone; and the identity. 15 weight matrices in all.
    """

    def __init__(self, out_channels: int, name: str | None = None):
        super().__init__(name=name)
        self.out_channels = out_channels

    def __call__(self, x: jax.Array) -> jax.Array:
        n = x.shape[1]
        axes = list(range(1, n + 1))  # action axes of a player slice [B, A1..AN, C]
        proj = _Projections(self.out_channels, num_terms=1 + 7 * len(POOLS), name="proj")
        out = proj("id", x)
        shared = 0.0
        per_player = [0.0] * n
        for kind in POOLS:
            h = _pool(x, [1], kind)[:, 0]  # pooled over players: [B, A1..AN, C]
            shared = shared + proj(f"{kind}_p", h) + proj(f"{kind}_p_all", _pool(h, axes, kind))
            for p in range(n):
                xp = x[:, p]
                others = [a for a in axes if a != p + 1]
                per_player[p] = (
                    per_player[p]
                    + proj(f"{kind}_own", _pool(xp, [p + 1], kind))
                    + proj(f"{kind}_others", _pool(xp, others, kind))
                    + proj(f"{kind}_all", _pool(xp, axes, kind))
                    + proj(f"{kind}_p_own", _pool(h, [p + 1], kind))
                    + proj(f"{kind}_p_others", _pool(h, others, kind))
                )
        full_shape = x.shape[2:-1] + (self.out_channels,)
        stacked = jnp.stack([jnp.broadcast_to(t, (x.shape[0],) + full_shape) for t in per_player], axis=1)
        return out + stacked + jnp.expand_dims(shared, 1) + proj.bias(x.dtype)


class PayoffToDuals(hk.Module):
    """Payoffs -> duals: ``[B, N, A1..AN, C]`` -> N arrays ``[B, A_p, C_out]`` (CCE) or
    ``[B, A_p, A_p, C_out]`` (CE).

    A CCE head pools player p's slice over ``a_-p`` (and over everything, and the same
    after pooling over players). CE duals are the outer sum ``u(a') + v(a'')`` of two such
    heads (paper eq. 13); with ``pairwise=True`` they also get the channel-wise
    correlation ``mean_{a_-p} x_p(a', a_-p) x_p(a'', a_-p)``, an equivariant pairwise term
    that an outer sum cannot express (the gain of deviating from a'' to a' is pairwise).
    """

    def __init__(self, out_channels: int, concept: str, pairwise: bool = True, name: str | None = None):
        super().__init__(name=name)
        self.out_channels = out_channels
        self.concept = concept
        self.pairwise = pairwise

    def _head(self, x: jax.Array, p: int, proj: _Projections) -> jax.Array:
        n = x.shape[1]
        axes = list(range(1, n + 1))
        others = [a for a in axes if a != p + 1]
        out = proj.bias(x.dtype)
        xp = x[:, p]
        for kind in POOLS:
            h = _pool(x, [1], kind)[:, 0]
            for tag, src in (("", xp), ("p_", h)):
                out = out + proj(f"{kind}_{tag}others", _pool(src, others, kind))
                out = out + proj(f"{kind}_{tag}all", _pool(src, axes, kind))
        # [B, 1.., A_p, 1.., C] -> [B, A_p, C]
        return out.reshape(x.shape[0], x.shape[p + 2], self.out_channels)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        n = x.shape[1]
        # One set of weights for every player: modules are created once, outside the loop.
        heads = {
            name: _Projections(self.out_channels, num_terms=4 * len(POOLS), name=name)
            for name in (("cce_head",) if self.concept == "cce" else ("dev_head", "rec_head"))
        }
        if self.concept == "cce":
            return tuple(self._head(x, p, heads["cce_head"]) for p in range(n))
        pair = _Projections(self.out_channels, 1, name="pair")
        out = []
        for p in range(n):
            u = self._head(x, p, heads["dev_head"])
            v = self._head(x, p, heads["rec_head"])
            d = u[:, :, None, :] + v[:, None, :, :]
            if self.pairwise:
                xp = jnp.moveaxis(x[:, p], p + 1, 1)  # [B, A_p, A_-p.., C]
                flat = xp.reshape(xp.shape[0], xp.shape[1], -1, xp.shape[-1])
                corr = jnp.einsum("bick,bjck->bijk", flat, flat) / flat.shape[2]
                d = d + pair("corr", corr)
            out.append(d)
        return tuple(out)


class _DualLayer(hk.Module):
    """Constructor and the players-and-actions pooling shared by the dual layers."""

    def __init__(self, out_channels: int, out_scale: float = 1.0, out_bias: float = 0.0, name: str | None = None):
        super().__init__(name=name)
        self.out_channels = out_channels
        self.out_scale = out_scale
        self.out_bias = out_bias

    def _shared(self, proj: _Projections, d: Sequence[jax.Array], axes: tuple[int, ...]) -> jax.Array:
        """Bias plus the projections of ``d`` pooled over ``axes`` of every player at once."""
        shared = proj.bias(d[0].dtype, self.out_bias)
        for kind in POOLS:
            if kind == "mean":
                total = sum(a.sum(axis=axes, keepdims=True) for a in d)
                glob = total / sum(math.prod(a.shape[i] for i in axes) for a in d)
            else:
                glob = jnp.max(jnp.stack([a.max(axis=axes, keepdims=True) for a in d]), axis=0)
            shared = shared + proj(f"{kind}_all", glob)
        return shared


class CCEDualLayer(_DualLayer):
    """CCE duals -> CCE duals: N arrays ``[B, A_p, C_in] -> [B, A_p, C_out]``.

    Only poolings that respect independent per-player action permutations (DESIGN §8):
    the identity, the player's own action axis, and players-and-actions together.
    Pooling over players alone would mix player 0's action i with player 1's action i.
    """

    def __call__(self, d: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
        proj = _Projections(self.out_channels, 1 + 2 * len(POOLS), self.out_scale, name="proj")
        shared = self._shared(proj, d, (1,))
        return tuple(
            proj("id", a) + sum(proj(f"{k}_own", _pool(a, [1], k)) for k in POOLS) + shared
            for a in d
        )


class CEDualLayer(_DualLayer):
    """CE duals -> CE duals: N arrays ``[B, A_p, A_p, C_in] -> [B, A_p, A_p, C_out]``.

    The symmetric-equivariant basis (paper eq. 20): identity and transpose; pooling over
    the deviation or the recommendation axis, broadcast along either axis; pooling over
    both; and over players and both. The diagonal carries no constraint and is masked
    only at the output.
    """

    def __call__(self, d: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
        proj = _Projections(self.out_channels, 2 + 6 * len(POOLS), self.out_scale, name="proj")
        shared = self._shared(proj, d, (1, 2))
        out = []
        for a in d:
            t = proj("id", a) + proj("transpose", jnp.swapaxes(a, 1, 2))
            for kind in POOLS:
                over_dev = _pool(a, [1], kind)  # [B, 1, rec, C]
                over_rec = _pool(a, [2], kind)  # [B, dev, 1, C]
                t = t + proj(f"{kind}_dev", over_dev) + proj(f"{kind}_dev_t", jnp.swapaxes(over_dev, 1, 2))
                t = t + proj(f"{kind}_rec", over_rec) + proj(f"{kind}_rec_t", jnp.swapaxes(over_rec, 1, 2))
                t = t + proj(f"{kind}_both", _pool(a, [1, 2], kind))
            out.append(t + shared)
        return tuple(out)
