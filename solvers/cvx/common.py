"""What the CVXPY models share: the lazy CVXPY import, solver choice, tight options,
the solve call with its status mapping, and the result of a reference solve.

Flat orders: joints are C-order ``[|A|]``; constraint rows follow ``solvers.gains``.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import cvxpy as cp

__all__ = [
    "DEFAULT_SOLVER_OPTS",
    "ENTROPY_SOLVERS",
    "FEASIBILITY_TOL",
    "GINI_SOLVERS",
    "OK_STATUSES",
    "ReferenceResult",
    "check_solver",
    "clean_joint",
    "import_cvxpy",
    "player_max",
    "run_solver",
    "solver_options",
]

#: Solvers that handle the exponential cone (entropy objectives).
ENTROPY_SOLVERS: tuple[str, ...] = ("CLARABEL", "ECOS", "SCS")
#: Solvers accepted by ``max_gini`` (a QP).
GINI_SOLVERS: tuple[str, ...] = ("OSQP", "CLARABEL", "ECOS", "SCS")

#: Tight default options per solver: the reference must be accurate to ~1e-8.
DEFAULT_SOLVER_OPTS: Mapping[str, Mapping[str, float]] = {
    "CLARABEL": {
        "tol_gap_abs": 1e-11,
        "tol_gap_rel": 1e-11,
        "tol_feas": 1e-11,
        "tol_ktratio": 1e-9,
        "max_iter": 400,
    },
    "ECOS": {"abstol": 1e-10, "reltol": 1e-10, "feastol": 1e-10, "max_iters": 500},
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
    # OSQP's polishing step (an active-set solve) supplies the accuracy; the ADMM
    # iterations only need to find the active set. Degenerate polytopes (CEs on a face)
    # can stall ADMM: the cap keeps that cheap and max_gini falls back to CLARABEL.
    "OSQP": {
        "eps_abs": 1e-7,
        "eps_rel": 1e-7,
        "max_iter": 4000,
        "polishing": True,
        "polish_refine_iter": 20,
    },
}

#: A cleaned joint whose constraint violation (normalised units) is at most this is
#: accepted without trying a fallback solver.
FEASIBILITY_TOL = 1e-9

#: CVXPY statuses that count as converged.
OK_STATUSES = ("optimal",)

_IMPORT_LOCK = threading.Lock()


@functools.cache
def import_cvxpy() -> ModuleType:
    """CVXPY, imported on first use (never when ``solvers`` is imported) and without JAX.

    CVXPY builds its list of installed solvers on import by calling every solver's
    ``import_solver``; the MPAX one runs ``import jax`` before ``import mpax`` (~1 s, and
    ``solvers`` never imports JAX). CVXPY 1.9 has no setting or environment variable
    that skips this probe (its only ones choose commercial solvers and the canon
    backend), so for the duration of that one import, and only when JAX is not loaded
    yet, ``import jax`` is answered "not installed" (``sys.modules["jax"] = None``).
    The only effect on CVXPY is that MPAX, which nothing here uses, is not offered. The
    entry is removed right after, so a later ``import jax`` works as usual.
    """
    with _IMPORT_LOCK:
        if "jax" in sys.modules or "cvxpy" in sys.modules:
            return importlib.import_module("cvxpy")
        sys.modules["jax"] = None  # type: ignore[assignment]
        try:
            return importlib.import_module("cvxpy")
        finally:
            if sys.modules.get("jax", 0) is None:
                del sys.modules["jax"]


class ReferenceResult(NamedTuple):
    """A CVXPY solve of one selection problem (normalised units).

    Attributes:
      joint: ``[A1..AN]`` cleaned joint (tiny negatives clipped, renormalised).
      eps: ``[N]`` the approximation the joint is solved for (``eps_hat`` when hard).
      objective: the primal objective evaluated at ``(joint, eps)``
        (entropy: ``<sigma, base_logits> + H(sigma) - rho * penalty``; Gini: ``||sigma||^2``).
      status: CVXPY's status string ("optimal", "optimal_inaccurate", "infeasible", ...).
      solve_time: seconds inside the numerical solver (CVXPY's ``solver_stats``).
      setup_time: seconds to build and compile the CVXPY problem (and the face LP).
      solver: the solver that produced the joint.
      gaps: ``[N]`` per-player ``max_dev E_joint[gain]`` of the cleaned joint.
      violation: ``max(0, max_p (gaps_p - eps_p))``: how far the cleaned joint is from
        feasible (0 when feasible).
      duals: ``[K]`` constraint multipliers (gains layout), NaN when unavailable.
      duality_gap: a certified bound ``dual bound - objective`` (entropy; >= 0 up to
        rounding) or ``objective - dual bound`` (Gini), from ``duals``; NaN if unknown.
      refine_time: seconds of the Newton refinement (not in ``solve_time``).
    """

    joint: np.ndarray
    eps: np.ndarray
    objective: float
    status: str
    solve_time: float
    setup_time: float
    solver: str = ""
    gaps: np.ndarray | None = None
    violation: float = math.nan
    duals: np.ndarray | None = None
    duality_gap: float = math.nan
    refine_time: float = 0.0


def player_max(values: np.ndarray, player: np.ndarray, num_players: int) -> np.ndarray:
    """``[N]`` per-player maximum of ``values: [K]`` (0 for a player without rows)."""
    out = np.full(num_players, -np.inf)
    np.maximum.at(out, player, values)
    out[np.isneginf(out)] = 0.0  # a player without deviations (CE, one action)
    return out


def clean_joint(x: np.ndarray | None, size: int) -> np.ndarray | None:
    """Clips tiny negatives and renormalises; None when there is nothing usable."""
    if x is None or not np.all(np.isfinite(x)):
        return None
    x = np.maximum(np.asarray(x, dtype=np.float64).reshape(size), 0.0)
    total = x.sum()
    if total <= 0:
        return None
    return x / total


def solver_options(solver: str, overrides: Mapping[str, object]) -> dict[str, object]:
    """The tight defaults of ``solver`` updated with ``overrides``."""
    opts = dict(DEFAULT_SOLVER_OPTS.get(solver, {}))
    opts.update(overrides)
    return opts


def check_solver(solver: str, allowed: Sequence[str], name: str = "solver") -> str:
    """``solver`` upper-cased; ValueError naming ``name`` unless it is in ``allowed``."""
    if not isinstance(solver, str) or solver.upper() not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {solver!r}")
    return solver.upper()


def run_solver(
    problem: cp.Problem, solver: str, opts: Mapping[str, object], warm: bool = False
) -> tuple[str, float, float]:
    """Solves; returns (status, solve seconds, compile seconds). Never raises on failure."""
    cp = import_cvxpy()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # Inaccurate solves are reported through the status string.
            warnings.simplefilter("ignore", UserWarning)
            problem.solve(solver=solver, warm_start=warm, **opts)
        status = str(problem.status)
    except cp.error.SolverError:
        status = "solver_error"
    wall = time.perf_counter() - start
    compile_time = float(getattr(problem, "compilation_time", None) or 0.0)
    stats = problem.solver_stats
    solve_time = stats.solve_time if stats is not None and stats.solve_time is not None else None
    if solve_time is None:
        solve_time = max(wall - compile_time, 0.0)
    return status, float(solve_time), compile_time
