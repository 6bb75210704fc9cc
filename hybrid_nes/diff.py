"""Differentiable equilibria: exact gradients of ME/MRE/MW (C)CEs in JAX (DESIGN §9).

``solve(payoffs, concept, selection, ...)`` returns the selected (C)CE as JAX arrays,
differentiable with respect to the payoffs and the selection's array parameters (the
MRE ``target``, the MWME ``welfare``, the welfare weight ``mu`` and ``eps_hat``).

Forward: the exact solver (``solvers.api.refine_batch``, the batched core behind
``solvers.solve`` / ``solve_batch``: damped projected Newton, facial reduction, CVXPY
polish) runs inside ``jax.pure_callback`` in float64 on the payoffs normalised in NumPy
exactly as ``solvers.solve`` normalises them. ``jax.vmap`` batches the callback
(``vmap_method="broadcast_all"``): a batch of games is one call of the batched solver.

Backward (``jax.custom_vjp``): the implicit-function theorem on the KKT system of the
free duals (DESIGN §9). At the optimum the free rows ``F`` (positive duals, and on a
face of the simplex also the implicit equalities ``E``, sign-free) satisfy
``g_F(alpha_F; theta) = 0`` with ``g = eps - E_sigma[gains]`` and the other duals stay
0; joint actions off the face's support keep probability 0. For cotangents ``v`` (joint)
and ``w`` (duals):

    r      = (d sigma / d alpha)^T v + w                     (restricted to F, JAX vjp)
    lambda = -H_FF^+ r                                       (one symmetric solve, NumPy)
    theta_bar = (d sigma / d theta)^T v + (d g_F / d theta)^T lambda   (JAX vjp)

with ``H_FF = Cov_sigma(gains_F)`` (+ the soft-constraint term), built from the ELL
layout and solved by Cholesky, or, when redundant rows make it singular (faces), by
iterated Tikhonov to the minimum-norm (pseudo-inverse) solution: ``d sigma`` is still
unique. ``theta`` is the normalised game and the resolved selection; the normalisation
(DESIGN §5) and the resolution (welfare, target, eps_hat scaling) are written in JAX, so
the chain rule covers them and gradients are in the user's payoff units. No gradient
comes from unrolled iterations.

Degenerate points (the map is not differentiable there) are reported, never silently
differentiated: ``DiffSolution.status`` is non-zero and the backward pass raises
``DegenerateEquilibriumError`` (``on_degenerate="raise"``, default) or returns NaN
(``"nan"``); ``"one_sided"`` opts in to a one-sided derivative there (gradient descent
across active-set changes). See ``STATUS_MESSAGES``.

Precision: the solve and the linear solve are float64 whatever JAX's mode. With
``jax_enable_x64`` off the inputs arrive as float32 (the payoffs are re-normalised in
float64 in the callback), the outputs are cast to float32, and the JAX part of the
backward pass runs in float32: expect gradients to ~1e-5 relative. Use float64 for
gradient checks, through the global flag ``jax.config.update("jax_enable_x64", True)``:
the ``jax.enable_x64`` context manager is thread-local, the callbacks run on XLA's
threads, and JAX 0.10.2 then casts their float64 results to float32 and rejects them
("Incorrect output dtype") once calls dispatch asynchronously.

Not differentiable here: Max Gini ("mg", a QP without this dual), ``rho``/``eps_plus``
(static), and higher-order derivatives (the backward pass calls NumPy).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numba
import numpy as np

from solvers.dual import DualProblem
from solvers.face import minimal_face
from solvers.gains import check_concept, gain_layout, gain_values_batch
from solvers.game import CONSTANT_ULPS, normalise_batch
from solvers.newton import cholesky_solve
from solvers.refine import refine_batch
from solvers.selection import DEFAULT_STRENGTH_WEIGHT, DEFAULT_WELFARE_WEIGHT, SelectionParams
from solvers.solution import Status

__all__ = [
    "DEGENERATE_ACTIVE_SET",
    "DIFF_PRESETS",
    "FACE_CHANGE",
    "INCONSISTENT",
    "INFEASIBLE",
    "NOT_OPTIMAL",
    "OK",
    "ON_DEGENERATE",
    "STATUS_MESSAGES",
    "DegenerateEquilibriumError",
    "DiffSolution",
    "describe",
    "solve",
]

#: Presets with gradients. "mg" (Max Gini) is a QP outside the entropy dual: no gradient.
DIFF_PRESETS: tuple[str, ...] = ("me", "mre", "mw", "mwme", "ms")

#: What the backward pass does at a degenerate point (``solve(on_degenerate=...)``).
ON_DEGENERATE: tuple[str, ...] = ("raise", "nan", "one_sided")

OK = 0
NOT_OPTIMAL = 1
DEGENERATE_ACTIVE_SET = 2
FACE_CHANGE = 3
INFEASIBLE = 4
INCONSISTENT = 5

#: ``DiffSolution.status`` codes and what they mean.
STATUS_MESSAGES: dict[int, str] = {
    OK: "ok: strictly complementary optimum, differentiable",
    NOT_OPTIMAL: "the exact solver did not certify an optimum within tol (no gradient at an inexact point)",
    DEGENERATE_ACTIVE_SET: (
        "degenerate active set: a constraint has dual ~ 0 and is ~ tight (within degenerate_tol); "
        "the equilibrium is not differentiable there (one-sided derivatives differ)"
    ),
    FACE_CHANGE: (
        "face change within tolerance: a perturbation of the payoffs of relative size face_tol "
        "changes the minimal face (support or implicit equalities) of the (C)CE polytope"
    ),
    INFEASIBLE: "no joint satisfies the constraints (eps_hat too small): nothing to differentiate",
    INCONSISTENT: "the solver's duals do not reproduce its joint (polished answer): no exact KKT point",
}


class DegenerateEquilibriumError(ValueError):
    """The equilibrium is not differentiable at this point (see ``STATUS_MESSAGES``)."""


class DiffSolution(NamedTuple):
    """A selected (C)CE as JAX arrays.

    Attributes:
      joint: ``[A1..AN]`` the joint distribution (differentiable).
      marginals: tuple of N ``[A_p]`` marginals (differentiable).
      duals: ``[K]`` duals in payoff units, flat layout of ``solvers.gains``
        (differentiable). On a face of the simplex these are the face's own duals
        (sign-free on the implicit equalities), not the lifted ``Solution.duals``.
      status: int32 scalar, 0 when differentiable (``STATUS_MESSAGES``).
      free: ``[K]`` bool, the rows held at equality by the implicit step.
      support: ``[A1..AN]`` bool, the joint actions of the face (all True in the interior).
    """

    joint: jax.Array
    marginals: tuple[jax.Array, ...]
    duals: jax.Array
    status: jax.Array
    free: jax.Array
    support: jax.Array


@dataclass(frozen=True)
class _Config:
    concept: str
    shape: tuple[int, ...]
    rho: float
    tol: float
    max_iter: int | None
    degenerate_tol: float
    face_tol: float
    on_degenerate: str

    @property
    def hard(self) -> bool:
        return math.isinf(self.rho)


# ---------------------------------------------------------------------------------------
# The problem in JAX: normalisation, selection, joint and dual gradient at fixed duals.
# ---------------------------------------------------------------------------------------
#: Hard constraints: a certified joint with an action below this mass gets the face LP.
FACE_MASS = 1e-8
_EPS = float(np.finfo(np.float64).eps)  # as solvers.game: the forward solve is float64


def _normalise(payoffs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(normalised [N, |A|], scale [N])`` as ``solvers.game.normalise_batch``, in JAX.

    The same steps and constant-player rule (``CONSTANT_ULPS``): centre on the midrange
    ``c``, divide by the largest deviation ``r``, then centre on the mean and put on the
    sphere. ``c`` and ``r`` are held constant in the derivative: the normalised payoffs do
    not depend on them, and ``scale = sqrt(|A|) / (||e|| r) = sqrt(|A|) / ||G_p - mean||``
    for any ``r``, so the gradient is that of the plain formula.
    """
    num_players = payoffs.shape[0]
    flat = payoffs.reshape(num_players, -1)
    num_joint = flat.shape[1]
    fixed = jax.lax.stop_gradient(flat)
    hi, lo = fixed.max(axis=1), fixed.min(axis=1)
    top = jnp.maximum(jnp.abs(hi), jnp.abs(lo))
    dev_fixed = fixed - (0.5 * hi + 0.5 * lo)[:, None]
    radius = jnp.abs(dev_fixed).max(axis=1)
    tiny = ((0.5 * hi - 0.5 * lo) <= (0.5 * CONSTANT_ULPS * _EPS) * top) | (radius == 0.0)
    safe_radius = jnp.where(tiny, 1.0, radius)
    unit = (flat - (0.5 * hi + 0.5 * lo)[:, None]) / safe_radius[:, None]
    centred = unit - unit.mean(axis=1, keepdims=True)
    sq = jnp.sum(centred * centred, axis=1)
    tiny = tiny | (jax.lax.stop_gradient(sq) == 0.0)
    norm = jnp.sqrt(jnp.where(tiny, 1.0, sq))
    scale = jnp.where(tiny, 1.0, math.sqrt(num_joint) / norm / safe_radius)
    return jnp.where(tiny[:, None], 0.0, centred * (math.sqrt(num_joint) / norm)[:, None]), scale


