"""The forward of ``hybrid_nes.diff`` without an LP, one compiled Numba kernel.

For a game that the compiled single-game Newton (``solvers.newton.solve_single``, the
fast path of ``solvers.solve`` and of ``forward.forward``) certifies in its first pass,
the kernel runs what ``forward.forward`` runs when it needs no LP and no Python:

- interior (soft constraints, or hard with every joint action above
  ``forward.FACE_MASS``): ``forward._finish_kernel`` on the full support;
- hard, ``eps_hat = 0``, on a face: ``forward._guess_face`` (``face_cert``'s guess, its
  LP-free certificate, Newton on the face from Newton's duals), then ``_finish_kernel``
  of the guessed face (classification, ``-H_FF^{-1}``, the Slater check).

It writes the packed output of ``forward.forward`` bit for bit (the same kernels on the
same arrays; ``tests/test_diff_ffi.py``) and says so (``ok``). Any other game (Newton
short of ``tol``, a face that needs the covering LP or the face LPs, ``eps_hat != 0`` on a
face, a guessed face that fails its checks, non-finite input) is not ok: the caller runs
``forward.forward`` (the ``pure_callback`` path), which solves it, raises or reports.

The kernel reads its configuration from one ``plan_bytes`` array (the ``GainLayout``,
``face_cert.structure``, Newton's options and the scalars), so one compiled kernel serves
every configuration and the XLA FFI bridge (``hybrid_nes.diff.ffi``) passes it as a
constant operand.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from hybrid_nes.diff.forward import (
    _CERTIFIED,
    _NO_FACE,
    FACE_MASS,
    _eta_kernel,
    _finish_kernel,
    _guess_face,
    packed_size,
    plan,
)
from hybrid_nes.diff.linalg import CHOLESKY_MIN_PIVOT
from hybrid_nes.diff.numba_cache import key_on_sources
from hybrid_nes.diff.status import OK, Config
from solvers import face_cert
from solvers import kernels as kn
from solvers.game import CONSTANT_ULPS
from solvers.newton import OPTIMAL, solve_single

__all__ = ["HEADER", "applies", "forward_batch", "forward_np", "plan_bytes"]

#: ``solvers.game.normalise``'s constant-player threshold (as ``forward._TINY``).
_TINY = CONSTANT_ULPS * float(np.finfo(np.float64).eps)
#: int64 header words of ``plan_bytes``: N, |A|, c, K, hard, dense, input size, packed size.
HEADER = 8
#: float64 words after the header: rho, tol, degenerate_tol, face_tol, then Newton's 13
#: options of the first pass and 13 of Newton on a face.
_SCALARS = 4
_NUM_OPTS = 13


def applies(cfg: Config) -> bool:
    """Whether the kernel can serve ``cfg``: ``forward.forward`` takes the compiled
    single-game Newton there (``forward.plan(cfg).fast``)."""
    return bool(plan(cfg).fast)


@functools.lru_cache(maxsize=64)
def plan_bytes(cfg: Config) -> np.ndarray:
    """``[bytes] uint8``: the kernel's configuration as int64 words: the header, the
    float64 scalars and options, then ``rows [|A|, c]``, ``slot_player [c]``,
    ``dev [|A|, c]``, ``player [K]``, and ``face_cert.structure``'s ``touch [|A|, c]``,
    ``touch_count [K]``, ``T``, ``touched_row [T]``, ``touched_joint [T]``, then the
    float64 ``row_factor [K]``, ``col_factor [|A|]``."""
    pl = plan(cfg)
    lay, st = pl.layout, pl.structure
    num_joint, width = lay.rows.shape
    num = lay.num_constraints
    num_players = len(cfg.shape)
    header = np.array([num_players, num_joint, width, num, int(cfg.hard), int(pl.dense),
                       num_players * num_joint + num_joint + 2 * num_players, packed_size(cfg)], dtype=np.int64)
    scalars = np.concatenate([[cfg.rho, cfg.tol, cfg.degenerate_tol, cfg.face_tol], pl.first_opts, pl.face_opts])
    assert scalars.shape[0] == _SCALARS + 2 * _NUM_OPTS
    ints = [lay.rows, lay.slot_player, lay.dev, lay.player, st.touch, st.touch_count, [st.touched_row.shape[0]],
            st.touched_row, st.touched_joint]
    floats = [scalars, st.row_factor, st.col_factor]
    as_int = [np.ascontiguousarray(a, dtype=np.int64).reshape(-1) for a in ints]
    as_float = [np.ascontiguousarray(a, dtype=np.float64).reshape(-1) for a in floats]
    words = np.concatenate([header, as_float[0].view(np.int64)] + as_int + [a.view(np.int64) for a in as_float[1:]])
    out = np.ascontiguousarray(words).view(np.uint8)
    out.flags.writeable = False
    return out


@njit(cache=True)
def _forward_one(raw, base, eps_hat, eps_plus, rows, slot_player, dev, player, touch, touch_count, touched_row,
                 touched_joint, row_factor, col_factor, rho, tol, dtol, face_tol, first_opts, face_opts, hard, dense,
                 out):
    """One game: ``raw [N, |A|]`` payoffs, ``base [|A|]``, ``eps_hat, eps_plus [N]``;
    writes ``out [packed_size]`` as ``forward.forward`` and returns True where it serves
    the game (else ``out`` is unspecified)."""
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
    values = np.empty(rows.shape)
    kn.gain_values_one(flat, slot_player, dev, values)
    alpha = np.zeros(num)
    joint, _, _, stats = solve_single(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, alpha,
                                      first_opts)
    if int(stats[1]) != OPTIMAL:
        return False  # forward._first: refine_batch
    support = np.ones(num_joint, dtype=np.bool_)
    equalities = np.zeros(num, dtype=np.bool_)
    # No literal arguments below (np.bool_, np.int64): the kernels of forward.py are then
    # called with the types forward.forward calls them with, one specialisation each.
    on_face = np.bool_(hard and joint.min() < FACE_MASS)  # else forward._solve_one: interior
    eta = 0.0
    if on_face:
        for p in range(num_players):
            if eps_hat[p] != 0.0:
                return False  # the face LP
        # forward._guessed (warm), then forward._finish of the guessed face.
        eta = _eta_kernel(flat, face_tol)
        off = np.empty(num_joint, dtype=np.bool_)
        face_eq = np.empty(num, dtype=np.bool_)
        cert = np.empty(num)
        face_joint = np.empty(num_joint)
        face_alpha = np.empty(num)
        code = _guess_face(rows, values, player, base, eps_hat, eps_plus, rho, joint, alpha, touch, touched_row,
                           touched_joint, touch_count, slot_player, num_players, col_factor, FACE_MASS, eta,
                           face_cert.SAFETY, face_cert.ROUNDING, np.bool_(True), face_opts, off, face_eq, cert,
                           face_joint, face_alpha)
        if code == _CERTIFIED:
            support, equalities, joint, alpha = off, face_eq, face_joint, face_alpha
        elif code != _NO_FACE:
            return False  # the covering LP, or the LPs after Newton on the face fell short
    return _finish_kernel(rows, values, player, base, eps_hat, eps_plus, rho, joint, alpha, support, equalities,
                          on_face, on_face, np.int64(OK), dense, dtol, max(1e3 * tol, 1e-8), CHOLESKY_MIN_PIVOT,
                          touched_row, touched_joint, row_factor, eta, face_cert.SAFETY, face_cert.ROUNDING,
                          face_cert.TAU_FRACTIONS, face_cert.TAU_MULTIPLES, out)


@njit(cache=True)
def forward_batch(words, inputs, out, ok):
    """Every game of ``inputs [B, input size]`` (``forward.forward``'s packed inputs) into
    ``out [B, packed_size]``, ``ok [B]`` (int32) 1 where the kernel serves the game
    (``out[b]`` unspecified where 0: the caller runs the callback on those games).

    ``words``: ``plan_bytes`` viewed as int64 (the floats bit-cast back to float64)."""
    num_players, num_joint, width, num = words[0], words[1], words[2], words[3]
    hard, dense = words[4] != 0, words[5] != 0
    fl = words[HEADER:HEADER + _SCALARS + 2 * _NUM_OPTS].view(np.float64)
    rho, tol, dtol, face_tol = fl[0], fl[1], fl[2], fl[3]
    first_opts = fl[_SCALARS:_SCALARS + _NUM_OPTS].copy()
    face_opts = fl[_SCALARS + _NUM_OPTS:].copy()
    at = HEADER + _SCALARS + 2 * _NUM_OPTS
    rows = words[at:at + num_joint * width].reshape((num_joint, width))
    at += num_joint * width
    slot_player = words[at:at + width]
    at += width
    dev = words[at:at + num_joint * width].reshape((num_joint, width))
    at += num_joint * width
    player = words[at:at + num]
    at += num
    touch = words[at:at + num_joint * width].reshape((num_joint, width)) != 0
    at += num_joint * width
    touch_count = words[at:at + num]
    at += num
    num_touched = words[at]
    touched_row = words[at + 1:at + 1 + num_touched]
    touched_joint = words[at + 1 + num_touched:at + 1 + num_touched + num_touched]
    at += 1 + 2 * num_touched
    row_factor = words[at:at + num].view(np.float64)
    col_factor = words[at + num:at + num + num_joint].view(np.float64)
    cut = num_players * num_joint
    for b in range(inputs.shape[0]):
        raw = inputs[b, :cut].reshape((num_players, num_joint))
        base = inputs[b, cut:cut + num_joint]
        eps_hat = inputs[b, cut + num_joint:cut + num_joint + num_players]
        eps_plus = inputs[b, cut + num_joint + num_players:cut + num_joint + 2 * num_players]
        served = _forward_one(raw, base, eps_hat, eps_plus, rows, slot_player, dev, player, touch, touch_count,
                              touched_row, touched_joint, row_factor, col_factor, rho, tol, dtol, face_tol,
                              first_opts, face_opts, hard, dense, out[b])
        ok[b] = 1 if served else 0


def forward_np(cfg: Config, inputs) -> tuple[np.ndarray, np.ndarray]:
    """``(packed [..., packed_size] float64, served [...] bool)`` of ``inputs [..., input
    size]`` (as ``forward.forward``; NumPy, for tests and the FFI's probe)."""
    inputs = np.asarray(inputs, dtype=np.float64)
    batch_shape = inputs.shape[:-1]
    flat = np.ascontiguousarray(inputs.reshape(-1, inputs.shape[-1]))
    out = np.zeros((flat.shape[0], packed_size(cfg)))
    ok = np.zeros(flat.shape[0], dtype=np.int32)
    # A writable copy: the FFI handler's words are writable (one specialisation).
    forward_batch(plan_bytes(cfg).view(np.int64).copy(), flat, out, ok)
    return out.reshape(batch_shape + (out.shape[1],)), (ok != 0).reshape(batch_shape)


key_on_sources(globals())  # numba_cache: cached kernels follow every source they compile in
