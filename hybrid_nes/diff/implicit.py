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

from hybrid_nes.diff.linalg import free_hessian, psd_solve
from hybrid_nes.diff.problem import sigma_and_gradient
from hybrid_nes.diff.status import (
    BAD_COTANGENT,
    DEGENERATE_ACTIVE_SET,
    FACE_CHANGE,
    OK,
    ON_DEGENERATE,
    SKIP,
    STATUS_MESSAGES,
    Config,
    DegenerateEquilibriumError,
)
from solvers.face_cert import structure, touched
from solvers.gains import gain_layout

__all__ = ["implicit", "kkt_solve_np", "pack", "tangent"]

def pack(gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status, mode) -> jax.Array:
    """The inputs of ``kkt_solve_np`` as one array (``pure_callback`` converts each input
    separately): ``[N |A| + 2|A|... ]`` in the order of the arguments."""
    dtype = alpha.dtype
    return jnp.concatenate([gn.reshape(-1), sigma, alpha, free.astype(dtype), rhs, eps_hat, eps_plus,
                            status.astype(dtype)[None], mode.astype(dtype)[None]])


def kkt_solve_np(cfg: Config, packed) -> np.ndarray:
    """``-H_FF^+ rhs_F`` per game (zero off F; any leading batch dims) from ``pack``'s
    array; raises or NaNs where the status is not 0 (``on_degenerate``, packed)."""
    packed = np.asarray(packed)
    dtype = packed.dtype
    layout = gain_layout(cfg.shape, cfg.concept)
    num_players = len(cfg.shape)
    num_joint, num = layout.rows.shape[0], layout.num_constraints
    batch_shape = packed.shape[:-1]
    num_games = int(np.prod(batch_shape)) if batch_shape else 1
    packed = packed.reshape(num_games, -1).astype(np.float64)
    cuts = np.cumsum([num_players * num_joint, num_joint, num, num, num, num_players, num_players, 1])
    gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status, mode = np.split(packed, cuts, axis=1)
    status = status[:, 0].astype(np.int64)
    modes = [ON_DEGENERATE[int(m)] for m in mode[:, 0]]
    if np.any(status == BAD_COTANGENT):
        raise ValueError("the cotangent (or tangent) of hybrid_nes.diff's output contains NaN or inf")
    gn = gn.reshape(num_games, num_players, num_joint)
    free = free > 0.5
    st = structure(layout.rows, layout.dev, layout.slot_player, num)
    out = np.zeros((num_games, num))
    for b in range(num_games):
        code = int(status[b])
        if code == SKIP:
            continue
        one_sided = modes[b] == "one_sided" and code in (DEGENERATE_ACTIVE_SET, FACE_CHANGE)
        if code != OK and not one_sided:
            if modes[b] != "nan":
                raise DegenerateEquilibriumError(
                    f"no gradient at this equilibrium (status {code}): {STATUS_MESSAGES[code]}")
            out[b] = np.nan
            continue
        # Rows that touch no joint of the face (sigma = 0 on all their joints) have zero
        # rows in H: their part of the minimum-norm solution is 0 (as in the forward).
        keep = free[b] & touched(st, sigma[b] > 0.0)
        if not np.any(keep):
            continue
        hess = free_hessian(layout.rows, layout.slot_player, layout.dev, layout.player, cfg.rho,
                            np.ascontiguousarray(gn[b]), np.ascontiguousarray(sigma[b]),
                            np.ascontiguousarray(alpha[b]), np.ascontiguousarray(eps_hat[b]),
                            np.ascontiguousarray(eps_plus[b]), keep)
        out[b, keep] = -psd_solve(hess, np.ascontiguousarray(rhs[b, keep]))
    return out.reshape(batch_shape + (num,)).astype(dtype, copy=False)


def _linear_solve(cfg: Config, gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status, mode):
    """``kkt_solve_np`` through ``pure_callback`` (``vmap`` batches it)."""
    return jax.pure_callback(
        functools.partial(kkt_solve_np, cfg), jax.ShapeDtypeStruct(alpha.shape, alpha.dtype),
        pack(gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status, mode), vmap_method="broadcast_all",
    )


