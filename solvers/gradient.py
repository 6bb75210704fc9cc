"""Accelerated projected gradient (FISTA with restart) on the eps-MWMRE dual, batched.

The first-order counterpart of ``solvers.newton`` for duals too many for a Cholesky per
iteration (CE 32x32 has ~2,000): each iteration costs two passes over the ELL gains.

- FISTA momentum (Beck & Teboulle 2009) with function-value restart (O'Donoghue &
  Candès 2015): momentum is dropped whenever the loss goes up;
- backtracking on the step (sufficient decrease of the quadratic upper model), which is
  then grown by ``step_grow`` so it tracks the local curvature. Once the model promises
  less decrease than the loss's rounding error (``LOSS_NOISE``; near the optimum of a
  1,024-joint game that is ~1e-15 while the KKT residual is still ~1e-8), function values
  stop deciding: the step is kept and the momentum restarts on the gradient test.
  (Backtracking on noise had collapsed the step to ~1e-6 and stalled a third of 32x32
  ME-CCE runs at a KKT residual of 1.07e-8.)
- the start step is ``1 / lambda``, ``lambda`` the Hessian's largest eigenvalue at the
  start point estimated by ``curvature_iters`` power iterations (Hessian-vector products,
  one gradient's cost each); never below ``1 / max_a ||m_a||^2`` (an upper bound of that
  eigenvalue plus the approximation curvature), which is often 10x too small: with it
  the step needs ~25 iterations of growth before it fits the curvature.

Stopping is that of ``solvers.newton``: violation, KKT residual and duality gap
``<= tol``, checked every ``check_every`` iterations.

References:
  A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear
  inverse problems", SIAM J. Imaging Sci. 2(1), 2009.
  B. O'Donoghue, E. Candès, "Adaptive restart for accelerated gradient schemes",
  Found. Comput. Math. 15, 2015.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from solvers import kernels as kn
from solvers.newton import (
    MAX_ITER,
    STALLED,
    DualSolveResult,
    batch_buffers,
    batch_result,
    record_result,
    stop_status,
)

__all__ = ["GradientOptions", "gradient_batch"]

#: Relative rounding error of one loss evaluation, in units of ``1 + |L| + max |base|``.
LOSS_NOISE = 16 * 2.0**-52


class GradientOptions(NamedTuple):
    """Named tolerances and caps of the accelerated projected gradient method.

    Attributes:
      tol: stop when violation, KKT residual and duality gap are all <= tol.
      max_iter: iteration cap.
      check_every: iterations between stopping tests (each costs one evaluation).
      step_grow: factor applied to the step after every accepted iteration.
      backtrack: step shrink factor of the backtracking.
      min_step: smallest step tried before the run counts as stalled.
      alpha_cap: ``max |alpha|`` beyond which the dual is declared divergent.
      curvature_iters: power iterations for the start step (0: the global bound).
    """

    tol: float = 1e-8
    max_iter: int = 20000
    check_every: int = 10
    step_grow: float = 1.1
    backtrack: float = 0.5
    min_step: float = 1e-16
    alpha_cap: float = 1e6
    curvature_iters: int = 3


@njit(cache=True)
def lipschitz_bound(values, player, eps_hat, eps_plus, rho):
    """``max_a ||m_a||^2`` plus the largest approximation curvature times its row count."""
    num_joint, width = values.shape
    lip = 0.0
    for a in range(num_joint):
        acc = 0.0
        for j in range(width):
            acc += values[a, j] * values[a, j]
        if acc > lip:
            lip = acc
    if rho != np.inf:
        counts = np.zeros(eps_hat.shape[0])
        for k in range(player.shape[0]):
            counts[player[k]] += 1.0
        extra = 0.0
        for p in range(eps_hat.shape[0]):
            extra = max(extra, (eps_plus[p] - eps_hat[p]) / rho * counts[p])
        lip += extra
    return lip if lip > 0.0 else 1.0


@njit(cache=True)
def start_step(rows, values, player, eps_hat, eps_plus, rho, free, alpha, joint, mean, ssum, grad, iters):
    """``1 / lambda``: ``lambda`` estimates the largest Hessian eigenvalue at ``alpha``.

    Power iteration from the projected gradient (the first step's direction) on the
    Hessian at ``alpha``, whose ``joint = sigma(alpha)``, ``mean`` and ``ssum`` the
    caller has evaluated. The Rayleigh quotient is a lower bound of the eigenvalue, so
    the step can be too long: the backtracking shortens it. Never below the safe
    ``1 / lipschitz_bound``.
    """
    safe = 1.0 / lipschitz_bound(values, player, eps_hat, eps_plus, rho)
    if iters <= 0:
        return safe
    num = alpha.shape[0]
    curv = np.empty(eps_hat.shape[0])
    psum = np.empty(eps_hat.shape[0])
    kn.curvature_one(ssum, eps_hat, eps_plus, rho, curv)
    vec = np.empty(num)
    hv = np.empty(num)
    weights = np.empty(joint.shape[0])
    norm = 0.0
    for k in range(num):
        g = grad[k]
        if not free[k] and alpha[k] <= 0.0 and g > 0.0:
            g = 0.0  # at the bound and pushed outward: not part of the first step
        vec[k] = g
        norm += g * g
    if norm == 0.0:
        return safe
    lam = 0.0
    for _ in range(iters):
        norm = math.sqrt(norm)
        for k in range(num):
            vec[k] /= norm
        kn.hessian_vector_one(rows, values, player, joint, mean, curv, vec, psum, weights, hv)
        lam = 0.0
        norm = 0.0
        for k in range(num):
            lam += vec[k] * hv[k]
            norm += hv[k] * hv[k]
            vec[k] = hv[k]
        if norm == 0.0:
            break
    return max(1.0 / lam, safe) if lam > 0.0 else safe


@njit(cache=True)
def fista_one(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
              check_every, step_grow, backtrack, min_step, alpha_cap, curvature_iters, joint):
    """FISTA with restart on one game; ``alpha: [K]`` is the start and is overwritten.

    Returns ``(iterations, status, violation, kkt, duality_gap, loss)`` and writes
    ``sigma(alpha)`` into ``joint: [|A|]``.
    """
    num = alpha.shape[0]
    num_joint = base.shape[0]
    num_players = eps_hat.shape[0]
    lg = np.empty(num_joint)
    sig_y = np.empty(num_joint)
    mean = np.empty(num)
    grad = np.empty(num)
    ssum = np.empty(num_players)
    eps = np.empty(num_players)
    gaps = np.empty(num_players)
    y = np.empty(num)
    trial = np.empty(num)
    for k in range(num):
        if not free[k] and alpha[k] < 0.0:
            alpha[k] = 0.0
        y[k] = alpha[k]
    # Rounding error of a loss evaluation: the log-partition sums terms of size |base|
    # (ln |A| for ME), so near the optimum L moves by less than its own noise.
    bmax = 0.0
    for a in range(num_joint):
        if math.isfinite(base[a]):
            bmax = max(bmax, abs(base[a]))
    loss_a = kn.evaluate_one(rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, joint, mean, ssum, eps, grad)
    step = start_step(rows, values, player, eps_hat, eps_plus, rho, free, alpha, joint, mean, ssum, grad, curvature_iters)
    theta = 1.0
    status = MAX_ITER
    it = 0
    viol = 0.0
    kkt = 0.0
    dgap = 0.0
    while True:
        if it % check_every == 0 or it >= max_iter:
            if it > 0:  # at it == 0 the start's evaluation above is still current
                loss_a = kn.evaluate_one(rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, joint, mean, ssum, eps, grad)
            kn.player_gaps_one(mean, player, gaps)
            viol, kkt = kn.measures_one(alpha, grad, free)
            # The relaxed certificate (>= 0 with hard constraints). Numba's cache does not see
            # changes to kn.dgap_one: edit this file (or clear __pycache__) when it changes.
            dgap = kn.dgap_one(alpha, grad, ssum, eps, gaps, eps_hat, eps_plus, rho, free)
            status = stop_status(viol, kkt, dgap, tol, it, max_iter, alpha, alpha_cap, loss_a)
            if status >= 0:
                break
        it += 1
        loss_y = kn.evaluate_one(rows, values, player, base, eps_hat, eps_plus, rho, y, lg, sig_y, mean, ssum, eps, grad)
        slack = LOSS_NOISE * (1.0 + abs(loss_y) + bmax)
        lt = 0.0
        quiet = False
        while True:
            model = loss_y
            for k in range(num):
                v = y[k] - step * grad[k]
                if not free[k] and v < 0.0:
                    v = 0.0
                trial[k] = v
                d = v - y[k]
                model += grad[k] * d + d * d / (2.0 * step)
            lt = kn.loss_only_one(rows, values, player, base, eps_hat, eps_plus, rho, trial, lg, ssum, eps)
            if loss_y - model <= slack:
                # The model promises less decrease than the loss's rounding error: function
                # values cannot judge the step. Keep the step (it passed the test while they
                # could) and let the gradient decide the momentum below.
                quiet = True
                break
            if lt <= model + slack:
                break
            step *= backtrack
            if step < min_step:
                break
        if step < min_step:
            status = STALLED
            loss_a = kn.evaluate_one(rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, joint, mean, ssum, eps, grad)
            kn.player_gaps_one(mean, player, gaps)
            viol, kkt = kn.measures_one(alpha, grad, free)
            dgap = kn.dgap_one(alpha, grad, ssum, eps, gaps, eps_hat, eps_plus, rho, free)
            break
        if quiet:
            # Gradient restart (O'Donoghue & Candès): drop the momentum when it points uphill.
            uphill = 0.0
            for k in range(num):
                uphill += grad[k] * (trial[k] - alpha[k])
            if uphill > 0.0:
                theta = 1.0
        elif lt > loss_a + slack:
            # Function-value restart: momentum overshot; retry from alpha without it.
            theta = 1.0
            for k in range(num):
                y[k] = alpha[k]
            continue
        theta_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * theta * theta))
        beta = (theta - 1.0) / theta_next
        for k in range(num):
            y[k] = trial[k] + beta * (trial[k] - alpha[k])
            alpha[k] = trial[k]
        theta = theta_next
        loss_a = lt
        if not quiet:
            step *= step_grow
    return it, status, viol, kkt, dgap, loss_a


@njit(cache=True, parallel=True)
def _fista_parallel(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
                    check_every, step_grow, backtrack, min_step, alpha_cap, curvature_iters, joint, iters, status, stats):
    for b in prange(base.shape[0]):
        out = fista_one(rows, values[b], player, base[b], eps_hat[b], eps_plus[b], rho[b], free[b],
                        alpha[b], tol, max_iter, check_every, step_grow, backtrack, min_step,
                        alpha_cap, curvature_iters, joint[b])
        record_result(out, b, iters, status, stats)


@njit(cache=True)
def _fista_serial(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, tol, max_iter,
                  check_every, step_grow, backtrack, min_step, alpha_cap, curvature_iters, joint, iters, status, stats):
    for b in range(base.shape[0]):
        out = fista_one(rows, values[b], player, base[b], eps_hat[b], eps_plus[b], rho[b], free[b],
                        alpha[b], tol, max_iter, check_every, step_grow, backtrack, min_step,
                        alpha_cap, curvature_iters, joint[b])
        record_result(out, b, iters, status, stats)


def gradient_batch(
    rows: np.ndarray,
    values: np.ndarray,
    player: np.ndarray,
    base: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: np.ndarray,
    free: np.ndarray,
    alpha0: np.ndarray,
    options: GradientOptions | None = None,
    parallel: bool | None = None,
) -> DualSolveResult:
    """Accelerated projected gradient on a batch of duals of one shape (normalised units).

    Arguments and result as ``solvers.newton.newton_batch``.
    """
    num_games = base.shape[0]
    alpha, joint, iters, status, stats = batch_buffers(base, alpha0)
    run = _fista_parallel if (parallel if parallel is not None else num_games > 1) else _fista_serial
    o = options if options is not None else GradientOptions()
    run(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, float(o.tol), int(o.max_iter),
        int(o.check_every), float(o.step_grow), float(o.backtrack), float(o.min_step), float(o.alpha_cap),
        int(o.curvature_iters), joint, iters, status, stats)
    return batch_result(alpha, joint, iters, status, stats)