def _sigma_and_gradient(alpha, gn, base, eps_hat, eps_plus, support, layout, cfg: _Config):
    """``(sigma [|A|], g [K])`` at fixed duals: the joint and the dual gradient (DESIGN §4)."""
    rows = jnp.asarray(layout.rows, dtype=jnp.int32)
    sp = jnp.asarray(layout.slot_player, dtype=jnp.int32)
    values = gn[sp[None, :], jnp.asarray(layout.dev, dtype=jnp.int32)] - gn[sp, :].T  # [|A|, c]
    lg = base - jnp.sum(values * alpha[rows], axis=1)
    lg = jnp.where(support, lg, -jnp.inf)
    sigma = jax.nn.softmax(lg)
    num = layout.player.shape[0]
    expected = jax.ops.segment_sum((values * sigma[:, None]).reshape(-1), rows.reshape(-1), num_segments=num)
    player = jnp.asarray(layout.player, dtype=jnp.int32)
    if cfg.hard:
        eps = eps_hat
    else:
        s = jax.ops.segment_sum(alpha, player, num_segments=len(cfg.shape))
        eps = eps_plus - (eps_plus - eps_hat) * jnp.exp(-s / cfg.rho)
    return sigma, eps[player] - expected


# ---------------------------------------------------------------------------------------
# NumPy callbacks: the forward solve and the linear solve of the backward pass.
# ---------------------------------------------------------------------------------------
def _lead(batch_shape: tuple[int, ...]) -> int:
    return int(np.prod(batch_shape)) if batch_shape else 1


