"""Fast inference of the NES: the function of ``make_network(config).apply(..., is_training=False)``.

The Haiku network (``hybrid_nes.network``, ``hybrid_nes.layers``) is written for training
and is the reference. At inference the BatchNorm statistics are fixed, which allows:

- **BatchNorm folding.** Every BatchNorm follows a linear layer, so
  ``BN(sum_t pool_t(x) W_t + b) = sum_t pool_t(x) (W_t m) + (b - mean) m + offset`` with
  ``m = scale / sqrt(var + eps)`` per channel (``fold_params``).
- **One matmul per pooled shape.** Branches pooled to the same shape (e.g. mean and max
  over the own axis, of the player's slice and of the players-pooled tensor) are
  concatenated on the (small) channel axis and projected by the stacked weights, then
  broadcast: never a concatenation of full-size tensors.
- **Players next to the channels.** Payoff activations are ``[B, A1..AN, N, C]``: every
  pooling reduces the whole tensor once for all players (slicing a player's
  ``[B, A1..AN, C]`` would copy it), the players-pooled poolings are pooled from those
  small results, and the identity and mean-over-players branches are one matmul of
  ``[.., N C]`` by a block matrix (``_player_blocks``), so that the players-mean is never
  materialised.
- **Cache-sized chunks.** The batch runs through the network in chunks of about
  ``CHUNK_CELLS`` game cells inside one compiled loop (``lax.map``): activations of a
  chunk stay in cache and buffers are reused, where a whole 4096-game batch streams
  hundreds of MB through memory per layer.

Parameters are the same tree as the Haiku network's (same names, shapes): weights
trained with ``hybrid_nes.train`` load unchanged; only ``fold_params`` rearranges them.
``tests/test_nes_layers.py`` (random networks, 2 and 3 players, CCE and CE) and
``tests/test_nes_model.py`` (the shipped networks) check that both paths agree to
float32 tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from hybrid_nes.layers import POOLS
from hybrid_nes.loss import duals_to_flat, mask_diagonal
from hybrid_nes.network import NetworkConfig, input_features
from hybrid_nes.sampling import SelectionInputs

__all__ = ["CHUNK_CELLS", "fold_params", "make_inference", "chunk_size"]

#: Game cells (``N * |A|`` per game) per chunk of the compiled inference loop: a 32-channel
#: float32 activation of a chunk is ``32 * 4 * CHUNK_CELLS`` bytes (1 MiB), cache-sized.
CHUNK_CELLS = 8192

Folded = dict[str, Any]


def _bn_fold(params: Any, stats: Any, name: str, eps: float) -> tuple[jax.Array, jax.Array]:
    """``(m, c)`` with ``BN(y) = y * m + c`` for the BatchNorm ``name`` at inference."""
    mult = params[name]["scale"] * jax.lax.rsqrt(stats[name]["var"] + eps)
    return mult, params[name]["offset"] - stats[name]["mean"] * mult


def _stack(proj: dict, terms: Sequence[str], mult: jax.Array) -> jax.Array:
    """``[len(terms) * C_in, C_out]``: the terms' weights stacked, columns scaled by ``mult``."""
    return jnp.concatenate([proj[f"w_{t}"] for t in terms], axis=0) * mult


def _kinds(*branches: str) -> list[str]:
    """Weight names in the order the fast layers concatenate pooled tensors: for each
    branch, one per pooling kind (``mean_own, max_own, ...``)."""
    return [f"{kind}_{b}" if b else kind for b in branches for kind in POOLS]


