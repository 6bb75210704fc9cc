"""Batched Numba kernels that only the tests run (reference checks of ``solvers.kernels``).

The library's solvers call the single-game building blocks of ``solvers.kernels``
directly; these batched wrappers (loss, gradient, Hessian, ``eps(alpha)``, stopping
measures of a batch ``[B, ...]``) exist to compare those blocks with the NumPy reference
``solvers.dual`` in the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from solvers.kernels import (
    curvature_one,
    dgap_one,
    eps_and_penalty_one,
    evaluate_one,
    expected_gains_one,
    hessian_one,
    log_partition_one,
    loss_only_one,
    measures_one,
    player_gaps_one,
    player_sums_one,
)

__all__ = [
    "second_moments_one", "log_partition", "expected_gains", "duals_eps", "dual_loss",
    "dual_gradient", "dual_hessian", "stopping_measures",
]


@njit(cache=True)
def second_moments_one(rows, values, sigma, out):
    """``out[k] = sum_a sigma[a] M[k, a]^2``; ``out: [K]``."""
    out[:] = 0.0
    num_joint, width = rows.shape
    for a in range(num_joint):
        s = sigma[a]
        if s == 0.0:
            continue
        for j in range(width):
            out[rows[a, j]] += s * values[a, j] * values[a, j]


@njit(cache=True, parallel=True)
def log_partition(lg):
    """``[B]`` max-shifted log-sum-exp of ``lg: [B, |A|]``."""
    out = np.empty(lg.shape[0])
    for b in prange(lg.shape[0]):
        out[b] = log_partition_one(lg[b])
    return out


@njit(cache=True, parallel=True)
def expected_gains(rows, values, sigma, num_constraints):
    """``[B, K]`` expected gains ``E_sigma[M_k]`` of ``sigma: [B, |A|]``."""
    out = np.empty((sigma.shape[0], num_constraints))
    for b in prange(sigma.shape[0]):
        expected_gains_one(rows, values[b], sigma[b], out[b])
    return out


@njit(cache=True, parallel=True)
def duals_eps(alpha, player, eps_hat, eps_plus, rho):
    """``[B, N]`` the approximation ``eps_p(alpha)``."""
    num_games, num_players = eps_hat.shape
    out = np.empty((num_games, num_players))
    for b in prange(num_games):
        ssum = np.empty(num_players)
        player_sums_one(alpha[b], player, ssum)
        eps_and_penalty_one(ssum, eps_hat[b], eps_plus[b], rho[b], out[b])
    return out


@njit(cache=True, parallel=True)
def dual_loss(rows, values, player, base, eps_hat, eps_plus, rho, alpha):
    """``[B]`` the dual loss ``L(alpha)``."""
    num_games, num_joint = base.shape
    out = np.empty(num_games)
    for b in prange(num_games):
        lg = np.empty(num_joint)
        ssum = np.empty(eps_hat.shape[1])
        eps = np.empty(eps_hat.shape[1])
        out[b] = loss_only_one(rows, values[b], player, base[b], eps_hat[b], eps_plus[b], rho[b], alpha[b], lg, ssum, eps)
    return out


@njit(cache=True, parallel=True)
def dual_gradient(rows, values, player, base, eps_hat, eps_plus, rho, alpha):
    """``[B, K]`` the gradient ``eps_{p(k)} - E_sigma[M_k]``."""
    num_games, num_joint = base.shape
    num_players = eps_hat.shape[1]
    out = np.empty(alpha.shape)
    for b in prange(num_games):
        lg = np.empty(num_joint)
        sigma = np.empty(num_joint)
        mean = np.empty(alpha.shape[1])
        ssum = np.empty(num_players)
        eps = np.empty(num_players)
        evaluate_one(rows, values[b], player, base[b], eps_hat[b], eps_plus[b], rho[b], alpha[b], lg, sigma, mean, ssum, eps, out[b])
    return out


@njit(cache=True, parallel=True)
def dual_hessian(rows, values, player, base, eps_hat, eps_plus, rho, alpha):
    """``[B, K, K]`` the Hessian ``Cov_sigma(M) + approximation curvature``."""
    num_games, num_joint = base.shape
    num_players = eps_hat.shape[1]
    num = alpha.shape[1]
    out = np.empty((num_games, num, num))
    pos = np.arange(num)
    for b in prange(num_games):
        lg = np.empty(num_joint)
        sigma = np.empty(num_joint)
        mean = np.empty(num)
        grad = np.empty(num)
        ssum = np.empty(num_players)
        eps = np.empty(num_players)
        curv = np.empty(num_players)
        evaluate_one(rows, values[b], player, base[b], eps_hat[b], eps_plus[b], rho[b], alpha[b], lg, sigma, mean, ssum, eps, grad)
        curvature_one(ssum, eps_hat[b], eps_plus[b], rho[b], curv)
        scratch = (np.empty(num, dtype=np.int64), np.empty(num, dtype=np.int64), np.empty(rows.shape[1]))
        hessian_one(rows, values[b], player, sigma, mean, curv, pos, out[b], *scratch)
    return out


@njit(cache=True, parallel=True)
def stopping_measures(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha):
    """``[B, 3]``: violation ``max (-g)^+``, KKT residual and duality gap at ``alpha``."""
    num_games, num_joint = base.shape
    num_players = eps_hat.shape[1]
    num = alpha.shape[1]
    out = np.empty((num_games, 3))
    for b in prange(num_games):
        lg = np.empty(num_joint)
        sigma = np.empty(num_joint)
        mean = np.empty(num)
        grad = np.empty(num)
        ssum = np.empty(num_players)
        eps = np.empty(num_players)
        gaps = np.empty(num_players)
        evaluate_one(rows, values[b], player, base[b], eps_hat[b], eps_plus[b], rho[b], alpha[b], lg, sigma, mean, ssum, eps, grad)
        player_gaps_one(mean, player, gaps)
        viol, kkt = measures_one(alpha[b], grad, free[b])
        out[b, 0] = viol
        out[b, 1] = kkt
        out[b, 2] = dgap_one(alpha[b], grad, ssum, eps, gaps, eps_hat[b], eps_plus[b], rho[b], free[b])
    return out