@numba.njit(cache=True)
def _free_covariance(rows, values, sigma, pos, num_free):
    """``Cov_sigma(M_F)`` ``[|F|, |F|]`` straight from the ELL layout (one game).

    ``pos[k]`` is row k's index in F (-1 off F). ``O(|A| c^2)``, single-threaded: a dense
    ``M_F diag(sigma) M_F^T`` GEMM took ~60 ms at 32x32 CE inside the callback on the
    loaded CPU (BLAS threads competing with XLA's)."""
    hess = np.zeros((num_free, num_free))
    mean = np.zeros(num_free)
    width = rows.shape[1]
    for a in range(rows.shape[0]):
        weight = sigma[a]
        if weight == 0.0:
            continue
        for i in range(width):
            pi = pos[rows[a, i]]
            if pi < 0:
                continue
            wi = weight * values[a, i]
            mean[pi] += wi
            for j in range(width):
                pj = pos[rows[a, j]]
                if pj >= 0:
                    hess[pi, pj] += wi * values[a, j]
    for i in range(num_free):
        for j in range(num_free):
            hess[i, j] -= mean[i] * mean[j]
    return hess


def _classify(values, rows, player, sigma, alpha, eps_row, equalities, dtol):
    """``(free [K], degenerate?)``: rows held at equality and whether one is ambiguous."""
    num = player.shape[0]
    expected = np.bincount(rows.reshape(-1), weights=(values * sigma[:, None]).reshape(-1), minlength=num)
    g = eps_row - expected
    active = ~equalities & (alpha > dtol)
    inactive = ~equalities & (alpha <= dtol) & (g > dtol)
    free = equalities | active
    return free, bool(np.any(~free & ~inactive))


