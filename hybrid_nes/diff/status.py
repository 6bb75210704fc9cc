"""Outputs, status codes and configuration of ``hybrid_nes.diff``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = [
    "DEGENERATE_ACTIVE_SET",
    "DIFF_PRESETS",
    "FACE_CHANGE",
    "INCONSISTENT",
    "INFEASIBLE",
    "NOT_OPTIMAL",
    "OK",
    "ON_DEGENERATE",
    "SKIP",
    "STATUS_MESSAGES",
    "DegenerateEquilibriumError",
    "DiffSolution",
    "DiffTangent",
    "describe",
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
#: Internal: a non-finite cotangent or tangent reached the linear solve.
BAD_COTANGENT = -1
#: Internal: the linear solve's callback skips this game (the dense adjoint serves it).
SKIP = -2

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


class DiffTangent(NamedTuple):
    """Directional derivatives of a ``DiffSolution`` (``diff.jvp``).

    Attributes:
      joint: ``[A1..AN]``; marginals: tuple of N ``[A_p]``; duals: ``[K]`` (payoff units).
    """

    joint: jax.Array
    marginals: tuple[jax.Array, ...]
    duals: jax.Array


@dataclass(frozen=True)
class Config:
    """Static configuration of one ``solve`` (hashable: a jit static argument).

    ``on_degenerate`` is not part of it: it travels as an int32 operand (its index in
    ``ON_DEGENERATE``), so switching it does not recompile."""

    concept: str
    shape: tuple[int, ...]
    rho: float
    tol: float
    max_iter: int | None
    degenerate_tol: float
    face_tol: float

    @property
    def hard(self) -> bool:
        return math.isinf(self.rho)


def describe(status: Any) -> str | Sequence[str]:
    """The message of a ``DiffSolution.status`` code (or of each code in an array)."""
    codes = np.asarray(status)
    if codes.ndim == 0:
        return STATUS_MESSAGES.get(int(codes), f"unknown status {int(codes)}")
    return [STATUS_MESSAGES.get(int(c), f"unknown status {int(c)}") for c in codes.reshape(-1)]
