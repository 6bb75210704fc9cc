"""``hybrid_nes.diff.solve`` and ``hybrid_nes.diff.jvp``: the public entries."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_nes.diff import fast_forward, ffi
from hybrid_nes.diff.checks import check_tangent, prepare
from hybrid_nes.diff.forward import dense_adjoint, forward, packed_size, packed_sizes
from hybrid_nes.diff.implicit import implicit, tangent
from hybrid_nes.diff.problem import Theta, resolve
from hybrid_nes.diff.status import Config, DiffSolution, DiffTangent
from solvers.gains import gain_layout

__all__ = ["jvp", "solve"]

_OPTIONS_DOC = """
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
        that must leave the minimal face unchanged: every perturbation of that size
        where the certificate margins of ``face_cert`` show it, else the two LPs of a
        fixed random direction +/- (0 skips the check).
      on_degenerate: what the derivative does where ``status`` is not 0: "raise"
        (``DegenerateEquilibriumError``), "nan" (NaN derivatives), or "one_sided" (an
        explicit opt-in for optimisation loops that cross active-set or face changes: at a
        degenerate active set or face change, differentiate with the active set and face
        as found, rows that are ~tight with ~0 dual held at 0: one of the one-sided
        derivatives; other statuses still raise). The solution itself never raises on
        degeneracy: see ``status``.