def _face_changes(problem: DualProblem, payoffs: np.ndarray, concept: str, support, equalities,
                  face_tol: float) -> bool:
    """True when the minimal face moves under a +/- random perturbation of the (normalised)
    payoffs of relative size ``face_tol`` (two LPs)."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(payoffs.shape)
    noise *= face_tol * np.linalg.norm(payoffs) / max(np.linalg.norm(noise), 1e-300)
    for sign in (1.0, -1.0):
        values = gain_values_batch((payoffs + sign * noise)[None], concept)[0]
        try:
            fc = minimal_face(problem._replace(values=values))
        except RuntimeError:
            return True
        if not fc.feasible or np.any(fc.support != support) or np.any(fc.equalities != equalities):
            return True
    return False


def _forward_np(cfg: _Config, payoffs, base, eps_hat, eps_plus):
    """Batched exact solve. Inputs carry any leading batch dims (``broadcast_all``)."""
    payoffs = np.asarray(payoffs, dtype=np.float64)
    for name, value in (("payoffs", payoffs), ("selection parameters (target, welfare, mu, eps_hat)", base),
                        ("eps_hat", eps_hat)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"hybrid_nes.diff.solve: {name} contain NaN or inf")
    batch_shape = payoffs.shape[: payoffs.ndim - len(cfg.shape) - 1]
    num_games = _lead(batch_shape)
    num_players = len(cfg.shape)
    layout = gain_layout(cfg.shape, cfg.concept)
    num_joint = layout.rows.shape[0]
    num = layout.num_constraints
    games = payoffs.reshape((num_games, num_players) + cfg.shape)
    base = np.asarray(base, dtype=np.float64).reshape(num_games, num_joint)
    eps_hat = np.asarray(eps_hat, dtype=np.float64).reshape(num_games, num_players)
    eps_plus = np.asarray(eps_plus, dtype=np.float64).reshape(num_games, num_players)
    norm = normalise_batch(games)
    params = SelectionParams(base, eps_hat, eps_plus, float(cfg.rho), "entropy")
    # Serial kernels: Numba's parallel layer, entered from XLA's callback thread, crashed
    # (segfault) in jax.vmap(jax.grad(...)) of a 3-game batch.
    res = refine_batch(norm.payoffs, cfg.concept, params, None, "auto", cfg.tol, cfg.max_iter,
                       face="auto", polish=True, parallel=False)
    values = gain_values_batch(norm.payoffs, cfg.concept)
    joint_all = res.joint.reshape(num_games, num_joint)
    alpha_all = np.where(res.face[:, None], res.restricted_alpha, res.alpha)
    on_face = np.array(res.face, dtype=bool)
    statuses = list(res.status)
    faces: dict[int, Any] = {}  # the LP depends on the gains and eps_hat only: computed once
    if cfg.hard:
        # Newton may certify a face optimum without facial reduction, its duals drifting
        # towards infinity (8x8 ME-CE: masses of 1e-77). The implicit step needs the face:
        # where a joint action is nearly unplayed, ask the LP and re-solve on the face.
        near = [b for b in range(num_games) if statuses[b] is Status.OPTIMAL and not on_face[b]
                and joint_all[b].min() < FACE_MASS]
        redo = []
        for b in near:
            problem = DualProblem(layout.rows, values[b], layout.player, base[b], eps_hat[b], eps_plus[b],
                                  float(cfg.rho), np.zeros(num, dtype=bool))
            faces[b] = minimal_face(problem)
            if not np.all(faces[b].support):
                redo.append(b)
        if redo:
            idx = np.asarray(redo)
            sub = SelectionParams(base[idx], eps_hat[idx], eps_plus[idx], float(cfg.rho), "entropy")
            res2 = refine_batch(norm.payoffs[idx], cfg.concept, sub, None, "auto", cfg.tol, cfg.max_iter,
                                face="always", polish=True, parallel=False)
            for j, b in enumerate(redo):
                joint_all[b] = res2.joint[j].reshape(-1)
                alpha_all[b] = res2.restricted_alpha[j] if res2.face[j] else res2.alpha[j]
                on_face[b] = bool(res2.face[j])
                statuses[b] = res2.status[j]
    sigma_out = np.zeros((num_games, num_joint))
    alpha_out = np.zeros((num_games, num))
    free_out = np.zeros((num_games, num), dtype=bool)
    support_out = np.ones((num_games, num_joint), dtype=bool)
    status_out = np.zeros(num_games, dtype=np.int32)
    for b in range(num_games):
        sigma = joint_all[b]
        sigma_out[b] = sigma
        if statuses[b] is Status.INFEASIBLE:
            status_out[b] = INFEASIBLE
            continue
        if statuses[b] is not Status.OPTIMAL:
            status_out[b] = NOT_OPTIMAL
            continue
        problem = DualProblem(layout.rows, values[b], layout.player, base[b], eps_hat[b], eps_plus[b],
                              float(cfg.rho), np.zeros(num, dtype=bool))
        equalities = np.zeros(num, dtype=bool)
        support = np.ones(num_joint, dtype=bool)
        alpha = alpha_all[b]
        if on_face[b]:
            fc = faces[b] if b in faces else minimal_face(problem)
            support, equalities = fc.support, fc.equalities
            if cfg.face_tol > 0 and _face_changes(problem, norm.payoffs[b], cfg.concept, support, equalities, cfg.face_tol):
                status_out[b] = FACE_CHANGE
        alpha_out[b] = alpha
        support_out[b] = support
        # The duals must reproduce the joint (the KKT point the implicit step linearises).
        lg = np.where(support, base[b] - np.bincount(
            np.repeat(np.arange(num_joint), layout.rows.shape[1]),
            weights=(values[b] * alpha[layout.rows]).reshape(-1), minlength=num_joint), -np.inf)
        recomputed = np.exp(lg - lg.max())
        recomputed /= recomputed.sum()
        if np.max(np.abs(recomputed - sigma)) > max(1e3 * cfg.tol, 1e-8):
            status_out[b] = INCONSISTENT
            continue
        if cfg.hard:
            eps_now = eps_hat[b]
        else:
            s = np.bincount(layout.player, weights=alpha, minlength=num_players)
            eps_now = eps_plus[b] - (eps_plus[b] - eps_hat[b]) * np.exp(-s / cfg.rho)
        free, degenerate = _classify(values[b], layout.rows, layout.player, sigma, alpha,
                                     eps_now[layout.player], equalities, cfg.degenerate_tol)
        free_out[b] = free
        if degenerate and status_out[b] == OK:
            status_out[b] = DEGENERATE_ACTIVE_SET
    out_shape = batch_shape
    return (sigma_out.reshape(out_shape + (num_joint,)), alpha_out.reshape(out_shape + (num,)),
            free_out.reshape(out_shape + (num,)), support_out.reshape(out_shape + (num_joint,)),
            status_out.reshape(out_shape))


#: ``_psd_solve`` takes the Cholesky solve when the smallest pivot ratio is above this.
CHOLESKY_MIN_PIVOT = 1e-8
#: Iterated Tikhonov for a singular adjoint system: ``delta`` relative to max diag, steps.
TIKHONOV_DELTA = 1e-11
TIKHONOV_STEPS = 8


def _psd_solve(hess: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``hess^+ rhs`` for a PSD ``hess`` and ``rhs`` in its range (the adjoint system is
    consistent: DESIGN §9).

    Cholesky (the solvers' single-threaded Numba one) when well conditioned; else
    iterated Tikhonov, ``x <- x + (hess + delta I)^{-1} (rhs - hess x)`` from 0, which
    converges to the minimum-norm solution (each step shrinks the error along an
    eigenvalue ``l`` by ``delta / (l + delta)``; null directions stay 0). Redundant rows
    (faces) make ``hess`` singular. LAPACK's ``eigh``/``cholesky`` inside the callback took
    0.04-1.4 s (8x8 to 32x32 CE) on the loaded 2-core CPU, their BLAS threads competing
    with XLA's; the eigendecomposition pseudo-inverse is only the last resort.
    """
    n = hess.shape[0]
    hess = np.ascontiguousarray(hess)
    rhs = np.ascontiguousarray(rhs)
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


