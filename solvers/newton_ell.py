"""Kernels of projected Newton on the ELL (CE) gain layout (``solvers.gains``).

On the CE layout a joint action ``x`` carries the gains of the ``c = sum_p (A_p - 1)``
rows ``(p, a', x_p)``, so the Hessian's joint-action term couples few pairs of rows, and
Newton, which reads one triangle of its free block (``newton.cholesky_solve``), builds
only that triangle (``hessian_lower_one``; ``kernels.hessian_one`` is the full block).
"""

from __future__ import annotations

from numba import njit

__all__ = ["joint_products_lower", "hessian_lower_one"]


# The Hessian only steers the search direction (the certificate never reads it):
# reassociation and contraction are safe there and let the loops vectorise.
@njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def joint_products_lower(rows, values, sigma, pos, hess, loc, val):
    """``hess[i, j] = sum_a sigma(a) m_a[i] m_a[j]`` for ``j <= i`` (lower triangle only),
    accumulated from the ELL columns over each joint's rows in the block (``pos[k] >= 0``):
    ``|A| c^2 / 2`` work at most. ``hess: [n, n]``; scratch ``loc: [>= c]`` int64, ``val: [>= c]``."""
    n = hess.shape[0]
    for i in range(n):
        row = hess[i]
        for j in range(i + 1):
            row[j] = 0.0
    num_joint, width = rows.shape
    for a in range(num_joint):
        s = sigma[a]
        if s == 0.0:
            continue
        ra = rows[a]
        va = values[a]
        m = 0
        for j in range(width):
            i = pos[ra[j]]
            v = va[j]
            if i >= 0 and v != 0.0:
                loc[m] = i
                val[m] = v
                m += 1
        # Each unordered pair once, into the lower triangle (the layouts of
        # ``solvers.gains`` list a joint's rows in increasing order: the first branch).
        for j1 in range(m):
            i1 = loc[j1]
            v1 = s * val[j1]
            row = hess[i1]
            for j2 in range(j1 + 1):
                i2 = loc[j2]
                if i2 <= i1:
                    row[i2] += v1 * val[j2]
                else:
                    hess[i2, i1] += v1 * val[j2]


@njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def hessian_lower_one(rows, values, player, sigma, mean, curv, pos, hess, keep, loc, val):
    """``hessian_one``'s lower triangle (and diagonal) only: what ``newton.cholesky_solve``
    reads. The rank-one mean term runs on the block's gathered means (contiguous rows,
    vectorised) and the curvature on each player's diagonal sub-block (the block keeps
    the rows in order, so a player's rows are contiguous). ``hess: [n, n]`` (upper
    triangle left as it was); scratch ``keep: [>= n]`` int64, ``loc: [>= c]`` int64,
    ``val: [>= max(n, c)]``.
    """
    n = hess.shape[0]
    joint_products_lower(rows, values, sigma, pos, hess, loc, val)
    for k in range(pos.shape[0]):
        if pos[k] >= 0:
            keep[pos[k]] = k
    for i in range(n):
        val[i] = mean[keep[i]]
    for i1 in range(n):
        row = hess[i1]
        mk1 = val[i1]
        for i2 in range(i1 + 1):
            row[i2] -= mk1 * val[i2]
    start = 0
    for i1 in range(n):
        p1 = player[keep[i1]]
        if i1 > 0 and player[keep[i1 - 1]] != p1:
            start = i1
        c = curv[p1]
        if c != 0.0:
            row = hess[i1]
            for i2 in range(start, i1 + 1):
                row[i2] += c