"""


def _forward_call(cfg: Config, payoffs: jax.Array, theta: Theta):
    """``(sigma, alpha, free, support, status, adjoint)`` from the exact solver (no
    derivative; ``adjoint`` as ``implicit.implicit``)."""
    dtype = theta.gn.dtype
    num = gain_layout(cfg.shape, cfg.concept).num_constraints
    stop = jax.lax.stop_gradient
    # One input and one output: pure_callback converts each array separately.
    inputs = stop(jnp.concatenate([payoffs.reshape(-1), theta.base, theta.eps_hat, theta.eps_plus]))

    def by_callback(x):
        return jax.pure_callback(
            functools.partial(forward, cfg, np.dtype(dtype)), jax.ShapeDtypeStruct((packed_size(cfg),), dtype),
            x, vmap_method="broadcast_all",
        )

    if fast_forward.applies(cfg) and ffi.available():
        # Interior games and faces certified without an LP by the compiled kernel inside
        # XLA (no callback); the callback only where the kernel does not serve a game of
        # the batch (all_ok is one scalar under vmap), and there on those games alone.
        fast, ok, all_ok = ffi.call(cfg, inputs)

        def rest(x, fast, ok):
            flagged = jnp.concatenate([x, ok.astype(x.dtype)[None]])
            slow = jax.pure_callback(
                functools.partial(_forward_unserved, cfg, np.dtype(dtype)),
                jax.ShapeDtypeStruct((packed_size(cfg),), dtype), flagged, vmap_method="broadcast_all",
            )
            return jnp.where(ok, fast, slow)

        packed = jax.lax.cond(all_ok, lambda x, fast, ok: fast, rest, inputs, fast, ok)
    else:
        packed = by_callback(inputs)
    cuts = np.cumsum((0,) + packed_sizes(cfg))
    sigma, alpha, free, support, flag, adj, status = (
        packed[..., a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True))
    adjoint = (flag[..., 0] > 0.5, adj.reshape(adj.shape[:-1] + (num, num))) if dense_adjoint(cfg) else None
    return sigma, alpha, free > 0.5, support > 0.5, status[..., 0].astype(jnp.int32), adjoint


def _forward_unserved(cfg: Config, dtype, flagged) -> np.ndarray:
    """``forward`` of the games whose last input column (the kernel's ``ok``) is 0; zeros
    for the others (``[..., n + 1] -> [..., packed_size]``)."""
    flagged = np.asarray(flagged)
    todo = flagged[..., -1] < 0.5
    out = np.zeros(flagged.shape[:-1] + (packed_size(cfg),), dtype=dtype)
    if np.any(todo):
        out[todo] = forward(cfg, dtype, flagged[..., :-1][todo])
    return out


def _solution(cfg: Config, theta: Theta, sigma, alpha, free, support, status) -> DiffSolution:
    joint = sigma.reshape(cfg.shape)
    axes = tuple(range(len(cfg.shape)))
    margins = tuple(joint.sum(axis=axes[:p] + axes[p + 1:]) for p in axes)
    player = jnp.asarray(gain_layout(cfg.shape, cfg.concept).player, dtype=jnp.int32)
    return DiffSolution(joint, margins, alpha * theta.scale[player], status, free, support.reshape(cfg.shape))


def _solve_traced(cfg: Config, preset: str, plus, mode, payoffs, target, welfare, mu, eps_hat) -> DiffSolution:
    theta = resolve(cfg, preset, plus, payoffs, target, welfare, mu, eps_hat)
    sigma0, alpha0, free, support, status, adjoint = _forward_call(cfg, payoffs, theta)
    sigma, alpha = implicit(cfg, theta.gn, theta.base, theta.eps_hat, theta.eps_plus, sigma0, alpha0, free, support,
                            status, adjoint, mode)
    return _solution(cfg, theta, sigma, alpha, free, support, status)


def _jvp_traced(cfg: Config, preset: str, plus, mode, primals: tuple, tangents: tuple
               ) -> tuple[DiffSolution, DiffTangent]:
    theta, dtheta = jax.jvp(lambda *a: resolve(cfg, preset, plus, *a), primals, tangents)
    sigma, alpha, free, support, status, _ = _forward_call(cfg, primals[0], theta)
    # The solve by callback always: with the forward's -H_FF^{-1} behind a lax.cond (as the
    # VJP does), jit(jvp) on a face (the callback branch taken) segfaulted in JAX 0.10.2.
    adjoint = None
    core = (theta.gn, theta.base, theta.eps_hat, theta.eps_plus)
    dcore = (dtheta.gn, dtheta.base, dtheta.eps_hat, jnp.zeros_like(dtheta.eps_plus))
    dsigma, dalpha = tangent(cfg, core, dcore, sigma, alpha, free, support, status, adjoint, mode)
    sol = _solution(cfg, theta, sigma, alpha, free, support, status)
    player = jnp.asarray(gain_layout(cfg.shape, cfg.concept).player, dtype=jnp.int32)
    djoint = dsigma.reshape(cfg.shape)
    axes = tuple(range(len(cfg.shape)))
    dmargins = tuple(djoint.sum(axis=axes[:p] + axes[p + 1:]) for p in axes)
    dduals = dalpha * theta.scale[player] + alpha * dtheta.scale[player]
    return sol, DiffTangent(djoint, dmargins, dduals)


_solve_core = jax.jit(_solve_traced, static_argnums=(0, 1, 2))
_jvp_core = jax.jit(_jvp_traced, static_argnums=(0, 1, 2))


def _under_vmap(x: Any) -> bool:
    """True when ``x`` is (or wraps, through JVP/linearize tracers) a ``jax.vmap`` tracer."""
    for _ in range(64):
        if not isinstance(x, jax.core.Tracer):
            return False
        if type(x).__name__ == "BatchTracer":
            return True
        x = getattr(x, "primal", getattr(x, "val", None))
    return False


def _any_under_vmap(*trees) -> bool:
    # Eager jax.vmap(jax.grad(...)) through the compiled core segfaulted in JAX 0.10.2
    # (jit(vmap(grad)) and vmap of the forward did not): under vmap, trace it inline.
    return any(_under_vmap(x) for x in jax.tree_util.tree_leaves(trees))


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
        gradient (ValueError).{options}
    Returns:
      A ``DiffSolution`` of JAX arrays (float64 with x64 enabled, else float32).

    Raises:
      TypeError, ValueError: bad payoffs, concept, selection or parameters.
    """
    p = prepare(payoffs, concept, selection, target, welfare, mu, eps_hat, eps_plus, rho, tol, max_iter,
                degenerate_tol, face_tol, on_degenerate)
    run = _solve_traced if _any_under_vmap(p.arrays) else _solve_core
    return run(p.cfg, p.preset, p.plus, p.mode, *p.arrays)


def jvp(
    payoffs: Any,
    payoffs_dot: Any,
    concept: str = "cce",
    selection: str = "me",
    *,
    target: Any = None,
    welfare: Any = None,
    mu: Any = None,
    eps_hat: Any = 0.0,
    target_dot: Any = None,
    welfare_dot: Any = None,
    mu_dot: Any = None,
    eps_hat_dot: Any = None,
    eps_plus: float | None = None,
    rho: float | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    degenerate_tol: float = 1e-7,
    face_tol: float = 1e-6,
    on_degenerate: str = "raise",
) -> tuple[DiffSolution, DiffTangent]:
    """``solve`` and its directional derivative along ``payoffs_dot`` (and the ``*_dot``
    of the selection parameters): forward mode, one KKT solve per direction.

    ``jax.jvp`` does not go through ``solve`` (a ``custom_vjp``); this is the same implicit
    step in forward mode. It works under ``jit`` and ``vmap`` (e.g. ``vmap`` over
    directions for a Jacobian). It is not itself differentiable.

    Args:
      payoffs, payoffs_dot: ``[N, A1..AN]`` the game and a direction.
      target_dot, welfare_dot, mu_dot, eps_hat_dot: directions of the selection
        parameters, shaped as them (None: zero; an error for a parameter the preset
        does not have).
      concept, selection and the rest: as ``solve``.

    Returns:
      ``(solution, tangent)``: the ``DiffSolution`` and a ``DiffTangent``.

    Raises:
      TypeError, ValueError: bad input (as ``solve``), tangents of the wrong shape.
      DegenerateEquilibriumError: where ``status`` is not 0 (``on_degenerate``).
    """
    p = prepare(payoffs, concept, selection, target, welfare, mu, eps_hat, eps_plus, rho, tol, max_iter,
                degenerate_tol, face_tol, on_degenerate)
    if p.preset == "ms" and eps_hat_dot is not None:
        raise ValueError("eps_hat_dot is given but 'ms' has no eps_hat (it is -eps_plus)")
    dots = (check_tangent(payoffs_dot, p.payoffs, "payoffs_dot"), check_tangent(target_dot, p.target, "target_dot"),
            check_tangent(welfare_dot, p.welfare, "welfare_dot"), check_tangent(mu_dot, p.mu, "mu_dot"),
            check_tangent(eps_hat_dot, p.eps_hat, "eps_hat_dot"))
    run = _jvp_traced if _any_under_vmap(p.arrays, dots) else _jvp_core
    return run(p.cfg, p.preset, p.plus, p.mode, p.arrays, dots)


if solve.__doc__:  # None under python -OO
    solve.__doc__ = solve.__doc__.format(options=_OPTIONS_DOC)