def _adjoint_np(cfg: _Config, gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status):
    """``lambda = -H_FF^+ rhs_F`` per game (zero off F); raises or NaNs on a bad status."""
    layout = gain_layout(cfg.shape, cfg.concept)
    num_players = len(cfg.shape)
    num_joint = layout.rows.shape[0]
    num = layout.num_constraints
    sigma = np.asarray(sigma, dtype=np.float64)
    batch_shape = sigma.shape[:-1]
    num_games = _lead(batch_shape)
    gn = np.asarray(gn, dtype=np.float64).reshape((num_games, num_players) + cfg.shape)
    sigma = sigma.reshape(num_games, num_joint)
    alpha = np.asarray(alpha, dtype=np.float64).reshape(num_games, num)
    free = np.asarray(free, dtype=bool).reshape(num_games, num)
    rhs = np.asarray(rhs, dtype=np.float64).reshape(num_games, num)
    eps_hat = np.asarray(eps_hat, dtype=np.float64).reshape(num_games, num_players)
    eps_plus = np.asarray(eps_plus, dtype=np.float64).reshape(num_games, num_players)
    status = np.asarray(status).reshape(num_games)
    values = gain_values_batch(gn, cfg.concept)
    out = np.zeros((num_games, num))
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
        if not np.any(keep):
            continue
        pos = np.full(num, -1, dtype=np.int64)
        pos[keep] = np.arange(int(keep.sum()))
        hess = _free_covariance(layout.rows, values[b], sigma[b], pos, int(keep.sum()))
        if not cfg.hard:
            s = np.bincount(layout.player, weights=alpha[b], minlength=num_players)
            curv = (eps_plus[b] - eps_hat[b]) / cfg.rho * np.exp(-s / cfg.rho)
            pk = layout.player[keep]
            hess = hess + (pk[:, None] == pk[None, :]) * curv[pk][:, None]
        out[b, keep] = -_psd_solve(hess, rhs[b, keep])
    return out.reshape(batch_shape + (num,))


# ---------------------------------------------------------------------------------------
# The custom VJP.
# ---------------------------------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _implicit(cfg, gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status):
    """Identity on ``(sigma, alpha)``; its VJP w.r.t. the problem data is the implicit step."""
    del cfg, gn, base, eps_hat, eps_plus, free, support, status
    return sigma, alpha


def _implicit_fwd(cfg, gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status):
    return (sigma, alpha), (gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status)


