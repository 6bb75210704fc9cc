"""The forward of ``hybrid_nes.diff`` for interior games, one compiled Numba kernel.

For a game that the compiled single-game Newton (``solvers.newton.solve_single``, the
fast path of ``solvers.solve`` and of ``forward.forward``) certifies in its first pass,
with hard constraints every joint action above ``forward.FACE_MASS`` (no face), the duals
reproducing the joint and every row either active (dual above ``degenerate_tol``) or
slack (no degenerate row), this kernel writes exactly what ``forward.forward`` writes into
the packed output (joint, duals, free rows, full support, and up to
``forward.DENSE_ADJOINT_MAX`` duals ``-H_FF^{-1}`` by Cholesky) and says so (``ok``).

Any other game (a face, Newton short of ``tol``, a degenerate row, a singular ``H_FF``,
non-finite input) is not ok: the caller runs ``forward.forward`` (the ``pure_callback``
path), which classifies it, raises or reports its status. The kernel shares every
numerical step with ``forward.forward`` (the same Numba building blocks in the same
order), so the packed outputs agree (``tests/test_diff_ffi.py``).

The kernel reads its configuration from one ``plan_bytes`` array (the ``GainLayout``,
Newton's options and the scalars), so one compiled kernel serves every configuration and
the XLA FFI bridge (``hybrid_nes.diff.ffi``) passes it as a constant operand.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from hybrid_nes.diff.forward import DENSE_ADJOINT_MAX, FACE_MASS, packed_size, plan
from hybrid_nes.diff.linalg import CHOLESKY_MIN_PIVOT, _inverse_kernel
from hybrid_nes.diff.status import OK, Config
from solvers import kernels as kn
from solvers.game import CONSTANT_ULPS
from solvers.newton import OPTIMAL, solve_single

__all__ = ["HEADER", "applies", "interior_batch", "interior_np", "plan_bytes"]

#: ``solvers.game.normalise``'s constant-player threshold (as ``forward._TINY``).
_TINY = CONSTANT_ULPS * float(np.finfo(np.float64).eps)
#: int64 header words of ``plan_bytes``: N, |A|, c, K, hard, dense, input size, packed size.
HEADER = 8
#: float64 words after the header: rho, tol, degenerate_tol, then Newton's 13 options.
_SCALARS = 3
_NUM_OPTS = 13


def applies(cfg: Config) -> bool:
    """Whether the kernel can serve ``cfg``: ``forward.forward`` takes the compiled
    single-game Newton there (``forward.plan(cfg).fast``)."""
    return bool(plan(cfg).fast)


@functools.lru_cache(maxsize=64)
def plan_bytes(cfg: Config) -> np.ndarray:
    """``[bytes] uint8``: the kernel's configuration (header, scalars, options, then the
    int64 ``rows [|A|, c]``, ``slot_player [c]``, ``dev [|A|, c]``, ``player [K]``)."""
    pl = plan(cfg)
    lay = pl.layout
    num_joint, width = lay.rows.shape
    num = lay.num_constraints
    num_players = len(cfg.shape)
    dense = num <= DENSE_ADJOINT_MAX
    header = np.array([num_players, num_joint, width, num, int(cfg.hard), int(dense),
                       num_players * num_joint + num_joint + 2 * num_players, packed_size(cfg)], dtype=np.int64)
    scalars = np.concatenate([[cfg.rho, cfg.tol, cfg.degenerate_tol], pl.first_opts]).astype(np.float64)
    assert scalars.shape[0] == _SCALARS + _NUM_OPTS
    ints = [np.ascontiguousarray(a, dtype=np.int64).reshape(-1) for a in (lay.rows, lay.slot_player, lay.dev,
                                                                          lay.player)]
    words = np.concatenate([header.view(np.uint8), scalars.view(np.uint8)] + [a.view(np.uint8) for a in ints])
    out = np.ascontiguousarray(words)
    out.flags.writeable = False
    return out


@njit(cache=True)
def _free_hessian(rows, values, player, rho, sigma, mean, alpha, eps_hat, eps_plus, free, num_free):
    """``linalg.free_hessian`` from the gain values and expected gains already at hand."""
    num = player.shape[0]
    ssum = np.empty(eps_hat.shape[0])
    kn.player_sums_one(alpha, player, ssum)
    curv = np.empty(eps_hat.shape[0])
    kn.curvature_one(ssum, eps_hat, eps_plus, rho, curv)
    pos = np.full(num, -1, dtype=np.int64)
    i = 0
    for k in range(num):
        if free[k]:
            pos[k] = i
            i += 1
    hess = np.empty((num_free, num_free))
    width = rows.shape[1]
    kn.hessian_one(rows, values, player, sigma, mean, curv, pos, hess, np.empty(max(num_free, 1), dtype=np.int64),
                   np.empty(width, dtype=np.int64), np.empty(width))
    return hess


@njit(cache=True)
def _interior_one(raw, base, eps_hat, eps_plus, rows, slot_player, dev, player, rho, tol, dtol, opts, hard, dense,
                  out):
    """One game: ``raw [N, |A|]`` payoffs, ``base [|A|]``, ``eps_hat, eps_plus [N]``;
    writes ``out [packed_size]`` and returns True where the game is interior (else
    ``out`` is unspecified)."""
    num_players, num_joint = raw.shape
    num = player.shape[0]
    for p in range(num_players):
        for a in range(num_joint):
            if not math.isfinite(raw[p, a]):
                return False
        if not math.isfinite(eps_hat[p]):  # eps_plus is inf for hard constraints
            return False
    for a in range(num_joint):
        if not math.isfinite(base[a]):
            return False
    flat, scale, _ = kn.normalise_one(raw, _TINY)
    for p in range(num_players):
        if not math.isfinite(scale[p]):
            return False
    alpha = np.zeros(num)
    joint, _, _, stats = solve_single(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, alpha, opts)
    if int(stats[1]) != OPTIMAL:
        return False
    if hard and joint.min() < FACE_MASS:
        return False
    values = np.empty(rows.shape)
    kn.gain_values_one(flat, slot_player, dev, values)
    # The duals must reproduce the joint (forward._finish).
    lg = np.empty(num_joint)
    kn.logits_one(rows, values, base, alpha, lg)
    recomputed = np.empty(num_joint)
    kn.softmax_one(lg, recomputed)
    worst = 0.0
    for a in range(num_joint):
        worst = max(worst, abs(recomputed[a] - joint[a]))
    if worst > max(1e3 * tol, 1e-8):
        return False
    eps_now = np.empty(num_players)
    if hard:
        eps_now[:] = eps_hat
    else:
        s = np.zeros(num_players)
        for k in range(num):
            s[player[k]] += alpha[k]
        for p in range(num_players):
            eps_now[p] = eps_plus[p] - (eps_plus[p] - eps_hat[p]) * np.exp(-s[p] / rho)
    expected = np.empty(num)
    kn.expected_gains_one(rows, values, joint, expected)
    free = np.zeros(num, dtype=np.bool_)
    num_free = 0
    for k in range(num):
        if alpha[k] > dtol:
            free[k] = True
            num_free += 1
        elif not eps_now[player[k]] - expected[k] > dtol:
            return False  # DEGENERATE_ACTIVE_SET: the callback reports it
    start = 2 * num_joint + 2 * num
    if dense and num_free > 0:
        hess = _free_hessian(rows, values, player, rho, joint, expected, alpha, eps_hat, eps_plus, free, num_free)
        inv = np.empty((num_free, num_free))
        if not _inverse_kernel(hess, CHOLESKY_MIN_PIVOT, inv):
            return False  # singular H_FF: the callback path leaves it to the implicit step
    out[:] = 0.0
    out[:num_joint] = joint
    out[num_joint:num_joint + num] = alpha
    for k in range(num):
        out[num_joint + num + k] = 1.0 if free[k] else 0.0
    out[num_joint + 2 * num:start] = 1.0  # support
    if dense:
        out[start] = 1.0
        if num_free > 0:
            idx = np.flatnonzero(free)
            adj = start + 1
            for i in range(num_free):
                for j in range(num_free):
                    out[adj + idx[i] * num + idx[j]] = -inv[i, j]
    out[out.shape[0] - 1] = OK
    return True


@njit(cache=True)
def interior_batch(words, inputs, out, ok):
    """Every game of ``inputs [B, input size]`` (``forward.forward``'s packed inputs) into
    ``out [B, packed_size]``, ``ok [B]`` (int32) 1 where the game is interior (``out[b]``
    unspecified where 0: the caller runs the callback on those games).

    ``words``: ``plan_bytes`` viewed as int64 (the scalars bit-cast back to float64)."""
    num_players, num_joint, width, num = words[0], words[1], words[2], words[3]
    hard, dense = words[4] != 0, words[5] != 0
    fl = words[HEADER:HEADER + _SCALARS + _NUM_OPTS].view(np.float64)
    rho, tol, dtol = fl[0], fl[1], fl[2]
    opts = fl[_SCALARS:].copy()
    at = HEADER + _SCALARS + _NUM_OPTS
    rows = words[at:at + num_joint * width].reshape((num_joint, width))
    at += num_joint * width
    slot_player = words[at:at + width]
    at += width
    dev = words[at:at + num_joint * width].reshape((num_joint, width))
    at += num_joint * width
    player = words[at:at + num]
    cut = num_players * num_joint
    for b in range(inputs.shape[0]):
        raw = inputs[b, :cut].reshape((num_players, num_joint))
        base = inputs[b, cut:cut + num_joint]
        eps_hat = inputs[b, cut + num_joint:cut + num_joint + num_players]
        eps_plus = inputs[b, cut + num_joint + num_players:cut + num_joint + 2 * num_players]
        served = _interior_one(raw, base, eps_hat, eps_plus, rows, slot_player, dev, player, rho, tol, dtol, opts,
                               hard, dense, out[b])
        ok[b] = 1 if served else 0


def interior_np(cfg: Config, inputs) -> tuple[np.ndarray, np.ndarray]:
    """``(packed [..., packed_size] float64, interior [...] bool)`` of ``inputs [..., input
    size]`` (as ``forward.forward``; NumPy, for tests and the FFI's probe)."""
    inputs = np.asarray(inputs, dtype=np.float64)
    batch_shape = inputs.shape[:-1]
    flat = np.ascontiguousarray(inputs.reshape(-1, inputs.shape[-1]))
    out = np.zeros((flat.shape[0], packed_size(cfg)))
    ok = np.zeros(flat.shape[0], dtype=np.int32)
    interior_batch(plan_bytes(cfg).view(np.int64), flat, out, ok)
    return out.reshape(batch_shape + (out.shape[1],)), (ok != 0).reshape(batch_shape)
