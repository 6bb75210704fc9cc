"""Projected Newton fused into one kernel on the identity (CCE) gain layout.

``newton.solve_into`` on a game whose layout is the identity (``kernels.rows_are_identity``:
every joint action carries a gain for every constraint) with no sign-free rows and the
``[K, K]`` buffers up front (``max_block`` 0 or ``>= K``), as one function: the gains, both
layouts of them, Newton (``newton.newton_core``'s dense branch) and the certificate. The
per-point kernels of ``newton_step`` (logits, shifted exponentials, softmax, expected
gains, player sums, measures) are written out in the loop body, in the same operations and
the same order, so every result is ``solve_into``'s bit for bit (``tests/test_newton_identity.py``);
what they cost there was mostly calls and the reference counts of the arrays passed
(benchmarks/results/solvers_suite_overhead.md, section h-single2). The per-point kernels
(penalty, curvature, duality gap, measures, player sums and gaps, shifted exponentials,
projected step) are the shared ones compiled inline from their source; the Hessian and
the damped Cholesky solve (`newton.damped_direction`, shared with `newton_core`) are called.

The scratch is one float64 array of ``scratch_size(K, |A|, N)`` entries (its integer and
boolean parts are views of it, each part on a 64-byte boundary): one allocation per single
solve, one per chunk of games in a batch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from solvers import kernels as kn
from solvers.newton import MAX_ITER, RELAX, STALLED, damped_direction, stop_status
from solvers.newton_dense import hessian_vt_one
from solvers.newton_step import projected_step_one, shifted_exps_one

__all__ = ["fits", "scratch_size", "solve_identity"]

_Q = 8  # parts start on 64-byte boundaries of the buffer


@njit(cache=True)
def _up(m):
    return (m + _Q - 1) // _Q * _Q


@njit(cache=True)
def scratch_size(num, num_joint, num_players):
    """Float64 entries of ``solve_identity``'s scratch for ``K = num`` duals."""
    return (_Q + 3 * _up(num * num_joint) + 4 * _up(num_joint) + 7 * _up(num) + 6 * _up(num_players)
            + 2 * _up(num * num) + 5 * _up(num))


@njit(cache=True)
def fits(rows, num, opts):
    """True when ``solve_identity`` applies: the identity layout, ``[K, K]`` buffers up front."""
    max_block = int(opts[12])
    return kn.rows_are_identity(rows, num) and not (0 < max_block < num)


