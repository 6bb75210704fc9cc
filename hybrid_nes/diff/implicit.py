"""The implicit step (DESIGN §9): the KKT solve of the free duals, its custom VJP, and
the forward-mode (JVP) map built on the same solve.

At the optimum the free rows ``F`` satisfy ``g_F(alpha_F; theta) = 0`` with
``g = eps - E_sigma[gains]``; the other duals stay 0 and joint actions off the face's
support keep probability 0. With ``H_FF = d g_F / d alpha_F = Cov_sigma(gains_F)`` (+ the
soft-constraint curvature), PSD:

    reverse:  r = (d sigma / d alpha)^T v + w,  lambda = -H_FF^+ r_F,
              theta_bar = (d sigma / d theta)^T v + (d g_F / d theta)^T lambda
    forward:  d alpha_F = -H_FF^+ (d g_F / d theta) d theta,
              d sigma = (d sigma / d alpha) d alpha + (d sigma / d theta) d theta

``H_FF`` is built from the ELL layout in Numba and solved by Cholesky, or, when redundant
rows make it singular (faces), by iterated Tikhonov to the minimum-norm solution (``d
sigma`` is still unique). The JAX maps are ``problem.sigma_and_gradient``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_nes.diff.problem import sigma_and_gradient
from hybrid_nes.diff.status import (
    BAD_COTANGENT,
    DEGENERATE_ACTIVE_SET,
    FACE_CHANGE,
    OK,
    STATUS_MESSAGES,
    Config,
    DegenerateEquilibriumError,
)
from solvers import kernels as kn
from solvers.api import gain_layout
from solvers.newton import cholesky_solve

__all__ = ["CHOLESKY_MIN_PIVOT", "TIKHONOV_DELTA", "TIKHONOV_STEPS", "implicit", "kkt_solve_np", "psd_solve",
           "tangent"]

#: ``psd_solve`` takes the Cholesky solve when the smallest pivot ratio is above this.
CHOLESKY_MIN_PIVOT = 1e-8
#: Iterated Tikhonov for a singular system: ``delta`` relative to max diag, steps.
TIKHONOV_DELTA = 1e-11
TIKHONOV_STEPS = 8


def psd_solve(hess: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``hess^+ rhs`` for a PSD ``hess`` and ``rhs`` in its range (the system is
    consistent: DESIGN §9).

    Cholesky (the solvers' single-threaded Numba one: LAPACK's threads compete with XLA's
    inside the callback) when well conditioned; else iterated Tikhonov,
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
    evals, evecs = np.linalg.eigh(hess)
    cut = max(float(evals[-1]), 0.0) * 1e-12 * n
    inv = np.where(evals > cut, 1.0 / np.where(evals > cut, evals, 1.0), 0.0)
    return evecs @ (inv * (evecs.T @ rhs))


def kkt_solve_np(cfg: Config, gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status) -> np.ndarray:
    """``-H_FF^+ rhs_F`` per game (zero off F; any leading batch dims); raises or NaNs
    where ``status`` is not 0 (``cfg.on_degenerate``)."""
    status = np.asarray(status)
    if np.any(status == BAD_COTANGENT):
        raise ValueError("the cotangent (or tangent) of hybrid_nes.diff's output contains NaN or inf")
    dtype = np.asarray(alpha).dtype
    layout = gain_layout(cfg.shape, cfg.concept)
    num_players = len(cfg.shape)
    num_joint, num = layout.rows.shape[0], layout.num_constraints
    sigma = np.asarray(sigma, dtype=np.float64)
    batch_shape = sigma.shape[:-1]
    num_games = int(np.prod(batch_shape)) if batch_shape else 1
    gn = np.asarray(gn, dtype=np.float64).reshape(num_games, num_players, num_joint)
    sigma = sigma.reshape(num_games, num_joint)
    alpha = np.asarray(alpha, dtype=np.float64).reshape(num_games, num)
    free = np.asarray(free, dtype=bool).reshape(num_games, num)
    rhs = np.asarray(rhs, dtype=np.float64).reshape(num_games, num)
    eps_hat = np.asarray(eps_hat, dtype=np.float64).reshape(num_games, num_players)
    eps_plus = np.asarray(eps_plus, dtype=np.float64).reshape(num_games, num_players)
    status = status.reshape(num_games)
    out = np.zeros((num_games, num))
    values = np.empty(layout.rows.shape)
    mean = np.empty(num)
    ssum = np.empty(num_players)
    curv = np.empty(num_players)
    for b in range(num_games):
        code = int(status[b])
        one_sided = cfg.on_degenerate == "one_sided" and code in (DEGENERATE_ACTIVE_SET, FACE_CHANGE)
        if code != OK and not one_sided:
            if cfg.on_degenerate != "nan":
                raise DegenerateEquilibriumError(
                    f"no gradient at this equilibrium (status {code}): {STATUS_MESSAGES[code]}")
            out[b] = np.nan
            continue
        keep = free[b]
        num_free = int(keep.sum())
        if num_free == 0:
            continue
        pos = np.full(num, -1, dtype=np.int64)
        pos[keep] = np.arange(num_free)
        kn.gain_values_one(gn[b], layout.slot_player, layout.dev, values)
        kn.expected_gains_one(layout.rows, values, sigma[b], mean)
        kn.player_sums_one(alpha[b], layout.player, ssum)
        kn.curvature_one(ssum, eps_hat[b], eps_plus[b], float(cfg.rho), curv)
        hess = np.empty((num_free, num_free))
        kn.hessian_one(layout.rows, values, layout.player, sigma[b], mean, curv, pos, hess)
        out[b, keep] = -psd_solve(hess, np.ascontiguousarray(rhs[b, keep]))
    return out.reshape(batch_shape + (num,)).astype(dtype, copy=False)


def _linear_solve(cfg: Config, gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status):
    """``kkt_solve_np`` through ``pure_callback`` (``vmap`` batches it)."""
    return jax.pure_callback(
        functools.partial(kkt_solve_np, cfg), jax.ShapeDtypeStruct(alpha.shape, alpha.dtype),
        gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status, vmap_method="broadcast_all",
    )


def _poisoned(lam, *arrays):
    """``on_degenerate="nan"``: the solve is NaN on F; make every output NaN, not only some."""
    poison = jnp.where(jnp.any(jnp.isnan(lam)), jnp.nan, 0.0).astype(lam.dtype)
    return tuple(x + poison for x in arrays)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def implicit(cfg, gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status):
    """Identity on ``(sigma, alpha)``; its VJP w.r.t. the problem data is the implicit step."""
    del cfg, gn, base, eps_hat, eps_plus, free, support, status
    return sigma, alpha


def _implicit_fwd(cfg, gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status):
    return (sigma, alpha), (gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status)


def _implicit_bwd(cfg, res, cotangents):
    gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status = res
    v, w = cotangents
    finite = jnp.all(jnp.isfinite(v)) & jnp.all(jnp.isfinite(w))
    status = jnp.where(finite, status, jnp.int32(BAD_COTANGENT))

    def at(a, g_, b_, eh, ep):
        return sigma_and_gradient(cfg, a, g_, b_, eh, ep, support)

    (_, g0), vjp_alpha = jax.vjp(lambda a: at(a, gn, base, eps_hat, eps_plus), alpha)
    (r,) = vjp_alpha((v, jnp.zeros_like(g0)))
    r = jnp.where(free, r + w, 0.0)
    lam = jnp.where(free, _linear_solve(cfg, gn, sigma, alpha, free, r, eps_hat, eps_plus, status), 0.0)
    _, vjp_theta = jax.vjp(lambda g_, b_, eh, ep: at(alpha, g_, b_, eh, ep), gn, base, eps_hat, eps_plus)
    bars = _poisoned(lam, *vjp_theta((v, lam)))
    return (*bars, None, None, None, None, None)


implicit.defvjp(_implicit_fwd, _implicit_bwd)


def tangent(cfg: Config, theta, dtheta, sigma, alpha, free, support, status):
    """``(d sigma [|A|], d alpha [K])`` along ``dtheta`` (the forward-mode implicit step).

    ``theta, dtheta``: ``(gn, base, eps_hat, eps_plus)`` and their tangents.
    """
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(t)) for t in dtheta[:3]]))
    status = jnp.where(finite, status, jnp.int32(BAD_COTANGENT))

    def at(a, g_, b_, eh, ep):
        return sigma_and_gradient(cfg, a, g_, b_, eh, ep, support)

    _, (_, dg) = jax.jvp(lambda *t: at(alpha, *t), tuple(theta), tuple(dtheta))
    dg = jnp.where(free, dg, 0.0)
    gn, _, eps_hat, eps_plus = theta
    dalpha = jnp.where(free, _linear_solve(cfg, gn, sigma, alpha, free, dg, eps_hat, eps_plus, status), 0.0)
    _, (dsigma, _) = jax.jvp(at, (alpha, *theta), (dalpha, *dtheta))
    dsigma, dalpha = _poisoned(dalpha, dsigma, dalpha)
    return dsigma, dalpha
