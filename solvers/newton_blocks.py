"""The Newton direction of two-player CE with hard constraints, by blocks (DESIGN §2).

On the two-player CE layout the row ``(p, a', a)`` touches only the joints whose
player-``p`` action is ``a`` (its own action), so with the rows ordered by (player, own
action) the joint-action term ``G = M diag(sigma) M^T`` of the Hessian
``H = G - m m^T`` is block-diagonal on each player's rows (blocks of ``<= A_p - 1``
rows), and two rows of different players share one joint. With the rows of one player
first, the Cholesky factor of ``G + lam I`` is block-diagonal there; only the other
player's rows need the dense left-looking pass (``cholesky_factor_from``), about half
the work of the whole block. The mean term enters by Sherman-Morrison on the factors:
the bordered matrix ``[[G + lam I, m], [m^T, 1]]`` is positive definite and its last
pivot is ``1 - |L^{-1} m|^2 = 1 / (1 + m^T (H + lam I)^{-1} m)``; when that pivot falls
below ``BORDER_MIN`` (lost to cancellation) the caller takes the dense Hessian instead.
The direction only steers the search: the certificate never reads it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from solvers.newton_damping import damping_lambda, damping_scale, fill_held

__all__ = ["BORDER_MIN", "ce2_layout", "ce2_scratch", "ce2_direction", "cholesky_factor_from"]

#: Smallest border pivot ``1 / (1 + m^T (H + lam I)^{-1} m)`` the block direction accepts
#: (computed as ``1 - |L^{-1} m|^2``: below it, fewer than ~7 of its digits are left).
BORDER_MIN = 1e-8

_FM = {"reassoc", "contract", "nsz", "arcp"}
_EMPTY = np.empty(0, dtype=np.int64)


# Reassociation lets the row dot products vectorise; NaN/inf semantics are kept so the
# pivot test still catches a broken factorisation.
@njit(cache=True, fastmath=_FM)
def pivot(mat, lam, row, j, lo):
    """``row[j] = sqrt(mat[j, j] + lam - row[lo:j] . row[lo:j])``; returns it, or 0.0 when the
    pivot is not positive or lost to cancellation (below ``1e-13 (|mat[j, j]| + lam)``)."""
    s = mat[j, j] + lam
    for k in range(lo, j):
        s -= row[k] * row[k]
    if not s > 1e-13 * (abs(mat[j, j]) + lam) or s <= 0.0:
        return 0.0
    d = math.sqrt(s)
    row[j] = d
    return d


@njit(cache=True, fastmath=_FM)
def cholesky_factor_from(mat, lam, low, j0):
    """Columns ``j >= j0`` of ``low low^T = mat + lam I`` given ``low[:, :j0]`` (rows
    ``>= j0``); ``j0 = 0`` is the whole factor. Lower triangle of ``low: [n, n]`` written,
    only the lower triangle of ``mat`` read; False when not positive definite.

    Left-looking, two columns ``j, j + 1`` per pass: the dot products of both over
    ``k < j`` run together for four rows at a time, so each load of a row feeds two
    products and each load of a pivot row four (benchmarks/results/solvers_suite_profile.md).
    """
    n = mat.shape[0]
    for j in range(j0, n, 2):
        rj = low[j]
        d = pivot(mat, lam, rj, j, 0)
        if d == 0.0:
            return False
        if j + 1 == n:
            break
        r1 = low[j + 1]
        s = mat[j + 1, j]
        for k in range(j):
            s -= r1[k] * rj[k]
        r1[j] = s / d
        d1 = pivot(mat, lam, r1, j + 1, 0)
        if d1 == 0.0:
            return False
        y = r1[j]
        i = j + 2
        while i + 4 <= n:
            a0 = low[i]
            a1 = low[i + 1]
            a2 = low[i + 2]
            a3 = low[i + 3]
            s0 = mat[i, j]
            s1 = mat[i + 1, j]
            s2 = mat[i + 2, j]
            s3 = mat[i + 3, j]
            t0 = mat[i, j + 1]
            t1 = mat[i + 1, j + 1]
            t2 = mat[i + 2, j + 1]
            t3 = mat[i + 3, j + 1]
            for k in range(j):
                x = rj[k]
                z = r1[k]
                s0 -= a0[k] * x
                s1 -= a1[k] * x
                s2 -= a2[k] * x
                s3 -= a3[k] * x
                t0 -= a0[k] * z
                t1 -= a1[k] * z
                t2 -= a2[k] * z
                t3 -= a3[k] * z
            s0 /= d
            s1 /= d
            s2 /= d
            s3 /= d
            a0[j] = s0
            a1[j] = s1
            a2[j] = s2
            a3[j] = s3
            a0[j + 1] = (t0 - s0 * y) / d1
            a1[j + 1] = (t1 - s1 * y) / d1
            a2[j + 1] = (t2 - s2 * y) / d1
            a3[j + 1] = (t3 - s3 * y) / d1
            i += 4
        for m in range(i, n):
            a0 = low[m]
            s0 = mat[m, j]
            t0 = mat[m, j + 1]
            for k in range(j):
                s0 -= a0[k] * rj[k]
                t0 -= a0[k] * r1[k]
            s0 /= d
            a0[j] = s0
            a0[j + 1] = (t0 - s0 * y) / d1
    return True


@njit(cache=True)
def ce2_layout(rows, player):
    """The two-player CE structure of an ELL layout, or ``ok = False`` for any other.

    ``rows: [|A|, c]``, ``player: [K]``. Returns ``(ok, sizes [2], own [K], slot [K],
    order [K], starts [A_0 + A_1 + 1])``: row ``k`` of player ``p`` touches the joints
    ``x`` with ``x_p = own[k]`` (``x = (x_0, x_1)`` row-major), one per action of the
    other player, always in ELL slot ``slot[k]``; ``order[starts[g]:starts[g + 1]]`` are
    the rows of group ``g`` (player 0's own action ``g``, then player 1's ``g - A_0``).
    """
    num = player.shape[0]
    num_joint, width = rows.shape
    sizes = np.zeros(2, dtype=np.int64)
    fail = (False, sizes, _EMPTY, _EMPTY, _EMPTY, _EMPTY)
    for k in range(num):
        if player[k] < 0 or player[k] > 1:
            return fail
        sizes[player[k]] += 1
    for p in range(2):
        a = int(round((1.0 + math.sqrt(1.0 + 4.0 * sizes[p])) / 2.0))
        if a * (a - 1) != sizes[p] or a > 62:
            return fail
        sizes[p] = a
    if sizes[0] * sizes[1] != num_joint or width != sizes[0] + sizes[1] - 2:
        return fail
    a1 = sizes[1]
    own = np.full(num, -1, dtype=np.int64)
    slot = np.full(num, -1, dtype=np.int64)
    seen = np.zeros(num, dtype=np.int64)
    for x in range(num_joint):
        for j in range(width):
            k = rows[x, j]
            if k < 0 or k >= num:
                return fail
            p = player[k]
            o = x // a1 if p == 0 else x % a1
            t = x % a1 if p == 0 else x // a1
            if own[k] < 0:
                own[k] = o
                slot[k] = j
            elif own[k] != o or slot[k] != j or (seen[k] >> t) & 1:
                return fail
            seen[k] |= 1 << t
    for k in range(num):
        if seen[k] != (1 << sizes[1 - player[k]]) - 1:
            return fail
    groups = sizes[0] + sizes[1]
    starts = np.zeros(groups + 1, dtype=np.int64)
    for k in range(num):
        starts[own[k] + player[k] * sizes[0] + 1] += 1
    for g in range(groups):
        starts[g + 1] += starts[g]
    fill = starts[:groups].copy()
    order = np.empty(num, dtype=np.int64)
    for k in range(num):
        g = own[k] + player[k] * sizes[0]
        order[fill[g]] = k
        fill[g] += 1
    return True, sizes, own, slot, order, starts


@njit(cache=True)
def ce2_scratch(num, sizes):
    """Scratch of ``ce2_direction`` for ``K = num`` rows: ``(gain [K, max A_p], vec [6, K],
    ints [4, max(K, A_0 + A_1 + 1)])``."""
    amax = max(sizes[0], sizes[1], 1)
    return np.empty((num, amax)), np.empty((6, num)), np.empty((4, max(num, sizes[0] + sizes[1] + 1)), dtype=np.int64)


@njit(cache=True, fastmath=_FM)
def _block_matrix(values, sigma, sizes, own, slot, newk, gs, nf, first, gain, w, v, ob, mat):
    """``G`` on the block order (``newk[:n]``; the first ``nf`` rows of player ``first``,
    its own action ``g``'s rows at ``gs[g]:gs[g + 1]``, then the other player's likewise):
    the diagonal blocks of the first rows, the lower triangle of the last ``n - nf``, and
    the cross block transposed into the upper right ``mat[:nf, nf:]`` (``C^T``; the rest
    of the upper triangle is not written). ``gain[i, t]``: row ``newk[i]``'s gain at the
    other player's action ``t``; scratch ``w: [>= max A_p]``, ``v: [>= n - nf]``, ``ob:
    [>= n - nf]`` int64."""
    n = mat.shape[0]
    a1 = sizes[1]
    af = sizes[first]
    ao = sizes[1 - first]
    # Joint (first's action u, other's action v) is u * su + v * sv.
    su = a1 if first == 0 else 1
    sv = 1 if first == 0 else a1
    for i in range(n):
        k = newk[i]
        p = first if i < nf else 1 - first
        o = own[k]
        sl = slot[k]
        gi = gain[i]
        if p == 0:
            for t in range(a1):
                gi[t] = values[o * a1 + t, sl]
        else:
            for t in range(sizes[0]):
                gi[t] = values[t * a1 + o, sl]
    for g in range(af):
        for t in range(ao):
            w[t] = sigma[g * su + t * sv]
        for i in range(gs[g], gs[g + 1]):
            gi = gain[i]
            row = mat[i]
            for j in range(gs[g], i + 1):
                gj = gain[j]
                s = 0.0
                for t in range(ao):
                    s += w[t] * gi[t] * gj[t]
                row[j] = s
    # C^T[j, c] = sigma(a_j, b_c) gain[j, b_c] gain[nf + c, a_j], a row of the first
    # player's group a at a time: v[c] = sigma(a, b_c) gain[nf + c, a] is shared by them.
    m2 = n - nf
    for c in range(m2):
        ob[c] = own[newk[nf + c]]
    for g in range(af):
        if gs[g] == gs[g + 1]:
            continue
        for c in range(m2):
            v[c] = sigma[g * su + ob[c] * sv] * gain[nf + c, g]
        for j in range(gs[g], gs[g + 1]):
            gj = gain[j]
            row = mat[j, nf:]
            for c in range(m2):
                row[c] = gj[ob[c]] * v[c]
    for h in range(ao):
        lo = gs[af + h]
        hi = gs[af + h + 1]
        for t in range(af):
            w[t] = sigma[t * su + h * sv]
        for i in range(lo, hi):
            gi = gain[i]
            row = mat[i]
            for j in range(nf, lo):
                row[j] = 0.0
            for j in range(lo, i + 1):
                gj = gain[j]
                s = 0.0
                for t in range(af):
                    s += w[t] * gi[t] * gj[t]
                row[j] = s


@njit(cache=True)
def _group_factor(mat, lam, low, nf, grp, inv):
    """The diagonal blocks of the first ``nf`` rows (row ``i``'s block starts at
    ``grp[i]``; at most ``A_p - 1`` rows): ``inv[:nf]`` the reciprocal pivots; False when
    one is lost (as ``pivot``). Plain scalar loops: vector ones do not pay on such blocks."""
    for i in range(nf):
        lo = grp[i]
        ri = low[i]
        for j in range(lo, i):
            rj = low[j]
            s = mat[i, j]
            for k in range(lo, j):
                s -= ri[k] * rj[k]
            ri[j] = s * inv[j]
        s = mat[i, i] + lam
        for k in range(lo, i):
            s -= ri[k] * ri[k]
        if not s > 1e-13 * (abs(mat[i, i]) + lam) or s <= 0.0:
            return False
        d = math.sqrt(s)
        ri[i] = d
        inv[i] = 1.0 / d
    return True


@njit(cache=True, fastmath=_FM)
def _block_factor(mat, lam, low, nf, grp, inv):
    """``low low^T = mat + lam I`` for ``mat`` of ``_block_matrix`` (row ``i < nf``'s block
    starts at ``grp[i]``); ``inv[:nf]`` the reciprocal pivots of the first rows. False when
    not positive definite. ``W^T = L_11^{-1} C^T`` is formed in ``low[:nf, nf:]`` (rows
    of ``W^T`` contiguous: the substitution runs over all last rows at once), then
    transposed into ``low[nf:, :nf]`` for the left-looking pass."""
    n = mat.shape[0]
    if not _group_factor(mat, lam, low, nf, grp, inv):
        return False
    for i in range(nf):
        lo = grp[i]
        ri = low[i]
        wi = ri[nf:]
        ci = mat[i, nf:]
        for c in range(n - nf):
            wi[c] = ci[c]
        for k in range(lo, i):
            x = ri[k]
            wk = low[k, nf:]
            for c in range(n - nf):
                wi[c] -= x * wk[c]
        y = inv[i]
        for c in range(n - nf):
            v = wi[c] * y
            wi[c] = v
            low[nf + c, i] = v
    return cholesky_factor_from(mat, lam, low, nf)


# No fastmath here: with reassociation LLVM vectorised these dot products differently
# when the function was compiled inline with its caller in the same process than when the
# caller linked it from Numba's on-disk cache, so a cold and a cached process disagreed in
# the last bits and solve / solve_batch stopped being bit-identical (the same 40 4x5 ME-CE
# games: two joint hashes). Without it the solve is as fast (kernel-ce 185.4 vs 186.3 us).
@njit(cache=True)
def _block_solve(low, nf, grp, inv, rhs, mean, y, lm, border_min):
    """``(L L^T - m m^T) y = rhs`` by Sherman-Morrison on the factor ``low`` (``y``
    overwritten, ``lm`` scratch; ``inv[:nf]`` the first rows' reciprocal pivots); False
    when the border pivot ``1 - |L^{-1} m|^2`` is below ``border_min``."""
    n = low.shape[0]
    for i in range(nf):
        lo = grp[i]
        ri = low[i]
        s = rhs[i]
        t = mean[i]
        for k in range(lo, i):
            s -= ri[k] * y[k]
            t -= ri[k] * lm[k]
        y[i] = s * inv[i]
        lm[i] = t * inv[i]
    for i in range(nf, n):
        ri = low[i]
        s = rhs[i]
        t = mean[i]
        for k in range(i):
            s -= ri[k] * y[k]
            t -= ri[k] * lm[k]
        d = 1.0 / ri[i]
        y[i] = s * d
        lm[i] = t * d
    ll = 0.0
    ly = 0.0
    for i in range(n):
        ll += lm[i] * lm[i]
        ly += lm[i] * y[i]
    piv = 1.0 - ll
    if not piv >= border_min:
        return False
    c = ly / piv
    for i in range(n):
        y[i] += c * lm[i]
    for k in range(n - 1, nf - 1, -1):
        rk = low[k]
        x = y[k] / rk[k]
        y[k] = x
        for i in range(k):
            y[i] -= rk[i] * x
    for k in range(nf - 1, -1, -1):
        rk = low[k]
        x = y[k] * inv[k]
        y[k] = x
        for i in range(grp[k], k):
            y[i] -= rk[i] * x
    return True


@njit(cache=True)
def ce2_direction(values, player, sigma, mean, grad, alpha, pos, layout, scratch, hess_flat, low_flat, pgn, mult,
                  damping_max, direction):
    """``newton.damped_direction`` on the block order of ``ce2_layout`` (hard constraints:
    no curvature). ``pos: [K]`` as there (``-2`` inert, ``-1`` at the bound, else free).

    Returns ``(code, mult)``: 1 with ``direction: [K]`` written, 0 when no damping up to
    ``damping_max`` gives a positive definite block (``mult`` past it), -1 when the border
    pivot is below ``BORDER_MIN`` (``mult`` as given, ``direction`` untouched: take the
    dense Hessian).
    """
    _, sizes, own, slot, order, starts = layout
    gain, vec, ints = scratch
    newk = ints[0]
    grp = ints[1]
    gs = ints[2]
    num = pos.shape[0]
    n0 = 0
    n1 = 0
    for k in range(num):
        if pos[k] >= 0:
            if player[k] == 0:
                n0 += 1
            else:
                n1 += 1
    # The player with more free rows goes first (block-diagonal): the dense pass costs
    # about n2^2 (n1 / 2 + n2 / 6) for n1 + n2 rows.
    first = 0 if n0 >= n1 else 1
    n = 0
    nf = 0
    ng = 0
    for q in range(2):
        p = first if q == 0 else 1 - first
        for g in range(p * sizes[0], p * sizes[0] + sizes[p]):
            s = n
            gs[ng] = n
            ng += 1
            for t in range(starts[g], starts[g + 1]):
                k = order[t]
                if pos[k] >= 0:
                    newk[n] = k
                    grp[n] = s
                    n += 1
        if q == 0:
            nf = n
    gs[ng] = n
    mat = hess_flat[: n * n].reshape((n, n))
    low = low_flat[: n * n].reshape((n, n))
    _block_matrix(values, sigma, sizes, own, slot, newk, gs, nf, first, gain, vec[3], vec[5], ints[3], mat)
    rhs = vec[0]
    mvec = vec[1]
    diag_max = 0.0
    for i in range(n):
        k = newk[i]
        rhs[i] = -grad[k]
        mvec[i] = mean[k]
        h = mat[i, i] - mean[k] * mean[k]
        if h > diag_max:
            diag_max = h
    scale = damping_scale(pgn)
    m = mult
    ok = False
    inv = vec[4]
    while m <= damping_max:
        if _block_factor(mat, damping_lambda(m, scale, diag_max), low, nf, grp, inv):
            ok = True
            break
        m *= 10.0
    if not ok:
        return 0, m
    sol = vec[2]
    if not _block_solve(low, nf, grp, inv, rhs[:n], mvec[:n], sol[:n], vec[3][:n], BORDER_MIN):
        return -1, mult
    fill_held(pos, alpha, direction)
    for i in range(n):
        direction[newk[i]] = sol[i]
    return 1, m
