"""The eps-MWMRE objective on a CSR constraint matrix: primal value, dual loss, and the
evaluation of a candidate joint (DESIGN §3, §4).

The same quantities as ``solvers.dual.primal_objective`` / ``solvers.dual.dual_loss``,
computed from a ``[K, |A|]`` CSR matrix instead of a ``DualProblem`` so that the
reference keeps its own constraint rows (``solvers.lp.constraint_matrix``). One
difference, on purpose: at zero slack (``eps_p = eps_plus_p``, allowed by the primal's
``eps <= eps_plus``) ``entropy_objective`` takes the limit ``s ln s -> 0`` of the
penalty, as CVXPY's ``entr(0) = 0`` does, where ``dual.primal_objective`` returns -inf.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.sparse as sps

from solvers.cvx.common import player_max

__all__ = ["Candidate", "EntropyProblem", "entropy_dual_loss", "entropy_objective", "evaluate_joint"]


def _entropy(x: np.ndarray) -> float:
    pos = x > 0
    return float(-np.sum(x[pos] * np.log(x[pos])))


def entropy_objective(
    joint: np.ndarray,
    eps: np.ndarray,
    base_logits: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: float,
) -> float:
    """``<sigma, b> + H(sigma) - rho sum_p s_p ln(s_p / (e w_p))`` (DESIGN §3).

    ``s_p = eps_plus_p - eps_p``, ``w_p = eps_plus_p - eps_hat_p``; the penalty is
    dropped when ``rho`` is inf. ``-inf`` when mass sits where ``base_logits`` is -inf
    or some ``s_p < 0``; a zero slack contributes 0 to the penalty (its limit).

    Args:
      joint: ``[A1..AN]`` or ``[|A|]``; eps, eps_hat, eps_plus: ``[N]``;
      base_logits: ``[|A|]``.
    """
    x = np.asarray(joint, dtype=np.float64).reshape(-1)
    pos = x > 0
    if np.any(np.isneginf(base_logits[pos])):
        return -math.inf
    value = float(x[pos] @ base_logits[pos]) + _entropy(x)
    if not math.isinf(rho):
        slack = np.asarray(eps_plus) - np.asarray(eps)
        width = np.asarray(eps_plus) - np.asarray(eps_hat)
        if np.any(slack < 0):
            return -math.inf
        safe = np.where(slack > 0, slack, 1.0)
        value -= rho * float(np.sum(np.where(slack > 0, slack * np.log(safe / (math.e * width)), 0.0)))
    return value


class EntropyProblem(NamedTuple):
    """One eps-MWMRE primal on a CSR constraint matrix (normalised units): what the
    model, the evaluation of a joint, the dual loss and the refinement all take.

    Attributes:
      matrix: ``[K, |A|]`` constraint rows; player: ``[K]`` each row's player.
      base_logits: ``[|A|]``, -inf off the support.
      eps_hat, eps_plus: ``[N]``; rho: approximation weight (inf: hard).
      free: ``[K]`` bool, the rows that are equalities.
    """

    matrix: sps.csr_array
    player: np.ndarray
    base_logits: np.ndarray
    eps_hat: np.ndarray
    eps_plus: np.ndarray
    rho: float
    free: np.ndarray


def entropy_dual_loss(prob: EntropyProblem, alpha: np.ndarray) -> float:
    """The dual loss ``L(alpha)`` (DESIGN §4) on the support where ``base_logits`` is finite."""
    matrix, player, base, eps_hat, eps_plus, rho, _ = prob
    support = np.isfinite(base)
    lg = base[support] - matrix[:, support].T @ alpha
    top = np.max(lg)
    value = float(top + np.log(np.sum(np.exp(lg - top))))
    sums = np.bincount(player, weights=alpha, minlength=eps_hat.shape[0])
    if math.isinf(rho):
        return value + float(eps_hat @ sums)
    width = eps_plus - eps_hat
    return value + float(eps_plus @ sums + rho * width @ np.exp(-sums / rho))


class Candidate(NamedTuple):
    """One answer of the entropy model, cleaned and evaluated (flat ``[|A|]`` joint)."""

    joint: np.ndarray  # [|A|]
    eps: np.ndarray
    duals: np.ndarray
    objective: float
    gaps: np.ndarray
    violation: float
    duality_gap: float
    status: str
    solver: str


def evaluate_joint(
    joint: np.ndarray, eps_raw: np.ndarray | None, prob: EntropyProblem
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """eps, gaps, violation and objective of a cleaned joint."""
    matrix, player, base_logits, eps_hat, eps_plus, rho, free = prob
    expected = matrix @ joint
    num_players = eps_hat.shape[0]
    gaps = player_max(expected, player, num_players)
    if math.isinf(rho):
        eps = eps_hat.copy()
    else:
        base_eps = eps_hat if eps_raw is None else np.minimum(np.asarray(eps_raw, dtype=np.float64), eps_plus)
        # The smallest feasible eps for this joint that is not below the solver's.
        # A player without inequality rows (e.g. one action under CE) needs nothing.
        ineq_need = np.full(num_players, -np.inf)
        np.maximum.at(ineq_need, player, np.where(free, -np.inf, expected))
        eps = np.minimum(np.maximum(base_eps, ineq_need), eps_plus)
    slack = expected - eps[player]
    violation = float(np.max(np.where(free, np.abs(slack), np.maximum(slack, 0.0)), initial=0.0))
    objective = entropy_objective(joint, eps, base_logits, eps_hat, eps_plus, rho)
    return eps, gaps, violation, objective


