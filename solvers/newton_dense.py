"""Kernels of projected Newton on the identity (CCE) gain layout, on the transposed gains.

On the identity layout (``kernels.rows_are_identity``) every joint action carries a gain
for every constraint, so Newton keeps the gains twice: ``values: [|A|, K]`` (expected
gains, summed in the certificate's order) and ``vt: [K, |A|]`` (logits, Hessian), whose
rows are contiguous over joints and vectorise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["hessian_vt_one", "structural_zero_rows_vt"]


@njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _dot(x, y):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * y[i]
    return acc


# The Hessian only steers the search direction (the certificate never reads it):
# reassociation and contraction are safe there and let the loops vectorise.
@njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def hessian_vt_one(vt, player, sigma, mean, curv, pos, hess, wcols, keep):
    """The free block ``hess: [n, n]`` of the dual Hessian (``kernels.hessian_one``) on the
    identity layout, from the transposed gains ``vt: [K, |A|]``: contiguous dot products
    over joints, which vectorise. ``pos: [K]`` is each row's place in the block (-1: not
    in it); ``wcols: [>= n, |A|]``, ``keep: [>= n]`` int64 are scratch."""
    n = hess.shape[0]
    num_joint = vt.shape[1]
    for k in range(pos.shape[0]):
        if pos[k] >= 0:
            keep[pos[k]] = k
    for i in range(n):
        row = vt[keep[i]]
        for a in range(num_joint):
            wcols[i, a] = sigma[a] * row[a]
    for i1 in range(n):
        k1 = keep[i1]
        mk1 = mean[k1]
        p1 = player[k1]
        for i2 in range(i1 + 1):
            k2 = keep[i2]
            h = _dot(wcols[i1], vt[k2]) - mk1 * mean[k2]
            if p1 == player[k2]:
                h += curv[p1]
            hess[i1, i2] = h
            hess[i2, i1] = h


@njit(cache=True)
def structural_zero_rows_vt(vt, base, out):
    """``kernels.structural_zero_rows_one`` from ``vt: [K, |A|]``: ``out[k]`` True when row
    k has no non-zero gain on the support ``base > -inf`` (a branch-free pass per row)."""
    num_joint = vt.shape[1]
    for k in range(vt.shape[0]):
        nonzero = 0
        for a in range(num_joint):
            nonzero += (vt[k, a] != 0.0) & (base[a] != -np.inf)
        out[k] = nonzero == 0