def _adjoint(cfg: Config, adjoint, gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status, mode, finite):
    """``-H_FF^+ rhs_F`` (zero off F): the forward's ``-H_FF^{-1}`` times ``rhs`` where it
    gave one (``flag``) at a differentiable point with a finite ``rhs``, else the callback
    (a singular block, or a status or cotangent for it to report). ``adjoint``:
    ``(flag, [K, K])`` or None."""
    status = jnp.where(finite, status, jnp.int32(BAD_COTANGENT))
    if adjoint is None:
        out = _linear_solve(cfg, gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status, mode)
    else:
        flag, matrix = adjoint
        fast = flag & (status == OK)
        # Under vmap the cond is a select and both branches run: the callback skips the
        # games the product serves.
        slow_status = jnp.where(fast, jnp.int32(SKIP), status)
        out = jax.lax.cond(
            fast, lambda r: matrix @ r,
            lambda r: _linear_solve(cfg, gn, sigma, alpha, free, r, eps_hat, eps_plus, slow_status, mode), rhs)
    return jnp.where(free, out, 0.0)


def _poisoned(lam, *arrays):
    """``on_degenerate="nan"``: the solve is NaN on F; make every output NaN, not only some."""
    poison = jnp.where(jnp.any(jnp.isnan(lam)), jnp.nan, 0.0).astype(lam.dtype)
    return tuple(x + poison for x in arrays)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def implicit(cfg, gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status, adjoint, mode):
    """Identity on ``(sigma, alpha)``; its VJP w.r.t. the problem data is the implicit step.

    ``adjoint``: the forward's ``(flag, -H_FF^{-1} [K, K])`` or None (``_adjoint``);
    ``mode``: int32, ``on_degenerate``'s index in ``ON_DEGENERATE``.
    """
    del cfg, gn, base, eps_hat, eps_plus, free, support, status, adjoint, mode
    return sigma, alpha


def _implicit_fwd(cfg, gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status, adjoint, mode):
    return (sigma, alpha), (gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status, adjoint, mode)


def _implicit_bwd(cfg, res, cotangents):
    gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status, adjoint, mode = res
    v, w = cotangents
    finite = jnp.all(jnp.isfinite(v)) & jnp.all(jnp.isfinite(w))

    def at(a, g_, b_, eh, ep):
        return sigma_and_gradient(cfg, a, g_, b_, eh, ep, support)

    (_, g0), vjp_alpha = jax.vjp(lambda a: at(a, gn, base, eps_hat, eps_plus), alpha)
    (r,) = vjp_alpha((v, jnp.zeros_like(g0)))
    r = jnp.where(free, r + w, 0.0)
    lam = _adjoint(cfg, adjoint, gn, sigma, alpha, free, r, eps_hat, eps_plus, status, mode, finite)
    _, vjp_theta = jax.vjp(lambda g_, b_, eh, ep: at(alpha, g_, b_, eh, ep), gn, base, eps_hat, eps_plus)
    bars = _poisoned(lam, *vjp_theta((v, lam)))
    return (*bars, None, None, None, None, None, None, None)


implicit.defvjp(_implicit_fwd, _implicit_bwd)


def tangent(cfg: Config, theta, dtheta, sigma, alpha, free, support, status, adjoint, mode):
    """``(d sigma [|A|], d alpha [K])`` along ``dtheta`` (the forward-mode implicit step).

    ``theta, dtheta``: ``(gn, base, eps_hat, eps_plus)`` and their tangents; ``adjoint`` as
    ``implicit``.
    """
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(t)) for t in dtheta[:3]]))

    def at(a, g_, b_, eh, ep):
        return sigma_and_gradient(cfg, a, g_, b_, eh, ep, support)

    _, (_, dg) = jax.jvp(lambda *t: at(alpha, *t), tuple(theta), tuple(dtheta))
    dg = jnp.where(free, dg, 0.0)
    gn, _, eps_hat, eps_plus = theta
    dalpha = _adjoint(cfg, adjoint, gn, sigma, alpha, free, dg, eps_hat, eps_plus, status, mode, finite)
    _, (dsigma, _) = jax.jvp(at, (alpha, *theta), (dalpha, *dtheta))
    dsigma, dalpha = _poisoned(dalpha, dsigma, dalpha)
    return dsigma, dalpha
