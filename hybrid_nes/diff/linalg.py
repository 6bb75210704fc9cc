"""The free block of the dual Hessian and its (pseudo-)inverse, single-threaded Numba.

BLAS/LAPACK threads compete with XLA's inside the callbacks on a loaded CPU, so the
factorisations here are plain compiled loops (``benchmarks/results/diff_suite.md``).
"""

from __future__ import annotations

import numba
import numpy as np

from hybrid_nes.diff.numba_cache import key_on_sources
from solvers import kernels as kn
from solvers.newton import cholesky_factor, cholesky_solve

__all__ = ["CHOLESKY_MIN_PIVOT", "TIKHONOV_DELTA", "TIKHONOV_STEPS", "free_hessian", "inverse_kernel", "psd_inverse",
           "psd_solve"]

#: Cholesky is used as is when the smallest pivot ratio is above this.
CHOLESKY_MIN_PIVOT = 1e-8
#: Iterated Tikhonov for a singular system: ``delta`` relative to max diag, steps.
TIKHONOV_DELTA = 1e-11
TIKHONOV_STEPS = 8


def free_hessian(rows, slot_player, dev, player, rho: float, flat, sigma, alpha, eps_hat, eps_plus,
                 free) -> np.ndarray:
    """``H_FF = Cov_sigma(gains_F)`` (+ the soft-constraint curvature) ``[|F|, |F|]`` of one
    game: ``flat [N, |A|]`` normalised payoffs, ``sigma [|A|]``, ``alpha, free [K]``."""
    num = player.shape[0]
    num_players = eps_hat.shape[0]
    values = np.empty(rows.shape)
    kn.gain_values_one(flat, slot_player, dev, values)
    mean = np.empty(num)
    kn.expected_gains_one(rows, values, sigma, mean)
    ssum = np.empty(num_players)
    kn.player_sums_one(alpha, player, ssum)
    curv = np.empty(num_players)
    kn.curvature_one(ssum, eps_hat, eps_plus, float(rho), curv)
    num_free = int(free.sum())
    pos = np.full(num, -1, dtype=np.int64)
    pos[free] = np.arange(num_free)
    hess = np.empty((num_free, num_free))
    width = rows.shape[1]
    kn.hessian_one(rows, values, player, sigma, mean, curv, pos, hess,
                   np.empty(max(num_free, 1), dtype=np.int64), np.empty(width, dtype=np.int64), np.empty(width))
    return hess


def _eigh_pinv(hess: np.ndarray) -> np.ndarray:
    n = hess.shape[0]
    evals, evecs = np.linalg.eigh(hess)
    cut = max(float(evals[-1]), 0.0) * 1e-12 * n
    inv = np.where(evals > cut, 1.0 / np.where(evals > cut, evals, 1.0), 0.0)
    return (evecs * inv) @ evecs.T


def psd_solve(hess: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``hess^+ rhs`` for a PSD ``hess`` and ``rhs`` in its range (the system is
    consistent: DESIGN §9).

    Cholesky when well conditioned; else iterated Tikhonov,
    ``x <- x + (hess + delta I)^{-1} (rhs - hess x)`` from 0, which converges to the
    minimum-norm solution (each step shrinks the error along an eigenvalue ``l`` by
    ``delta / (l + delta)``; null directions stay 0); the eigendecomposition
    pseudo-inverse only as the last resort.
    """
    n = hess.shape[0]
    low = np.zeros((n, n))
    out = np.zeros(n)
    if cholesky_solve(hess, 0.0, rhs, low, out):
        pivots = np.diag(low) ** 2
        if pivots.min() > CHOLESKY_MIN_PIVOT * pivots.max():
            return out
    delta = TIKHONOV_DELTA * max(float(np.max(np.diag(hess))), 1e-300)
    x = np.zeros(n)
    step = np.zeros(n)
    for _ in range(TIKHONOV_STEPS):
        if not cholesky_solve(hess, delta, rhs - hess @ x, low, step):
            break
        x += step
    else:
        return x
    return _eigh_pinv(hess) @ rhs


@numba.njit(cache=True)
def _cholesky_inverse(low, out):
    """``out = (low low^T)^{-1}``."""
    n = low.shape[0]
    linv = np.zeros((n, n))
    for j in range(n):
        linv[j, j] = 1.0 / low[j, j]
        for i in range(j + 1, n):
            s = 0.0
            for k in range(j, i):
                s -= low[i, k] * linv[k, j]
            linv[i, j] = s / low[i, i]
    for i in range(n):
        for j in range(i + 1):
            s = 0.0
            for k in range(i, n):
                s += linv[k, i] * linv[k, j]
            out[i, j] = s
            out[j, i] = s


@numba.njit(cache=True)
def inverse_kernel(hess, min_pivot, out):
    """``out = hess^{-1}`` by Cholesky; False when a pivot ratio is below ``min_pivot``."""
    n = hess.shape[0]
    low = np.zeros((n, n))
    if not cholesky_factor(hess, 0.0, low):
        return False
    lo = np.inf
    hi = 0.0
    for i in range(n):
        p = low[i, i] * low[i, i]
        lo = min(lo, p)
        hi = max(hi, p)
    if not lo > min_pivot * hi:
        return False
    _cholesky_inverse(low, out)
    return True


def psd_inverse(hess: np.ndarray) -> np.ndarray | None:
    """``hess^{-1}`` where ``psd_solve`` takes its Cholesky branch (well conditioned); None
    where it does not (a singular block: iterated Tikhonov, ``psd_solve``)."""
    out = np.empty_like(hess)
    return out if inverse_kernel(hess, CHOLESKY_MIN_PIVOT, out) else None


key_on_sources(globals())  # numba_cache: cached kernels follow every source they compile in
