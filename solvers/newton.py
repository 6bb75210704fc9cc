"""Damped projected Newton on the eps-MWMRE dual, batched with Numba (DESIGN §4).

Minimises the convex dual ``L(alpha)`` over ``alpha >= 0`` (rows flagged ``free``, the
implicit equalities after facial reduction, are sign-free):

- active set à la Bertsekas (1982): rows at (or within ``w`` of) their bound whose
  gradient pushes outward are moved to the bound; Newton acts on the others;
- Levenberg-Marquardt damping ``lambda = mult * ||projected gradient||^2`` (the Hessian is
  singular when constraints are redundant), ``mult`` adapted by step success (x ``RELAX``
  after a full step, x10 otherwise);
- Cholesky on the free block (built from the ELL columns, never a dense ``[K, |A|]``);
- projected Armijo line search ``L(P(alpha + t d)) <= L(alpha) + c g.(P(alpha + t d) - alpha)``.

Stops when the violation ``max_k (E[M_k] - eps_k)^+``, the KKT residual
(``dual.kkt_residual``) and the duality gap are all ``<= tol``.

References:
  D. P. Bertsekas, "Projected Newton methods for optimization problems with simple
  constraints", SIAM J. Control Optim. 20(2), 1982.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import get_num_threads, njit, prange

from solvers import kernels as kn
from solvers import newton_blocks as nb
from solvers.newton_damping import DAMPING_POWER, damping_lambda, damping_scale, fill_held  # noqa: F401
from solvers.newton_dense import hessian_vt_one, structural_zero_rows_vt
from solvers.newton_step import (  # noqa: F401  (re-exported: tests, hybrid_nes)
    evaluate_at,
    evaluate_exps,
    gains_identity_one,
    logits_identity_one,
    loss_at,
    projected_step_one,
)
from solvers.newton_workspace import newton_workspace

__all__ = [
    "OPTIMAL",
    "MAX_ITER",
    "STALLED",
    "DIVERGED",
    "BLOCK_LIMIT",
    "NewtonOptions",
    "DualSolveResult",
    "newton_batch",
]

#: Chunks of games per thread in the parallel drivers (each chunk allocates one workspace).
CHUNKS_PER_THREAD = 16
#: ``B |A| c K`` (gain entries times duals, a proxy of a batch's Newton work) below which
#: ``newton_batch`` runs on one thread even when asked for threads: results are identical
#: and a thread-pool launch costs more than ~1 ms of work gains (far more on a busy
#: machine; ``benchmarks/results/solvers_suite_profile.md``). 8x8: 64 ME-CCE or 11 ME-CE
#: games; a 32x32 ME-CE pair already runs in parallel.
PARALLEL_MIN_WORK = 1 << 20
#: Factor of the damping multiplier after a full Newton step (x10 after a shorter one),
#: with ``newton_damping.DAMPING_POWER`` (the power of the projected-gradient norm in
#: ``lambda = mult * pgn ** DAMPING_POWER``). 8x8 ME-CE: 0.1 and 1 (before) took 22.3 iterations per game (cap 60) and left 225 of
#: 4,096 games to the face stage; with the ``NewtonOptions`` defaults, 19.9 and 92
#: (benchmarks/results/solvers_suite_ce_face.md, section h-ceit).
RELAX = 0.01
#: ELL (CE) layout only (the identity layout probes as ``newton_identity`` does): try the
#: longer ``expand`` steps only when the quadratic model of the loss along the full step
#: puts its minimiser at ``>= PROBE_MIN`` times that step (``worth_expanding``). 8x8 ME-CE:
#: 44.6 -> 39.9 trial losses per game, iterations 18.96 -> 19.01; 1.4 sends a game to the
#: iteration cap (benchmarks/results/solvers_suite_profile.md, section h-celoss).
PROBE_MIN = 1.2


def small_batch(values_shape: tuple[int, ...], num_duals: int) -> bool:
    """True when a batch of gains ``[B, |A|, c]`` with ``K = num_duals`` is below ``PARALLEL_MIN_WORK``."""
    return values_shape[0] * values_shape[1] * values_shape[2] * num_duals < PARALLEL_MIN_WORK

# Per-game status codes shared by the dual solvers (``solvers.gradient`` too).
OPTIMAL = 0  # violation, KKT residual and duality gap <= tol
MAX_ITER = 1  # iteration cap reached
STALLED = 2  # no descent possible (line search / damping exhausted) short of tol
DIVERGED = 3  # ||alpha|| beyond alpha_cap: the dual has no minimiser (face) or is unbounded
BLOCK_LIMIT = 4  # Newton only: the free block outgrew ``max_block`` (memory budget); not run further


class NewtonOptions(NamedTuple):
    """Named tolerances and caps of the projected Newton method.

    The damping and step defaults (``damping``, ``backtrack``, ``expand``, ``max_expand``,
    with ``RELAX`` and ``DAMPING_POWER``) were chosen on 8x8 ME-CE and checked on ME-CCE,
    32x32 ME-CE and MW-CE (benchmarks/results/solvers_suite_ce_face.md, section h-ceit).

    Attributes:
      tol: stop when violation, KKT residual and duality gap are all <= tol.
      max_iter: iteration cap. Hard-constraint problems close to an LP (maximum welfare
        with a large ``mu``) need hundreds of iterations while the active set settles:
        16x16 MW-CE with ``mu = 100`` 426, 32x32 MW-CE with ``mu = 50`` 190-520.
      armijo: sufficient-decrease constant ``c`` of the line search.
      backtrack: step shrink factor of the line search.
      min_step: smallest step tried before the iteration counts as failed.
      damping: initial Levenberg-Marquardt multiplier ``mult`` (``lambda = mult * pgn **
        DAMPING_POWER``, ``pgn`` the projected gradient's max-norm).
      damping_min, damping_max: bounds of the multiplier (max reached = stalled).
      active_eps: cap of the active-set threshold ``w``.
      alpha_cap: ``max |alpha|`` beyond which the dual is declared divergent.
      expand: step growth factor tried after a full step was accepted (1 = never).
      max_expand: largest step multiple tried.
      max_block: largest free block whose dense ``[n, n]`` Hessian and Cholesky buffers
        may be allocated (``solvers.memory``); 0 = no limit (the ``[K, K]`` pair up
        front). With a limit below ``K`` the buffers grow with the free block, and an
        iteration whose block exceeds the limit ends the game with ``BLOCK_LIMIT``.
    """

    tol: float = 1e-8
    max_iter: int = 1000
    armijo: float = 1e-4
    backtrack: float = 0.3
    min_step: float = 1e-10
    damping: float = 0.1
    damping_min: float = 1e-10
    damping_max: float = 1e10
    active_eps: float = 1e-3
    alpha_cap: float = 1e6
    expand: float = 4.0
    max_expand: float = 1024.0
    max_block: int = 0


class DualSolveResult(NamedTuple):
    """Per-game outcome of a batched dual solve (normalised units).

    Attributes:
      alpha: ``[B, K]`` final duals; joint: ``[B, |A|]`` ``sigma(alpha)``.
      iterations: ``[B]`` int64; status: ``[B]`` int64 (OPTIMAL, MAX_ITER, ...).
      violation: ``[B]`` ``max_k (E[M_k] - eps_k)^+``; kkt: ``[B]`` KKT residual;
      duality_gap: ``[B]``; loss: ``[B]`` ``L(alpha)``.
    """

    alpha: np.ndarray
    joint: np.ndarray
    iterations: np.ndarray
    status: np.ndarray
    violation: np.ndarray
    kkt: np.ndarray
    duality_gap: np.ndarray
    loss: np.ndarray


@njit(cache=True)
def cholesky_factor(mat, lam, low):
    """``low low^T = mat + lam I`` (lower triangle of ``low: [n, n]`` written, only the lower
    triangle of ``mat`` read); False when not positive definite: the whole factor of
    ``newton_blocks.cholesky_factor_from`` (left-looking, two columns per pass)."""
    return nb.cholesky_factor_from(mat, lam, low, 0)


@njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def cholesky_solve(mat, lam, rhs, low, out):
    """Solves ``(mat + lam I) out = rhs`` by Cholesky; False when not positive definite.

    ``mat, low: [n, n]`` (``low`` is scratch; only ``mat``'s lower triangle is read),
    ``rhs, out: [n]``. Both triangular solves run along the rows of ``low`` (the
    back substitution as row updates), never down its columns.
    """
    if not cholesky_factor(mat, lam, low):
        return False
    n = rhs.shape[0]
    for i in range(n):
        ri = low[i]
        s = rhs[i]
        for k in range(i):
            s -= ri[k] * out[k]
        out[i] = s / ri[i]
    for k in range(n - 1, -1, -1):
        rk = low[k]
        x = out[k] / rk[k]
        out[k] = x
        for i in range(k):
            out[i] -= rk[i] * x
    return True


@njit(cache=True)
def stop_status(viol, kkt, dgap, tol, it, max_iter, alpha, alpha_cap, loss):
    """The status an iteration stops with, or -1 to go on: ``OPTIMAL`` when violation, KKT
    residual and ``|duality gap|`` are all ``<= tol``, else ``MAX_ITER`` at ``it >=
    max_iter``, else ``DIVERGED`` when ``max |alpha| > alpha_cap`` or ``loss`` is not finite."""
    if viol <= tol and kkt <= tol and abs(dgap) <= tol:
        return OPTIMAL
    if it >= max_iter:
        return MAX_ITER
    amax = 0.0
    for k in range(alpha.shape[0]):
        if abs(alpha[k]) > amax:
            amax = abs(alpha[k])
    if amax > alpha_cap or not math.isfinite(loss):
        return DIVERGED
    return -1


@njit(cache=True)
def worth_expanding(dec, rise):
    """Whether the full step's loss change ``rise`` (linear part ``dec < 0``) leaves room
    for a longer step: the quadratic through them has its minimiser at ``>= PROBE_MIN``
    (or is not convex). A Newton step on a quadratic has it at exactly 1."""
    curv = rise - dec
    return not curv > 0.0 or -dec >= 2.0 * PROBE_MIN * curv


@njit(cache=True)
def damped_direction(hess, rhs, low, sol, pos, alpha, direction, pgn, diag_max, mult, damping_max):
    """The Levenberg-damped projected Newton direction ``direction: [K]`` of one iteration.

    Solves ``(hess + lam I) sol = rhs`` (``hess, low: [n, n]``, ``rhs, sol: [n]``) with
    ``lam = mult * pgn ** DAMPING_POWER + 1e-12 (1 + diag_max)``, multiplying ``mult`` by
    10 until the Cholesky succeeds or passes ``damping_max``; then ``direction[k]`` is 0 on
    inert rows (``pos[k] == -2``), ``-alpha[k]`` on rows held at their bound (``-1``: straight
    to the bound, a descent direction there) and ``sol[pos[k]]`` on free rows. Returns
    ``(ok, mult)``; ``direction`` is untouched when not ``ok``."""
    n = hess.shape[0]
    scale = damping_scale(pgn)
    ok = False
    while mult <= damping_max:
        if cholesky_solve(hess, damping_lambda(mult, scale, diag_max), rhs[:n], low, sol[:n]):
            ok = True
            break
        mult *= 10.0
    if ok:
        fill_held(pos, alpha, direction)
        for k in range(pos.shape[0]):
            if pos[k] >= 0:
                direction[k] = sol[pos[k]]
    return ok, mult


@njit(cache=True)
def newton_one(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
               armijo, backtrack, min_step, damping, damping_min, damping_max, active_eps,
               alpha_cap, expand, max_expand, max_block, joint):
    """Projected Newton on one game; ``alpha: [K]`` is the start and is overwritten.

    ``max_block``: as ``NewtonOptions.max_block`` (0 or ``>= K``: ``[K, K]`` buffers).

    Returns ``(iterations, status, violation, kkt, duality_gap, loss)`` and writes
    ``sigma(alpha)`` into ``joint: [|A|]``. (``newton_core`` with its own workspace.)
    """
    num = alpha.shape[0]
    dense = kn.rows_are_identity(rows, num)
    block = 0 if 0 < max_block < num else num
    ws = newton_workspace(num, base.shape[0], eps_hat.shape[0], block, dense)
    return newton_core(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
                       armijo, backtrack, min_step, damping, damping_min, damping_max, active_eps,
                       alpha_cap, expand, max_expand, max_block, joint, dense, ws)


@njit(cache=True)
def newton_core(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
                armijo, backtrack, min_step, damping, damping_min, damping_max, active_eps,
                alpha_cap, expand, max_expand, max_block, joint, dense, ws):
    """``newton_one`` on the scratch ``ws`` of ``newton_workspace`` (nothing allocated per
    iteration; with ``0 < max_block < K`` the dense buffers grow with the free block)."""
    num = alpha.shape[0]
    num_joint = base.shape[0]
    vecs, small, ints, zero_row, val, mats = ws
    lg, lgp, ex, exp_, mean, grad, rhs, sol, direction, trial, probe = vecs
    ssum, eps, gaps, curv, tss, teps = small
    pos, idx, keep, loc = ints
    hess_flat, low_flat, _, wcols, vt = mats
    # Dense buffers: the whole [K, K] pair up front when allowed, else grown with the
    # free block up to max_block.
    limit = num if max_block <= 0 or max_block >= num else max_block
    size = num if limit == num else 0
    if hess_flat.shape[0] < size * size or (dense and wcols.shape[0] < size):
        size = 0  # a workspace without the [K, K] pair: grow on demand
    # Rows with no gain on the support (after facial reduction, or a constant-payoff
    # player) have zero Hessian rows; with a zero gradient they are inert and stay out of
    # the system (and the Cholesky) altogether.
    for k in range(num):
        if not free[k] and alpha[k] < 0.0:
            alpha[k] = 0.0
    if dense:
        for a in range(num_joint):
            for j in range(num):
                vt[j, a] = values[a, j]
        structural_zero_rows_vt(vt, base, zero_row)
        logits_identity_one(vt, base, alpha, lg)
        layout = nb.ce2_layout(rows[:0], player[:0])
    else:
        kn.structural_zero_rows_one(rows, values, base, zero_row)
        kn.logits_one(rows, values, base, alpha, lg)
        layout = nb.ce2_layout(rows, player)
    blocks = layout[0]
    bscratch = nb.ce2_scratch(num if blocks else 0, layout[1])
    loss = evaluate_at(dense, rows, values, player, eps_hat, eps_plus, rho, alpha, lg, joint, mean, ssum, eps, grad)
    mult = damping
    last_pgn = np.inf
    prev_pgn = np.inf
    status = MAX_ITER
    it = 0
    viol = 0.0
    kkt = 0.0
    dgap = 0.0
    while True:
        kn.player_gaps_one(mean, player, gaps)
        viol, kkt = kn.measures_one(alpha, grad, free)
        # The relaxed certificate (>= 0 with hard constraints). Numba's cache does not see
        # changes to kn.dgap_one: edit this file (or clear __pycache__) when it changes.
        dgap = kn.dgap_one(alpha, grad, ssum, eps, gaps, eps_hat, eps_plus, rho, free)
        status = stop_status(viol, kkt, dgap, tol, it, max_iter, alpha, alpha_cap, loss)
        if status >= 0:
            break
        it += 1
        # Projected-gradient norm sets the active-set threshold and the damping.
        pgn = 0.0
        for k in range(num):
            step = alpha[k] - grad[k]
            if not free[k] and step < 0.0:
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
            elif (not free[k]) and alpha[k] <= w and grad[k] > 0.0:
                pos[k] = -1
            else:
                pos[k] = n
                idx[n] = k
                n += 1
        if n > size:
            if n > limit:
                it -= 1
                status = BLOCK_LIMIT
                break
            size = min(limit, max(n, size + size // 2))
            hess_flat = np.empty(size * size)
            low_flat = np.empty(size * size)
            if dense:
                wcols = np.empty((size, num_joint))
        kn.curvature_one(ssum, eps_hat, eps_plus, rho, curv)
        code = -1
        if blocks:
            hard = True
            for p in range(curv.shape[0]):
                hard = hard and curv[p] == 0.0
            if hard:
                # Two-player hard-constraint CE: the Hessian by blocks (-1: border pivot
                # lost, the dense Hessian below).
                code, mult = nb.ce2_direction(values, player, joint, mean, grad, alpha, pos, layout, bscratch,
                                              hess_flat, low_flat, pgn, mult, damping_max, direction)
        if code >= 0:
            ok = code == 1
        else:
            # Contiguous [n, n] views of the flat buffers.
            hess = hess_flat[: n * n].reshape((n, n))
            low = low_flat[: n * n].reshape((n, n))
            if dense:
                hessian_vt_one(vt, player, joint, mean, curv, pos, hess, wcols, keep)
            else:
                kn.hessian_lower_one(rows, values, player, joint, mean, curv, pos, hess, keep, loc, val)
            diag_max = 0.0
            for i in range(n):
                rhs[i] = -grad[idx[i]]
                if hess[i, i] > diag_max:
                    diag_max = hess[i, i]
            ok, mult = damped_direction(hess, rhs, low, sol, pos, alpha, direction, pgn, diag_max, mult,
                                        damping_max)
        if not ok:
            status = STALLED
            break
        # Projected Armijo search; a slack of a few ulps of L keeps converged runs from
        # failing on rounding noise.
        slack = 1e-15 * (1.0 + abs(loss))
        t = 1.0
        accepted = False
        acc = 0.0
        best = loss
        while t >= min_step:
            dec = projected_step_one(alpha, direction, t, free, grad, trial)
            lt, acc = loss_at(dense, vt, rows, values, player, base, eps_hat, eps_plus, rho, trial, lg, ex, tss,
                              teps)
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
        if (t == 1.0 and expand > 1.0 and pgn > 0.25 * prev_pgn
                and (dense or worth_expanding(dec, lt - loss))):
            # Linear progress with full steps: where the dual has no minimiser it drifts
            # along a direction of exponential decay, and longer steps get there in far
            # fewer iterations. Keep doubling while it pays. (Skipped while convergence
            # is fast, where it would only cost a loss evaluation.) Probes write their
            # logits into lgp (exponentials into exp_); an accepted probe swaps them with lg, ex.
            best = lt
            tt = expand
            while tt <= max_expand:
                dec2 = projected_step_one(alpha, direction, tt, free, grad, probe)
                l2, acc2 = loss_at(dense, vt, rows, values, player, base, eps_hat, eps_plus, rho, probe, lgp, exp_,
                                   tss, teps)
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
        # ex and acc hold the exponentials of the accepted point (bit-identical to a fresh
        # softmax of its logits), best its loss.
        evaluate_exps(dense, rows, values, player, eps_hat, eps_plus, rho, alpha, ex, acc, joint, mean, ssum, eps,
                      grad)
        loss = best
        if t == 1.0:
            mult = max(mult * RELAX, damping_min)
        else:
            mult = min(mult * 10.0, damping_max)
    return it, status, viol, kkt, dgap, loss


@njit(cache=True)
def record_result(out, b, iters, status, stats):
    """Stores a per-game ``(iterations, status, violation, kkt, gap, loss)`` at row ``b``."""
    iters[b] = out[0]
    status[b] = out[1]
    stats[b, 0] = out[2]
    stats[b, 1] = out[3]
    stats[b, 2] = out[4]
    stats[b, 3] = out[5]


def batch_buffers(base: np.ndarray, alpha0: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(alpha, joint, iters, status, stats)`` output buffers of a batched dual solve."""
    num_games, num_joint = base.shape
    alpha = np.array(alpha0, dtype=np.float64, order="C", copy=True)
    joint = np.empty((num_games, num_joint))
    iters = np.zeros(num_games, dtype=np.int64)
    status = np.zeros(num_games, dtype=np.int64)
    stats = np.zeros((num_games, 4))
    return alpha, joint, iters, status, stats


def batch_result(alpha, joint, iters, status, stats) -> DualSolveResult:
    """The ``DualSolveResult`` of the buffers of ``batch_buffers``."""
    return DualSolveResult(alpha, joint, iters, status, stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3])


@njit(cache=True)
def _newton_range(lo, hi, rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
                  armijo, backtrack, min_step, damping, damping_min, damping_max, active_eps,
                  alpha_cap, expand, max_expand, max_block, joint, iters, status, stats):
    """Games ``lo..hi-1`` in turn on one workspace."""
    num = alpha.shape[1]
    dense = kn.rows_are_identity(rows, num)
    block = 0 if 0 < max_block < num else num
    ws = newton_workspace(num, base.shape[1], eps_hat.shape[1], block, dense)
    for b in range(lo, hi):
        out = newton_core(rows, values[b], player, base[b], eps_hat[b], eps_plus[b], rho[b], free[b],
                          alpha[b], tol, max_iter, armijo, backtrack, min_step, damping, damping_min,
                          damping_max, active_eps, alpha_cap, expand, max_expand, max_block, joint[b],
                          dense, ws)
        record_result(out, b, iters, status, stats)


@njit(cache=True, parallel=True)
def _newton_parallel(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
                     armijo, backtrack, min_step, damping, damping_min, damping_max, active_eps,
                     alpha_cap, expand, max_expand, max_block, joint, iters, status, stats, chunks):
    # Chunks of games share a workspace; many more chunks than threads balance games of
    # very different iteration counts.
    num_games = base.shape[0]
    for c in prange(chunks):
        _newton_range(c * num_games // chunks, (c + 1) * num_games // chunks, rows, values, player,
                      base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter, armijo, backtrack,
                      min_step, damping, damping_min, damping_max, active_eps, alpha_cap, expand,
                      max_expand, max_block, joint, iters, status, stats)


@njit(cache=True)
def _newton_serial(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
                   armijo, backtrack, min_step, damping, damping_min, damping_max, active_eps,
                   alpha_cap, expand, max_expand, max_block, joint, iters, status, stats):
    _newton_range(0, base.shape[0], rows, values, player, base, eps_hat, eps_plus, rho, free, alpha,
                  tol, max_iter, armijo, backtrack, min_step, damping, damping_min, damping_max,
                  active_eps, alpha_cap, expand, max_expand, max_block, joint, iters, status, stats)


def newton_batch(
    rows: np.ndarray,
    values: np.ndarray,
    player: np.ndarray,
    base: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: np.ndarray,
    free: np.ndarray,
    alpha0: np.ndarray,
    options: NewtonOptions | None = None,
    parallel: bool | None = None,
) -> DualSolveResult:
    """Projected Newton on a batch of duals of one shape (normalised units).

    Args:
      rows: ``[|A|, c]`` int64; values: ``[B, |A|, c]``; player: ``[K]`` int64;
      base: ``[B, |A|]``; eps_hat, eps_plus: ``[B, N]``; rho: ``[B]``; free: ``[B, K]``
      bool; alpha0: ``[B, K]`` start (copied; projected onto the dual domain).
      options: tolerances and caps.
      parallel: run games on all cores (default: when B > 1); a batch below
        ``PARALLEL_MIN_WORK`` runs on one thread either way (same results).

    Returns:
      A ``DualSolveResult``.
    """
    num_games = base.shape[0]
    alpha, joint, iters, status, stats = batch_buffers(base, alpha0)
    o = options if options is not None else NewtonOptions()
    args = (rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, float(o.tol), int(o.max_iter),
            float(o.armijo), float(o.backtrack), float(o.min_step), float(o.damping), float(o.damping_min),
            float(o.damping_max), float(o.active_eps), float(o.alpha_cap), float(o.expand),
            float(o.max_expand), int(o.max_block), joint, iters, status, stats)
    if (parallel if parallel is not None else num_games > 1) and not small_batch(values.shape, alpha.shape[1]):
        _newton_parallel(*args, min(num_games, CHUNKS_PER_THREAD * get_num_threads()))
    else:
        _newton_serial(*args)
    return batch_result(alpha, joint, iters, status, stats)


@njit(cache=True)
def single_workspace(num, num_joint, width, num_players, opts, dense):
    """Scratch of ``solve_into`` (ELL gains ``[|A|, c]``, the ``free`` flags, ``newton_workspace``),
    allocated once and reused over the games of a chunk."""
    max_block = int(opts[12])
    block = 0 if 0 < max_block < num else num
    return (np.empty((num_joint, width)), np.zeros(num, dtype=np.bool_),
            newton_workspace(num, num_joint, num_players, block, dense))


@njit(cache=True)
def solve_into(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, alpha, opts, dense, sws, joint,
               gaps, epsp, stats):
    """``solve_single`` into ``joint [|A|], gaps, epsp [N], stats [6]`` on the scratch ``sws``
    of ``single_workspace`` (``dense``: ``kernels.rows_are_identity(rows, K)``).

    The certificate's expected gains are the ones Newton computed at its last point (the
    joint it returns; ``newton_step.gains_identity_one`` or ``kernels.expected_gains_one``,
    bit-identical to a fresh pass over the gains).
    """
    values, free, ws = sws
    kn.gain_values_one(flat, slot_player, dev, values)
    free[:] = False
    out = newton_core(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, opts[0], int(opts[1]),
                      opts[2], opts[3], opts[4], opts[5], opts[6], opts[7], opts[8], opts[9], opts[10], opts[11],
                      int(opts[12]), joint, dense, ws)
    mean = ws[0][4]
    ssum = ws[1][0]
    kn.player_gaps_one(mean, player, gaps)
    kn.player_sums_one(alpha, player, ssum)
    kn.eps_and_penalty_one(ssum, eps_hat, eps_plus, rho, epsp)
    if rho != np.inf:
        for p in range(gaps.shape[0]):
            epsp[p] = max(epsp[p], gaps[p])
    stats[0] = out[0]
    stats[1] = out[1]
    stats[2] = out[2]
    stats[3] = out[3]
    stats[4] = out[4]
    stats[5] = out[5]


@njit(cache=True)
def solve_single(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, alpha, opts):
    """Gains, projected Newton and certificate of one game in one call (the fast path).

    Args:
      rows, dev: ``[|A|, c]``; slot_player: ``[c]``; player: ``[K]`` (``GainLayout``);
      flat: ``[N, |A|]`` normalised payoffs; base: ``[|A|]``; eps_hat, eps_plus: ``[N]``;
      rho: float; alpha: ``[K]`` start (overwritten with the result);
      opts: ``[13]`` the ``NewtonOptions`` fields in order.

    Returns:
      ``(joint [|A|], gaps [N], eps' [N], stats [6])`` with stats = (iterations, status,
      violation, kkt, duality gap, loss).
    """
    num_joint, width = dev.shape
    num = alpha.shape[0]
    num_players = eps_hat.shape[0]
    dense = kn.rows_are_identity(rows, num)
    sws = single_workspace(num, num_joint, width, num_players, opts, dense)
    joint = np.empty(num_joint)
    gaps = np.empty(num_players)
    epsp = np.empty(num_players)
    stats = np.empty(6)
    solve_into(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, alpha, opts, dense, sws, joint,
               gaps, epsp, stats)
    return joint, gaps, epsp, stats


def options_array(options: NewtonOptions) -> np.ndarray:
    """``[13]`` float64 of the ``NewtonOptions`` fields (one argument for Numba)."""
    return np.array([float(v) for v in options], dtype=np.float64)