def _implicit_bwd(cfg, res, cotangents):
    gn, base, eps_hat, eps_plus, sigma, alpha, free, support, status = res
    v, w = cotangents
    layout = gain_layout(cfg.shape, cfg.concept)
    finite = jnp.all(jnp.isfinite(v)) & jnp.all(jnp.isfinite(w))
    status = jnp.where(finite, status, jnp.int32(-1))

    def at(a, g_, b_, eh, ep):
        return _sigma_and_gradient(a, g_, b_, eh, ep, support, layout, cfg)

    (_, g0), vjp_alpha = jax.vjp(lambda a: at(a, gn, base, eps_hat, eps_plus), alpha)
    (r,) = vjp_alpha((v, jnp.zeros_like(g0)))
    r = jnp.where(free, r + w, 0.0)
    lam = jax.pure_callback(
        functools.partial(_adjoint_checked, cfg),
        jax.ShapeDtypeStruct(alpha.shape, alpha.dtype),
        gn, sigma, alpha, free, r, eps_hat, eps_plus, status,
        vmap_method="broadcast_all",
    )
    lam = jnp.where(free, lam, 0.0)
    _, vjp_theta = jax.vjp(lambda g_, b_, eh, ep: at(alpha, g_, b_, eh, ep), gn, base, eps_hat, eps_plus)
    gbar, bbar, ehbar, epbar = vjp_theta((v, lam))
    # on_degenerate="nan": the adjoint is NaN on F; make every cotangent NaN, not only some.
    poison = jnp.where(jnp.any(jnp.isnan(lam)), jnp.nan, 0.0).astype(gbar.dtype)
    gbar, bbar, ehbar, epbar = (x + poison for x in (gbar, bbar, ehbar, epbar))
    return gbar, bbar, ehbar, epbar, None, None, None, None, None


def _adjoint_checked(cfg, gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status):
    status_np = np.asarray(status)
    if np.any(status_np == -1):
        raise ValueError("the cotangent of hybrid_nes.diff.solve's output contains NaN or inf")
    return _adjoint_np(cfg, gn, sigma, alpha, free, rhs, eps_hat, eps_plus, status_np).astype(np.asarray(alpha).dtype)


_implicit.defvjp(_implicit_fwd, _implicit_bwd)


# ---------------------------------------------------------------------------------------
# The public entry.
# ---------------------------------------------------------------------------------------
def _as_float_array(value: Any, name: str) -> jax.Array:
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a real array, got {value!r}")
    try:
        array = jnp.asarray(value)
    except TypeError as err:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}") from err
    if not (jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)
            or array.dtype == jnp.bool_):
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    return array.astype(jnp.result_type(float))


def _static_float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError) as err:
        raise TypeError(f"{name} must be a Python float (it is static: no gradient), got {value!r}") from err


def _check_concrete(cond_fn, array: jax.Array, message: str) -> None:
    """Value checks where the value is concrete (skipped under tracing)."""
    try:
        concrete = np.asarray(array)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if not cond_fn(concrete):
        raise ValueError(message)