def fold_params(config: NetworkConfig, params: Any, stats: Any) -> Folded:
    """Inference weights: BatchNorm folded in, branch weights stacked per pooled shape.

    Args:
      config: the network's ``NetworkConfig``.
      params: the Haiku parameter tree of ``make_network(config)``.
      stats: its BatchNorm state (``mean``, ``var`` per BatchNorm) for one game shape.

    Returns:
      A pytree of float32 arrays for the function ``make_inference(config)`` returns.
    """
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    stats = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), stats)
    eps = config.bn_eps
    folded: Folded = {"payoff": [], "dual": []}
    for i in range(len(config.payoff_channels)):
        proj = params[f"payoff_{i}/proj"]
        m, c = _bn_fold(params, stats, f"payoff_bn_{i}", eps)
        folded["payoff"].append({
            "id": proj["w_id"] * m,
            "p_mean": proj["w_mean_p"] * m,
            "p_max": proj["w_max_p"] * m,
            "own": _stack(proj, _kinds("own", "p_own"), m),
            "others": _stack(proj, _kinds("others", "p_others"), m),
            "all": _stack(proj, _kinds("all", "p_all"), m),
            "b": proj["b"] * m + c,
        })
    m, c = _bn_fold(params, stats, "to_duals_bn", eps)
    if config.concept == "cce":
        head = params["to_duals/cce_head"]
        folded["to_duals"] = {
            "others": _stack(head, _kinds("others", "p_others"), m),
            "all": _stack(head, _kinds("all", "p_all"), m),
            "b": head["b"] * m + c,
        }
    else:
        dev, rec = params["to_duals/dev_head"], params["to_duals/rec_head"]
        folded["to_duals"] = {
            # [4 C, 2 C_out]: the deviation head's columns, then the recommendation head's.
            "others": jnp.concatenate([_stack(h, _kinds("others", "p_others"), m) for h in (dev, rec)], axis=1),
            "all": jnp.concatenate([_stack(h, _kinds("all", "p_all"), m) for h in (dev, rec)], axis=1),
            "b": (dev["b"] + rec["b"]) * m + c,
        }
        if config.ce_pairwise:
            folded["to_duals"]["pair"] = params["to_duals/pair"]["w_corr"] * m
    names = [f"dual_{i}" for i in range(len(config.dual_layers))] + ["output"]
    for i, name in enumerate(names):
        proj = params[f"{name}/proj"]
        if name == "output":
            m, c = jnp.ones_like(proj["b"]), jnp.zeros_like(proj["b"])
        else:
            m, c = _bn_fold(params, stats, f"dual_bn_{i}", eps)
        layer = {"all": _stack(proj, _kinds("all"), m), "b": proj["b"] * m + c}
        if config.concept == "cce":
            layer.update(id=proj["w_id"] * m, own=_stack(proj, _kinds("own"), m))
        else:
            layer.update(
                # [C, 2 C_out]: identity and transpose in one matmul.
                idt=jnp.concatenate([proj["w_id"] * m, proj["w_transpose"] * m], axis=1),
                # Lines pooled over one axis, [mean_dev, max_dev, mean_rec, max_rec]: rows
                # (indexed by the deviation) and columns (by the recommendation).
                lines=jnp.concatenate([
                    _stack(proj, _kinds("dev_t", "rec"), m),
                    _stack(proj, _kinds("dev", "rec_t"), m),
                ], axis=1),
                both=_stack(proj, _kinds("both"), m),
            )
        folded["dual"].append(layer)
    return folded


def _pools(x: jax.Array, axes: Sequence[int]) -> list[jax.Array]:
    """``[mean, max]`` of ``x`` over ``axes`` (kept), in ``POOLS`` order."""
    return _repool([x, x], axes)


def _repool(pooled: Sequence[jax.Array], axes: Sequence[int]) -> list[jax.Array]:
    """Pools ``[mean-pooled, max-pooled]`` further over ``axes`` (kept), each with its own
    kind: the mean of equal-sized means is the mean, the max of maxes is the max."""
    axes = tuple(axes)
    if not axes:
        return list(pooled)
    fns = {"mean": jnp.mean, "max": jnp.max}
    return [fns[k](t, axis=axes, keepdims=True) for k, t in zip(POOLS, pooled, strict=True)]


def _cat(xs: Sequence[jax.Array]) -> jax.Array:
    return jnp.concatenate(xs, axis=-1)


def _others(lines: Sequence[Sequence[jax.Array]], p: int, axes: Sequence[int]) -> list[jax.Array]:
    """Pooled over every action axis but player p's, from ``lines[q]`` (pooled over axis q)."""
    q = next(q for q in range(len(axes)) if q != p)
    return _repool(lines[q], [a for i, a in enumerate(axes) if i not in (p, q)])


def _line_pools(x: jax.Array) -> tuple[tuple[int, ...], list, list]:
    """Poolings of ``x: [B, A1..AN, N, C]`` over one action axis each, every player at
    once (slicing ``x`` per player would copy it): ``(axes, x_lines, h_lines)`` with
    ``x_lines[q]: [B, .., 1 (axis q), .., N, C]`` (mean, max) and ``h_lines[q]`` the same
    of the players-pooled tensor, ``[.., 1, C]`` (mean of means, max of maxes)."""
    n = x.shape[-2]
    axes = tuple(range(1, n + 1))
    x_lines = [_pools(x, [a]) for a in axes]
    h_lines = [_repool(t, [-2]) for t in x_lines]
    return axes, x_lines, h_lines