@njit(cache=True)
def solve_identity(slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, alpha, opts, scratch, joint, gaps,
                   epsp, stats, start_lse):
    """``newton.solve_into`` on the identity layout (``fits``), bit for bit: gains of
    ``flat: [N, |A|]``, projected Newton from ``alpha: [K]`` (overwritten) and the
    certificate into ``joint [|A|], gaps, epsp [N], stats [6]`` (iterations, status,
    violation, kkt, duality gap, loss); ``scratch: [>= scratch_size(K, |A|, N)]``.

    ``start_lse``: NaN, or ``kernels.softmax_one(base, joint)``'s value with ``joint``
    holding that softmax on entry (the game-independent start of ``alpha = 0``, whose
    logits are ``base`` exactly: a plan computes it once); used only when ``alpha`` is 0."""
    num_joint, num = dev.shape
    num_players = eps_hat.shape[0]
    tol = opts[0]
    max_iter = int(opts[1])
    armijo, backtrack, min_step, damping, damping_min, damping_max = opts[2], opts[3], opts[4], opts[5], opts[6], opts[7]
    active_eps, alpha_cap, expand, max_expand = opts[8], opts[9], opts[10], opts[11]
    # Scratch parts, from the buffer's first 64-byte boundary.
    o = (_Q - scratch.ctypes.data // 8 % _Q) % _Q
    size = num * num_joint
    values = scratch[o:o + size].reshape((num_joint, num))
    o += _up(size)
    vt = scratch[o:o + size].reshape((num, num_joint))
    o += _up(size)
    wcols = scratch[o:o + size].reshape((num, num_joint))
    o += _up(size)
    lg = scratch[o:o + num_joint]
    o += _up(num_joint)
    lgp = scratch[o:o + num_joint]
    o += _up(num_joint)
    ex = scratch[o:o + num_joint]
    o += _up(num_joint)
    exp_ = scratch[o:o + num_joint]
    o += _up(num_joint)
    mean = scratch[o:o + num]
    o += _up(num)
    grad = scratch[o:o + num]
    o += _up(num)
    rhs = scratch[o:o + num]
    o += _up(num)
    sol = scratch[o:o + num]
    o += _up(num)
    direction = scratch[o:o + num]
    o += _up(num)
    trial = scratch[o:o + num]
    o += _up(num)
    probe = scratch[o:o + num]
    o += _up(num)
    ssum = scratch[o:o + num_players]
    o += _up(num_players)
    eps = scratch[o:o + num_players]
    o += _up(num_players)
    gws = scratch[o:o + num_players]
    o += _up(num_players)
    curv = scratch[o:o + num_players]
    o += _up(num_players)
    tss = scratch[o:o + num_players]
    o += _up(num_players)
    teps = scratch[o:o + num_players]
    o += _up(num_players)
    hess_flat = scratch[o:o + num * num]
    o += _up(num * num)
    low_flat = scratch[o:o + num * num]
    o += _up(num * num)
    ints = scratch[o:o + 4 * _up(num)].view(np.int64)
    pos = ints[:num]
    idx = ints[_up(num):_up(num) + num]
    keep = ints[2 * _up(num):2 * _up(num) + num]
    zero_row = ints[3 * _up(num):3 * _up(num) + num]
    free = scratch[o + 4 * _up(num):o + 5 * _up(num)].view(np.bool_)[:num]
    free[:] = False

    # Gains (kernels.gain_values_one) in both layouts; structural zero rows from vt.
    for a in range(num_joint):
        for j in range(num):
            p = slot_player[j]
            v = flat[p, dev[a, j]] - flat[p, a]
            values[a, j] = v
            vt[j, a] = v
    for k in range(num):
        nonzero = 0
        for a in range(num_joint):
            nonzero += (vt[k, a] != 0.0) & (base[a] != -np.inf)
        zero_row[k] = nonzero == 0
    cold = True
    for k in range(num):
        if alpha[k] < 0.0:
            alpha[k] = 0.0
        cold = cold and alpha[k] == 0.0
    # Logits, softmax, gains, gradient at the start (newton_step.evaluate_at).
    if cold and start_lse == start_lse:
        lse = start_lse  # joint holds softmax(base); the logits base - 0 v are base, bit for bit
    else:
        lg[:] = base
        for j in range(num):
            aj = alpha[j]
            for a in range(num_joint):
                lg[a] -= aj * vt[j, a]
        top, acc = _shifted_exps(lg, ex)
        if top == -np.inf:
            joint[:] = 0.0
            lse = top
        else:
            for a in range(num_joint):
                joint[a] = ex[a] / acc
            lse = top + math.log(acc)
    loss = lse + _gradient_tail(values, player, eps_hat, eps_plus, rho, alpha, joint, mean, ssum, eps, grad)
    mult = damping
    last_pgn = np.inf
    prev_pgn = np.inf
    status = MAX_ITER
    it = 0
    viol = 0.0
    kkt = 0.0
    dgap = 0.0
    while True:
        _player_gaps(mean, player, gws)
        viol, kkt = _measures(alpha, grad, free)
        dgap = _dgap(alpha, grad, ssum, eps, gws, eps_hat, eps_plus, rho, free)
        status = _stop_status(viol, kkt, dgap, tol, it, max_iter, alpha, alpha_cap, loss)
        if status >= 0:
            break
        it += 1
        pgn = 0.0
        for k in range(num):
            step = alpha[k] - grad[k]
            if step < 0.0:
                step = 0.0
            r = abs(alpha[k] - step)
            if r > pgn:
                pgn = r
        w = min(active_eps, pgn)
        prev_pgn = last_pgn
        last_pgn = pgn
        n = 0
        for k in range(num):
            if zero_row[k] and grad[k] == 0.0:
                pos[k] = -2
            elif alpha[k] <= w and grad[k] > 0.0:
                pos[k] = -1
            else:
                pos[k] = n
                idx[n] = k
                n += 1
        _curvature(ssum, eps_hat, eps_plus, rho, curv)
        hess = hess_flat[: n * n].reshape((n, n))
        low = low_flat[: n * n].reshape((n, n))
        hessian_vt_one(vt, player, joint, mean, curv, pos, hess, wcols, keep)
        diag_max = 0.0
        for i in range(n):
            rhs[i] = -grad[idx[i]]
            if hess[i, i] > diag_max:
                diag_max = hess[i, i]
        ok, mult = damped_direction(hess, rhs, low, sol, pos, alpha, direction, pgn, diag_max, mult, damping_max)
        if not ok:
            status = STALLED
            break
        slack = 1e-15 * (1.0 + abs(loss))
        t = 1.0
        accepted = False
        acc = 0.0
        best = loss
        lt = loss
        while t >= min_step:
            dec = _step(alpha, direction, t, free, grad, trial)
            lt, acc = _loss(vt, player, base, eps_hat, eps_plus, rho, trial, lg, ex, tss, teps)
            if lt <= loss + armijo * dec + slack:
                best = lt
                accepted = True
                break
            t *= backtrack
        if not accepted:
            mult *= 100.0
            if mult > damping_max:
                status = STALLED
                break
            continue
        if t == 1.0 and expand > 1.0 and pgn > 0.25 * prev_pgn:
            best = lt
            tt = expand
            while tt <= max_expand:
                dec2 = _step(alpha, direction, tt, free, grad, probe)
                l2, acc2 = _loss(vt, player, base, eps_hat, eps_plus, rho, probe, lgp, exp_, tss, teps)
                if l2 < best - slack and l2 <= loss + armijo * dec2:
                    best = l2
                    for k in range(num):
                        trial[k] = probe[k]
                    lg, lgp = lgp, lg
                    ex, exp_ = exp_, ex
                    acc = acc2
                    tt *= expand
                else:
                    break
        for k in range(num):
            alpha[k] = trial[k]
        # newton_step.evaluate_exps: the accepted point's joint from its exponentials.
        if acc == 0.0:
            joint[:] = 0.0
        else:
            for a in range(num_joint):
                joint[a] = ex[a] / acc
        _gradient_tail(values, player, eps_hat, eps_plus, rho, alpha, joint, mean, ssum, eps, grad)
        loss = best
        if t == 1.0:
            mult = max(mult * RELAX, damping_min)
        else:
            mult = min(mult * 10.0, damping_max)
    # The certificate (newton.solve_into).
    _player_gaps(mean, player, gaps)
    _player_sums(alpha, player, ssum)
    _eps_and_penalty(ssum, eps_hat, eps_plus, rho, epsp)
    if rho != np.inf:
        for p in range(num_players):
            epsp[p] = max(epsp[p], gaps[p])
    stats[0] = it
    stats[1] = status
    stats[2] = viol
    stats[3] = kkt
    stats[4] = dgap
    stats[5] = loss


# The shared per-point kernels (penalty, curvature, duality gap, measures, player sums and
# gaps, shifted exponentials, projected step), compiled from their own
# source to be inlined here (the same operations: no reference counts or call per use;
# not cached on their own: their cache entries would be the shared kernels').
_eps_and_penalty = njit(forceinline=True)(kn.eps_and_penalty_one.py_func)
_curvature = njit(forceinline=True)(kn.curvature_one.py_func)
_dgap = njit(forceinline=True)(kn.dgap_one.py_func)
_measures = njit(forceinline=True)(kn.measures_one.py_func)
_player_sums = njit(forceinline=True)(kn.player_sums_one.py_func)
_player_gaps = njit(forceinline=True)(kn.player_gaps_one.py_func)
_shifted_exps = njit(forceinline=True)(shifted_exps_one.py_func)
_step = njit(forceinline=True)(projected_step_one.py_func)
_stop_status = njit(forceinline=True)(stop_status.py_func)


@njit(cache=True, forceinline=True)
def _loss(vt, player, base, eps_hat, eps_plus, rho, alpha, lg, ex, ssum, eps):
    """``newton_step.loss_at`` on the identity layout: ``(L(alpha), sum of ex)``."""
    for a in range(lg.shape[0]):
        lg[a] = base[a]
    for j in range(vt.shape[0]):
        aj = alpha[j]
        for a in range(lg.shape[0]):
            lg[a] -= aj * vt[j, a]
    top, acc = _shifted_exps(lg, ex)
    lse = top if acc == 0.0 else top + math.log(acc)
    _player_sums(alpha, player, ssum)
    return lse + _eps_and_penalty(ssum, eps_hat, eps_plus, rho, eps), acc


@njit(cache=True, forceinline=True)
def _gradient_tail(values, player, eps_hat, eps_plus, rho, alpha, sigma, mean, ssum, eps, grad):
    """``newton_step.gradient_tail`` on the identity layout; returns the penalty."""
    for j in range(mean.shape[0]):
        mean[j] = 0.0
    for a in range(values.shape[0]):
        s = sigma[a]
        if s == 0.0:
            continue
        for j in range(mean.shape[0]):
            mean[j] += s * values[a, j]
    _player_sums(alpha, player, ssum)
    penalty = _eps_and_penalty(ssum, eps_hat, eps_plus, rho, eps)
    for k in range(grad.shape[0]):
        grad[k] = eps[player[k]] - mean[k]
    return penalty