def solve(
    payoffs: Any,
    concept: str = "cce",
    selection: str = "me",
    *,
    target: Any = None,
    welfare: Any = None,
    mu: Any = None,
    eps_hat: Any = 0.0,
    eps_plus: float | None = None,
    rho: float | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    degenerate_tol: float = 1e-7,
    face_tol: float = 1e-6,
    on_degenerate: str = "raise",
) -> DiffSolution:
    """The selected (C)CE of one game, differentiable (use ``jax.vmap`` for batches).

    Args:
      payoffs: ``[N, A1..AN]`` payoffs (differentiable).
      concept: "cce" or "ce".
      selection: "me", "mre" (needs ``target``), "mw" (utilitarian welfare), "mwme"
        (needs ``welfare``) or "ms" (maximum strength, soft constraints). "mg" has no
        gradient (ValueError).
      target: ``[A1..AN]`` full-support target joint (MRE; differentiable; normalised to
        sum 1 as ``solvers`` does).
      welfare: ``[A1..AN]`` welfare tensor (MWME; differentiable; centred and scaled as
        ``solvers`` does).
      mu: welfare weight (MW/MWME; differentiable; default ``DEFAULT_WELFARE_WEIGHT``).
      eps_hat: target approximation, scalar or ``[N]``, payoff units (differentiable;
        hard constraints and soft ones alike).
      eps_plus, rho: soft constraints (static floats): ``rho=None`` is hard constraints
        except for "ms" (``DEFAULT_STRENGTH_WEIGHT``).
      tol: the exact solver's tolerance (normalised units).
      max_iter: the exact solver's iteration cap per pass.
      degenerate_tol: a row with dual and constraint slack both below it (normalised
        units) makes the point degenerate.
      face_tol: on a face of the simplex, the relative size of the payoff perturbation
        that must leave the minimal face unchanged (0 skips the check: two LPs).
      on_degenerate: what the backward pass does where ``status`` is not 0: "raise"
        (``DegenerateEquilibriumError``), "nan" (NaN gradients), or "one_sided" (an
        explicit opt-in for optimisation loops that cross active-set or face changes: at a
        degenerate active set or face change, differentiate with the active set and face
        as found, rows that are ~tight with ~0 dual held at 0: one of the one-sided
        derivatives; other statuses still raise). The forward pass never raises on
        degeneracy: see ``status``.

    Returns:
      A ``DiffSolution`` of JAX arrays (float64 with x64 enabled, else float32).

    Raises:
      TypeError, ValueError: bad payoffs, concept, selection or parameters.
    """
    concept = check_concept(concept)
    if not isinstance(selection, str):
        raise TypeError(f"selection must be a preset name {DIFF_PRESETS}, got {selection!r}")
    preset = selection.lower()
    if preset == "mg":
        raise ValueError("Max Gini ('mg') has no gradient here: it is a QP outside the entropy dual; "
                         f"use one of {DIFF_PRESETS}")
    if preset not in DIFF_PRESETS:
        raise ValueError(f"unknown selection preset {selection!r}; expected one of {DIFF_PRESETS}")
    if on_degenerate not in ON_DEGENERATE:
        raise ValueError(f"on_degenerate must be one of {ON_DEGENERATE}, got {on_degenerate!r}")
    payoffs = _as_float_array(payoffs, "payoffs")
    if payoffs.ndim < 3 or payoffs.ndim != payoffs.shape[0] + 1 or min(payoffs.shape[1:]) < 1:
        raise ValueError(f"payoffs must have shape [N, A1..AN] with N >= 2 players, got {payoffs.shape}")
    _check_concrete(lambda a: np.all(np.isfinite(a)), payoffs, "payoffs contain NaN or inf")
    shape = tuple(int(n) for n in payoffs.shape[1:])
    num_players = len(shape)

    if preset == "mre" and target is None:
        raise ValueError("the 'mre' preset needs a target joint (target=...)")
    if preset == "mwme" and welfare is None:
        raise ValueError("the 'mwme' preset needs a welfare tensor (welfare=...)")
    if target is not None and preset != "mre":
        raise ValueError(f"target is a parameter of 'mre', not {preset!r}")
    if welfare is not None and preset != "mwme":
        raise ValueError(f"welfare is a parameter of 'mwme', not {preset!r}")
    if mu is not None and preset not in ("mw", "mwme"):
        raise ValueError(f"mu is a parameter of 'mw'/'mwme', not {preset!r}")
    if rho is None:
        rho_f = DEFAULT_STRENGTH_WEIGHT if preset == "ms" else math.inf
    else:
        rho_f = _static_float(rho, "rho")
    if not rho_f > 0:
        raise ValueError(f"rho must be > 0 (inf for hard constraints), got {rho_f}")
    if preset == "ms" and math.isinf(rho_f):
        raise ValueError("'ms' (Maximum Strength) needs a finite rho")
    tol = _static_float(tol, "tol")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    degenerate_tol = _static_float(degenerate_tol, "degenerate_tol")
    face_tol = _static_float(face_tol, "face_tol")
    if degenerate_tol < 0 or face_tol < 0:
        raise ValueError("degenerate_tol and face_tol must be >= 0")

    t = wa = mu_a = eh = None
    if target is not None:
        t = _as_float_array(target, "target")
        if t.shape != shape:
            raise ValueError(f"target has shape {t.shape}; the game's joint shape is {shape}")
        _check_concrete(lambda a: np.all(np.isfinite(a)) and np.all(a > 0), t,
                        "target must be finite with full support (every entry > 0)")
        _check_concrete(lambda a: abs(a.sum() - 1.0) <= 1e-6, t, "target must sum to 1")
    if preset in ("mw", "mwme"):
        mu_a = _as_float_array(DEFAULT_WELFARE_WEIGHT if mu is None else mu, "mu")
        if mu_a.ndim != 0:
            raise ValueError(f"mu must be a scalar, got shape {mu_a.shape}")
        _check_concrete(lambda a: np.isfinite(a) and a >= 0, mu_a, "mu must be finite and >= 0")
    if welfare is not None:
        wa = _as_float_array(welfare, "welfare")
        if wa.shape != shape:
            raise ValueError(f"welfare has shape {wa.shape}; the game's joint shape is {shape}")
        _check_concrete(lambda a: np.all(np.isfinite(a)), wa, "welfare contains NaN or inf")
    hard = math.isinf(rho_f)
    plus = None if (hard or eps_plus is None) else tuple(
        np.broadcast_to(_static_float_vector(eps_plus, num_players), (num_players,)).tolist())
    if preset != "ms":
        eh = _as_float_array(eps_hat, "eps_hat")
        if eh.ndim > 1 or (eh.ndim == 1 and eh.shape != (num_players,)):
            raise ValueError(f"eps_hat must be a scalar or [{num_players}], got shape {eh.shape}")
        _check_concrete(lambda a: np.all(np.isfinite(a)), eh, "eps_hat must be finite")
    cfg = _Config(concept, shape, rho_f, tol, max_iter, degenerate_tol, face_tol, on_degenerate)
    args = (cfg, preset, plus, payoffs, t, wa, mu_a, eh)
    if any(_under_vmap(x) for x in jax.tree_util.tree_leaves(args[3:])):
        # Eager jax.vmap(jax.grad(...)) through the compiled core segfaulted in JAX 0.10.2
        # (jit(vmap(grad)) and vmap of the forward did not); under vmap trace it inline.
        return _solve_traced(*args)
    return _solve_core(*args)