def _player(pooled: Sequence[jax.Array], h_pooled: Sequence[jax.Array], p: int) -> jax.Array:
    """Player p's pooled features and the players-pooled ones, concatenated: ``[.., 4 C]``."""
    return _cat([t[..., p, :] for t in pooled] + [t[..., 0, :] for t in h_pooled])


def _payoff_layer(x: jax.Array, w: Folded) -> jax.Array:
    """``PayoffLayer`` + folded BatchNorm + ReLU: ``[B, A1..AN, N, C] -> [B, A1..AN, N, C_out]``.

    The identity and the mean-over-players branches are one matmul of ``[.., N C]`` by
    the block matrix ``w["blk"]`` (``_player_blocks``).
    """
    *cells, n, c = x.shape
    axes, x_lines, h_lines = _line_pools(x)
    full = (x.reshape(*cells, n * c) @ w["blk"]).reshape(*cells, n, -1)
    full = full + (jnp.max(x, axis=-2) @ w["p_max"] + w["b"])[..., None, :]
    x_all = _repool(x_lines[0], axes[1:])  # [B, 1.., N, C]
    h_all = _repool(h_lines[0], axes[1:])
    terms = []
    for p in range(n):
        term = (
            _player(x_lines[p], h_lines[p], p) @ w["own"]
            + _player(_others(x_lines, p, axes), _others(h_lines, p, axes), p) @ w["others"]
            + _player(x_all, h_all, p) @ w["all"]
        )
        terms.append(jnp.broadcast_to(term, full.shape[:-2] + full.shape[-1:]))
    return jax.nn.relu(full + jnp.stack(terms, axis=-2))


def _to_duals(x: jax.Array, w: Folded, concept: str) -> tuple[jax.Array, ...]:
    """``PayoffToDuals`` + folded BatchNorm + ReLU: ``[B, A1..AN, N, C]`` -> N arrays
    ``[B, A_p, C_out]`` (CCE) or ``[B, A_p, A_p, C_out]`` (CE)."""
    b, n = x.shape[0], x.shape[-2]
    axes, x_lines, h_lines = _line_pools(x)
    x_all = _repool(x_lines[0], axes[1:])
    h_all = _repool(h_lines[0], axes[1:])
    out = []
    for p in range(n):
        others = _player(_others(x_lines, p, axes), _others(h_lines, p, axes), p)
        lines = others @ w["others"] + _player(x_all, h_all, p) @ w["all"]
        lines = lines.reshape(b, x.shape[p + 1], -1)  # [B, A_p, C_out (CCE) or 2 C_out (CE)]
        if concept == "cce":
            out.append(jax.nn.relu(lines + w["b"]))
            continue
        c_out = w["b"].shape[0]
        d = lines[:, :, None, :c_out] + lines[:, None, :, c_out:] + w["b"]
        if "pair" in w:
            xp = jnp.moveaxis(x[..., p, :], p + 1, 1)  # [B, A_p, A_-p.., C]
            flat = xp.reshape(b, xp.shape[1], -1, xp.shape[-1])
            corr = jnp.einsum("bick,bjck->bijk", flat, flat) / flat.shape[2]
            d = d + corr @ w["pair"]
        out.append(jax.nn.relu(d))
    return tuple(out)


def _shared(d: Sequence[jax.Array], axes: tuple[int, ...], w: Folded) -> jax.Array:
    """Bias plus the projection of ``d`` pooled over ``axes`` of every player at once: ``[B, C_out]``."""
    count = sum(math.prod(a.shape[i] for i in axes) for a in d)
    glob = {
        "mean": sum(a.sum(axis=axes) for a in d) / count,
        "max": jnp.max(jnp.stack([a.max(axis=axes) for a in d]), axis=0),
    }
    return _cat([glob[k] for k in POOLS]) @ w["all"] + w["b"]


def _cce_dual_layer(d: Sequence[jax.Array], w: Folded) -> tuple[jax.Array, ...]:
    """``CCEDualLayer`` (+ folded BatchNorm): N arrays ``[B, A_p, C] -> [B, A_p, C_out]``, no ReLU."""
    shared = _shared(d, (1,), w)[:, None]
    return tuple(a @ w["id"] + _cat(_pools(a, [1])) @ w["own"] + shared for a in d)


