"""Scratch buffers of projected Newton (``solvers.newton.newton_core``), allocated once per
game (a single solve) or per chunk of games (the batched drivers)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["newton_workspace"]


@njit(cache=True)
def newton_workspace(num, num_joint, num_players, block, dense):
    """Scratch of ``newton_core`` for games of ``K = num`` duals (allocated once per thread).

    The dense Hessian and Cholesky buffers are flat (``[block * block]``, ``block = K``
    unless ``max_block`` limits it, then 0 and grown on demand) so that an ``[n, n]`` free
    block is a contiguous view; ``wcols: [block, |A|]`` and the transposed gains
    ``[K, |A|]`` on the identity (CCE) layout.
    """
    # Carved out of one float and one int allocation (views; 64-byte aligned parts): a
    # single solve allocates a workspace per game.
    cols = block if dense else 0
    vt_rows = num if dense else 0
    q = 8
    jn = (num_joint + q - 1) // q * q
    kn_ = (num + q - 1) // q * q
    pn = (num_players + q - 1) // q * q
    bb = (block * block + q - 1) // q * q
    total = 4 * jn + 8 * kn_ + 6 * pn + 2 * bb + (cols + vt_rows) * num_joint + q
    buf = np.empty(total)
    o = 0
    parts = []
    for m in (jn, jn, jn, jn, kn_, kn_, kn_, kn_, kn_, kn_, kn_):
        parts.append(buf[o:o + m])
        o += m
    vecs = (parts[0][:num_joint], parts[1][:num_joint], parts[2][:num_joint], parts[3][:num_joint], parts[4][:num],
            parts[5][:num], parts[6][:num], parts[7][:num], parts[8][:num], parts[9][:num], parts[10][:num])
    small = (buf[o:o + num_players], buf[o + pn:o + pn + num_players], buf[o + 2 * pn:o + 2 * pn + num_players],
             buf[o + 3 * pn:o + 3 * pn + num_players], buf[o + 4 * pn:o + 4 * pn + num_players],
             buf[o + 5 * pn:o + 5 * pn + num_players])
    o += 6 * pn
    val = buf[o:o + num]
    o += kn_
    hess = buf[o:o + block * block]
    o += bb
    low = buf[o:o + block * block]
    o += bb
    wcols = buf[o:o + cols * num_joint].reshape((cols, num_joint))
    o += cols * num_joint
    vt = buf[o:o + vt_rows * num_joint].reshape((vt_rows, num_joint))
    ints_buf = np.empty(4 * kn_, dtype=np.int64)
    ints = (ints_buf[:num], ints_buf[kn_:kn_ + num], ints_buf[2 * kn_:2 * kn_ + num], ints_buf[3 * kn_:3 * kn_ + num])
    mats = (hess, low, buf[:0].reshape((0, num_joint)), wcols, vt)
    return vecs, small, ints, np.empty(num, dtype=np.bool_), val, mats