def _under_vmap(x: Any) -> bool:
    """True when ``x`` is (or wraps, through JVP/linearize tracers) a ``jax.vmap`` tracer."""
    for _ in range(64):
        if not isinstance(x, jax.core.Tracer):
            return False
        if type(x).__name__ == "BatchTracer":
            return True
        x = getattr(x, "primal", getattr(x, "val", None))
    return False


def _solve_traced(cfg: _Config, preset: str, plus, payoffs, target, welfare, mu, eps_hat) -> DiffSolution:
    """The traced part of ``solve`` (compiled once per shape and static configuration)."""
    shape = cfg.shape
    num_players = len(shape)
    num_joint = int(np.prod(shape))
    z2 = math.sqrt(num_joint)
    gn, scale = _normalise(payoffs)
    # Base logits (DESIGN §3, as solvers.selection.resolve_selection).
    if target is not None:
        flat_t = target.reshape(-1)
        base = jnp.log(flat_t / flat_t.sum())
    else:
        base = jnp.full((num_joint,), -math.log(num_joint), dtype=gn.dtype)
    if mu is not None:
        if welfare is None:
            w = gn.sum(axis=0)
        else:
            w = welfare.reshape(-1) - welfare.mean()
            wsq = jnp.sum(w * w)
            tiny = jax.lax.stop_gradient(wsq) <= 1e-24
            w = jnp.where(tiny, 0.0, w * (z2 / jnp.sqrt(jnp.where(tiny, 1.0, wsq))))
        base = base + mu * w
    if cfg.hard:
        eps_plus_n = jnp.full((num_players,), jnp.inf, dtype=gn.dtype)
    elif plus is None:
        eps_plus_n = jnp.full((num_players,), 2.0 * z2, dtype=gn.dtype)
    else:
        eps_plus_n = jnp.asarray(plus, dtype=gn.dtype) * scale
    if preset == "ms":
        eps_hat_n = -eps_plus_n
    else:
        eps_hat_n = jnp.clip(jnp.broadcast_to(eps_hat, (num_players,)) * scale, -z2, z2)

    layout = gain_layout(shape, cfg.concept)
    num = layout.num_constraints
    dtype = gn.dtype
    out_types = (
        jax.ShapeDtypeStruct((num_joint,), dtype),
        jax.ShapeDtypeStruct((num,), dtype),
        jax.ShapeDtypeStruct((num,), jnp.bool_),
        jax.ShapeDtypeStruct((num_joint,), jnp.bool_),
        jax.ShapeDtypeStruct((), jnp.int32),
    )
    stop = jax.lax.stop_gradient
    sigma0, alpha0, free, support, status = jax.pure_callback(
        functools.partial(_forward_checked, cfg, dtype), out_types,
        stop(payoffs), stop(base), stop(eps_hat_n), stop(eps_plus_n),
        vmap_method="broadcast_all",
    )
    sigma, alpha = _implicit(cfg, gn, base, eps_hat_n, eps_plus_n, sigma0, alpha0, free, support, status)
    joint = sigma.reshape(shape)
    axes = tuple(range(num_players))
    margins = tuple(joint.sum(axis=axes[:p] + axes[p + 1:]) for p in axes)
    duals = alpha * scale[jnp.asarray(layout.player, dtype=jnp.int32)]
    return DiffSolution(joint, margins, duals, status, free, support.reshape(shape))


_solve_core = jax.jit(_solve_traced, static_argnums=(0, 1, 2))


def _static_float_vector(value: Any, num_players: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, jax.errors.TracerArrayConversionError) as err:
        raise TypeError(f"eps_plus must be a static float or [N] vector, got {value!r}") from err
    if array.ndim > 1 or (array.ndim == 1 and array.shape != (num_players,)):
        raise ValueError(f"eps_plus must be a scalar or [{num_players}], got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("eps_plus must be finite")
    return array


def _forward_checked(cfg: _Config, dtype, payoffs, base, eps_hat, eps_plus):
    out = _forward_np(cfg, payoffs, base, eps_hat, eps_plus)
    return (out[0].astype(dtype), out[1].astype(dtype), out[2], out[3], out[4])


def describe(status: Any) -> str | Sequence[str]:
    """The message of a ``DiffSolution.status`` code (or of each code in an array)."""
    codes = np.asarray(status)
    if codes.ndim == 0:
        return STATUS_MESSAGES.get(int(codes), f"unknown status {int(codes)}")
    return [STATUS_MESSAGES.get(int(c), f"unknown status {int(c)}") for c in codes.reshape(-1)]