def _ce_dual_layer(d: Sequence[jax.Array], w: Folded) -> tuple[jax.Array, ...]:
    """``CEDualLayer`` (+ folded BatchNorm): N arrays ``[B, A_p, A_p, C] -> [B, A_p, A_p, C_out]``, no ReLU."""
    shared = _shared(d, (1, 2), w)
    c_out = w["b"].shape[0]
    out = []
    for a in d:
        y = a @ w["idt"]
        over_dev, over_rec = _pools(a, [1]), _pools(a, [2])  # [B, 1, A, C], [B, A, 1, C]
        lines = _cat([t[:, 0] for t in over_dev] + [t[:, :, 0] for t in over_rec]) @ w["lines"]
        both = _cat([t[:, 0, 0] for t in _repool(over_dev, [2])]) @ w["both"]
        out.append(
            y[..., :c_out]
            + jnp.swapaxes(y[..., c_out:], 1, 2)
            + lines[:, :, None, :c_out]  # rows: indexed by the deviation
            + lines[:, None, :, c_out:]  # columns: indexed by the recommendation
            + (both + shared)[:, None, None]
        )
    return tuple(out)


def _network(config: NetworkConfig, w: Folded, payoffs: jax.Array, sel: SelectionInputs) -> jax.Array:
    """Flat duals ``[B, K]`` of one chunk."""
    x = jnp.moveaxis(input_features(payoffs, sel), 1, -2)  # [B, A1..AN, N, F]
    for layer in w["payoff"]:
        x = _payoff_layer(x, layer)
    d = _to_duals(x, w["to_duals"], config.concept)
    dual_layer = _cce_dual_layer if config.concept == "cce" else _ce_dual_layer
    for layer in w["dual"][:-1]:
        d = tuple(jax.nn.relu(a) for a in dual_layer(d, layer))
    duals = tuple(jax.nn.softplus(a[..., 0]) for a in dual_layer(d, w["dual"][-1]))
    if config.concept == "ce":
        duals = tuple(mask_diagonal(a) for a in duals)
    return duals_to_flat(duals, config.concept)


def _player_blocks(layer: Folded, n: int) -> Folded:
    """Adds ``blk [N C, N C_out]``: identity blocks on the diagonal plus the
    mean-over-players weights ``W_mean_p / N`` in every block."""
    blk = jnp.kron(jnp.eye(n, dtype=layer["id"].dtype), layer["id"])
    blk = blk + jnp.kron(jnp.full((n, n), 1.0 / n, layer["id"].dtype), layer["p_mean"])
    return {**layer, "blk": blk}


def chunk_size(batch: int, shape: Sequence[int], cells: int = CHUNK_CELLS) -> int:
    """Games per chunk for a batch of ``batch`` games of ``shape``: the largest power of
    two with at most ``cells`` game cells, and a divisor of ``batch`` (at least 1)."""
    per_game = len(shape) * math.prod(shape)
    chunk = 1 << max(0, (cells // per_game).bit_length() - 1)
    return math.gcd(batch, chunk)


def make_inference(config: NetworkConfig, cells: int = CHUNK_CELLS) -> Callable:
    """``infer(folded, payoffs [B, N, A1..AN], sel) -> flat duals [B, K]`` (float32, not jitted).

    ``folded`` comes from ``fold_params``; the result equals the Haiku network's output in
    inference mode (``make_network(config).apply(params, stats, None, payoffs, sel, False)``
    through ``duals_to_flat``) up to float32 rounding.
    """

    def infer(folded: Folded, payoffs: jax.Array, sel: SelectionInputs) -> jax.Array:
        b, n = payoffs.shape[:2]
        folded = {**folded, "payoff": [_player_blocks(layer, n) for layer in folded["payoff"]]}
        chunk = chunk_size(b, payoffs.shape[2:], cells)
        if chunk == b:
            return _network(config, folded, payoffs, sel)
        split = lambda t: t.reshape(b // chunk, chunk, *t.shape[1:])  # noqa: E731
        out = jax.lax.map(lambda a: _network(config, folded, *a), (split(payoffs), SelectionInputs(*map(split, sel))))
        return out.reshape(b, -1)

    return infer
