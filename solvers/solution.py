"""The result of every solver: a frozen ``Solution`` and its ``Status``."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from solvers.selection import Selection

__all__ = ["Status", "Solution", "stack_solutions"]


class Status(str, enum.Enum):
    """How a solve ended. Only ``OPTIMAL`` means every tolerance was met."""

    OPTIMAL = "optimal"  # gap and KKT residual within tol; duality gap reported
    INACCURATE = "inaccurate"  # finished, but some tolerance is not met (see the gaps)
    INFEASIBLE = "infeasible"  # no joint satisfies the constraints (eps_hat too small)
    MAX_ITER = "max_iter"  # the iteration cap was hit before tolerance

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
class Solution:
    """A certified equilibrium of one game.

    What ``status == "optimal"`` certifies is the optimum, to ``tol``, of the problem the
    selection poses. With hard constraints (``rho = inf``, the default of every preset but
    "ms") that problem pins ``eps = eps_hat``, so ``gap <= eps_hat`` up to tol. With soft
    constraints ("ms", or any finite ``rho``) the approximation is itself a variable: the
    penalty ``rho`` trades it against the objective and chooses ``eps`` in
    ``[eps_hat, eps_plus]``, reported in ``eps``. A positive ``gap`` under "optimal" is
    then expected whenever the chosen ``eps`` is positive (e.g. Maximum Strength on a game
    with no strict equilibrium): the joint is an ``eps``-(C)CE, with
    ``gaps_p <= eps_p + tol / scale_p`` (payoff units; ``gaps * scale <= eps * scale + tol``
    normalised), not an exact one. Hard-constrain (``rho = inf``, ``eps_hat = 0``) for
    an exact (C)CE.

    Attributes:
      joint: ``[A1..AN]`` the selected joint distribution (non-negative, sums to 1).
      marginals: N arrays ``[A_p]``.
      duals: ``[K]`` flat dual variables in payoff units (layout: ``solvers.gains``).
      eps: ``[N]`` the approximation ``eps_p`` the joint was solved for (payoff units):
        ``eps_hat`` with hard constraints, the penalty's choice with soft ones.
      gap: ``max_{p, dev} E_joint[gain]`` in payoff units (<= 0 up to tol for an exact
        (C)CE with ``eps_hat = 0``).
      gaps: ``[N]`` per-player ``max_dev E_joint[gain]`` in payoff units.
      scale: ``[N]`` the normalisation factor ``s_p``: ``gaps * scale`` are normalised gaps.
      duality_gap: ``L(duals) - P(joint)`` in the normalised problem (>= 0).
      objective: primal objective value of the normalised problem.
      iterations: iterations of the iterative stage(s).
      timings: seconds per stage (e.g. "normalise", "face", "refine", "polish", "total").
      status: see ``Status``.
      concept: "cce" or "ce".
      selection: the ``Selection`` solved for.
      method: the method that produced the joint ("newton", "gd", "cvxpy", ...).
    """

    joint: np.ndarray
    marginals: tuple[np.ndarray, ...]
    duals: np.ndarray
    eps: np.ndarray
    gap: float
    gaps: np.ndarray
    scale: np.ndarray
    duality_gap: float
    objective: float
    iterations: int
    timings: Mapping[str, float]
    status: Status
    concept: str
    selection: Selection
    method: str
    info: Mapping[str, object] = field(default_factory=dict)

    @property
    def normalised_gap(self) -> float:
        """``max_p gaps_p * scale_p``: the gap in the L2-invariant units."""
        return float(np.max(self.gaps * self.scale))

    @property
    def ok(self) -> bool:
        return self.status is Status.OPTIMAL

    def __repr__(self) -> str:
        return (
            f"Solution(concept={self.concept!r}, selection={self.selection.name!r}, "
            f"status={self.status.value!r}, gap={self.gap:.3g}, duality_gap={self.duality_gap:.3g}, "
            f"iterations={self.iterations}, method={self.method!r}, shape={self.joint.shape})"
        )


def stack_solutions(solutions: Sequence[Solution]) -> dict[str, np.ndarray]:
    """Solutions of games of one shape as arrays, e.g. for ``np.savez``.

    Returns ``joint [B, A1..AN]``, ``duals [B, K]`` (payoff units), ``eps``, ``gaps`` and
    ``scale [B, N]``, ``gap``, ``normalised_gap``, ``duality_gap``, ``objective [B]``
    float64, ``iterations [B]`` int64, ``status`` and ``method [B]`` str.
    """
    if not solutions:
        raise ValueError("no solutions to stack")
    shapes = {sol.joint.shape for sol in solutions}
    if len(shapes) > 1:
        raise ValueError(f"solutions of one game shape are stacked; got shapes {sorted(shapes)}")
    return {
        "joint": np.stack([sol.joint for sol in solutions]),
        "duals": np.stack([sol.duals for sol in solutions]),
        "eps": np.stack([sol.eps for sol in solutions]),
        "gaps": np.stack([sol.gaps for sol in solutions]),
        "scale": np.stack([sol.scale for sol in solutions]),
        "gap": np.array([sol.gap for sol in solutions], dtype=np.float64),
        "normalised_gap": np.array([sol.normalised_gap for sol in solutions], dtype=np.float64),
        "duality_gap": np.array([sol.duality_gap for sol in solutions], dtype=np.float64),
        "objective": np.array([sol.objective for sol in solutions], dtype=np.float64),
        "iterations": np.array([sol.iterations for sol in solutions], dtype=np.int64),
        "status": np.array([sol.status.value for sol in solutions]),
        "method": np.array([sol.method for sol in solutions]),
    }
