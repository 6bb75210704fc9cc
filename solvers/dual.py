"""The eps-MWMRE dual (DESIGN §3-4) in plain NumPy: the reference implementation.

Everything here works on one ``DualProblem`` and flat duals ``alpha: [K]``. The Numba
kernels (``solvers.kernels``) compute the same quantities for batches, fast; tests hold
them to this module.

    logits     l(a)     = b(a) - sum_k alpha_k M[k, a]      (b = ln target + mu W)
    primal     sigma    = softmax(l)
    eps_p      = eps_plus_p - (eps_plus_p - eps_hat_p) exp(-S_p / rho)   (eps_hat_p if hard)
    loss       L(alpha) = ln sum_a exp(l(a)) + sum_p [eps_plus_p S_p + rho (eps_plus_p - eps_hat_p) exp(-S_p / rho)]
                          (hard: ln Z + sum_p eps_hat_p S_p)
    gradient   g_k      = eps_{p(k)} - E_sigma[M_k]
    Hessian    H        = Cov_sigma(M) + [same player] (eps_plus_p - eps_hat_p) / rho exp(-S_p / rho)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from solvers.gains import Gains, gains
from solvers.game import NormalisedGame
from solvers.selection import SelectionParams

__all__ = [
    "DualProblem",
    "Certificate",
    "dual_problem",
    "restrict",
    "logits",
    "joint_from_duals",
    "constraint_values",
    "duals_eps",
    "dual_loss",
    "dual_gradient",
    "dual_hessian",
    "primal_objective",
    "certificate",
    "kkt_residual",
    "project_duals",
]


class DualProblem(NamedTuple):
    """The dual of one eps-MWMRE problem on a normalised game.

    Attributes:
      rows: ``[|A|, c]`` int64 constraint index of each stored gain (ELL layout).
      values: ``[|A|, c]`` normalised gains.
      player: ``[K]`` int64 owner of each constraint.
      base_logits: ``[|A|]`` ``ln target + mu W``; ``-inf`` outside the support
        (after facial reduction).
      eps_hat: ``[N]`` target approximation; eps_plus: ``[N]`` (inf when hard).
      rho: approximation weight (inf = hard constraints).
      free: ``[K]`` bool, True for implicit equalities (sign-free duals).
    """

    rows: np.ndarray
    values: np.ndarray
    player: np.ndarray
    base_logits: np.ndarray
    eps_hat: np.ndarray
    eps_plus: np.ndarray
    rho: float
    free: np.ndarray

    @property
    def num_constraints(self) -> int:
        return int(self.player.shape[0])

    @property
    def num_players(self) -> int:
        return int(self.eps_hat.shape[0])

    @property
    def hard(self) -> bool:
        return math.isinf(self.rho)


def dual_problem(game: NormalisedGame, concept: str, params: SelectionParams) -> DualProblem:
    """Builds the dual of the entropy selection problem on a normalised game."""
    if params.objective != "entropy":
        raise ValueError(f"the dual is defined for the entropy objective, not {params.objective!r}")
    g: Gains = gains(game.payoffs, concept)
    return DualProblem(
        rows=g.rows,
        values=g.values,
        player=g.player,
        base_logits=np.asarray(params.base_logits, dtype=np.float64),
        eps_hat=np.asarray(params.eps_hat, dtype=np.float64),
        eps_plus=np.asarray(params.eps_plus, dtype=np.float64),
        rho=float(params.rho),
        free=np.zeros(g.num_constraints, dtype=bool),
    )


def restrict(problem: DualProblem, support: np.ndarray, equalities: np.ndarray) -> DualProblem:
    """The problem on a face: zero mass off ``support: [|A|]``, ``equalities: [K]`` free."""
    base = np.where(support, problem.base_logits, -np.inf)
    return problem._replace(base_logits=base, free=np.asarray(equalities, dtype=bool))


def _dense(problem: DualProblem) -> np.ndarray:
    num_joint = problem.rows.shape[0]
    dense = np.zeros((problem.num_constraints, num_joint))
    cols = np.broadcast_to(np.arange(num_joint)[:, None], problem.rows.shape)
    np.add.at(dense, (problem.rows, cols), problem.values)
    return dense


def logits(problem: DualProblem, alpha: np.ndarray) -> np.ndarray:
    """``[|A|]`` logits ``b - M^T alpha``."""
    return problem.base_logits - _dense(problem).T @ alpha


def _log_partition(lg: np.ndarray) -> float:
    top = np.max(lg)
    return float(top + np.log(np.sum(np.exp(lg - top))))


def joint_from_duals(problem: DualProblem, alpha: np.ndarray) -> np.ndarray:
    """``[|A|]`` the primal joint ``sigma(alpha)`` (flat joint order)."""
    lg = logits(problem, alpha)
    return np.exp(lg - _log_partition(lg))


def constraint_values(problem: DualProblem, sigma: np.ndarray) -> np.ndarray:
    """``[K]`` expected gains ``E_sigma[M_k]``."""
    return _dense(problem) @ sigma


def _player_sums(problem: DualProblem, alpha: np.ndarray) -> np.ndarray:
    return np.bincount(problem.player, weights=alpha, minlength=problem.num_players)


def duals_eps(problem: DualProblem, alpha: np.ndarray) -> np.ndarray:
    """``[N]`` the approximation ``eps_p(alpha)`` the dual implies."""
    if problem.hard:
        return problem.eps_hat.copy()
    s = _player_sums(problem, alpha)
    return problem.eps_plus - (problem.eps_plus - problem.eps_hat) * np.exp(-s / problem.rho)


def dual_loss(problem: DualProblem, alpha: np.ndarray) -> float:
    """The convex dual loss ``L(alpha)``."""
    s = _player_sums(problem, alpha)
    if problem.hard:
        penalty = float(problem.eps_hat @ s)
    else:
        width = problem.eps_plus - problem.eps_hat
        penalty = float(problem.eps_plus @ s + problem.rho * width @ np.exp(-s / problem.rho))
    return _log_partition(logits(problem, alpha)) + penalty


def dual_gradient(problem: DualProblem, alpha: np.ndarray) -> np.ndarray:
    """``[K]`` gradient ``eps_{p(k)} - E_sigma[M_k]``."""
    sigma = joint_from_duals(problem, alpha)
    return duals_eps(problem, alpha)[problem.player] - constraint_values(problem, sigma)


def dual_hessian(problem: DualProblem, alpha: np.ndarray) -> np.ndarray:
    """``[K, K]`` Hessian ``Cov_sigma(M) + approximation term``."""
    sigma = joint_from_duals(problem, alpha)
    dense = _dense(problem)
    mean = dense @ sigma
    hess = (dense * sigma) @ dense.T - np.outer(mean, mean)
    if not problem.hard:
        s = _player_sums(problem, alpha)
        curv = (problem.eps_plus - problem.eps_hat) / problem.rho * np.exp(-s / problem.rho)
        same = problem.player[:, None] == problem.player[None, :]
        hess = hess + same * curv[problem.player][:, None]
    return hess


def project_duals(problem: DualProblem, alpha: np.ndarray) -> np.ndarray:
    """Projects onto the feasible dual set: ``alpha >= 0`` except on free rows."""
    return np.where(problem.free, alpha, np.maximum(alpha, 0.0))


def kkt_residual(problem: DualProblem, alpha: np.ndarray, grad: np.ndarray) -> float:
    """``max_k |min(alpha_k, g_k)|`` (``|g_k|`` on free rows): 0 exactly at the optimum."""
    res = np.where(problem.free, np.abs(grad), np.abs(np.minimum(alpha, grad)))
    return float(res.max(initial=0.0))


def _entropy(sigma: np.ndarray) -> float:
    pos = sigma > 0
    return float(-np.sum(sigma[pos] * np.log(sigma[pos])))


def primal_objective(problem: DualProblem, sigma: np.ndarray, eps: np.ndarray) -> float:
    """``<sigma, b> + H(sigma) - approximation penalty`` (``-inf`` off the support)."""
    pos = sigma > 0
    if np.any(np.isneginf(problem.base_logits[pos])):
        return -math.inf
    value = float(sigma[pos] @ problem.base_logits[pos]) + _entropy(sigma)
    if not problem.hard:
        slack = problem.eps_plus - eps
        width = problem.eps_plus - problem.eps_hat
        if np.any(slack <= 0):
            return -math.inf
        value -= problem.rho * float(np.sum(slack * np.log(slack / (math.e * width))))
    return value


class Certificate(NamedTuple):
    """What a dual point certifies (DESIGN §4, "Certificate").

    Attributes:
      joint: ``[|A|]`` ``sigma(alpha)``.
      expected_gains: ``[K]`` ``E_sigma[M_k]``.
      eps: ``[N]`` feasible approximation ``eps'_p`` (hard: ``eps_hat``).
      gaps: ``[N]`` per-player ``max_dev E_sigma[gain]`` (normalised units).
      violation: ``[N]`` ``max(0, gaps - eps)``; 0 when ``sigma`` is feasible.
      primal: primal objective at ``(sigma, eps)``; dual: ``L(alpha)``.
      duality_gap: soft constraints: ``dual - primal`` (>= 0 up to rounding). Hard:
        ``L'(alpha) - primal`` for the problem relaxed to ``sigma``'s own values on the
        rows it violates and on the free rows (the face's equalities), which is
        ``sum_{k not free} max(alpha_k g_k, 0)`` (``g = eps - E_sigma[M]``): >= 0
        exactly. (``dual - primal = alpha . g`` itself is negative by up to
        ``||alpha||_1 * violation`` when ``sigma`` is not exactly feasible, which is
        no certificate: -9.1e-9 on a 6x6x6 Kuhn-poker CE meta-game.)
    """

    joint: np.ndarray
    expected_gains: np.ndarray
    eps: np.ndarray
    gaps: np.ndarray
    violation: np.ndarray
    primal: float
    dual: float
    duality_gap: float


def certificate(problem: DualProblem, alpha: np.ndarray) -> Certificate:
    """Certifies ``alpha``: primal joint, its gaps, and the duality gap."""
    sigma = joint_from_duals(problem, alpha)
    expected = constraint_values(problem, sigma)
    gaps = np.full(problem.num_players, -math.inf)
    np.maximum.at(gaps, problem.player, expected)
    gaps[np.isneginf(gaps)] = 0.0  # a player without deviations (CE, one action)
    if problem.hard:
        eps = problem.eps_hat.copy()
    else:
        eps = np.maximum(duals_eps(problem, alpha), gaps)
    violation = np.maximum(gaps - eps, 0.0)
    primal = primal_objective(problem, sigma, eps)
    dual = dual_loss(problem, alpha)
    if problem.hard:
        terms = alpha * (eps[problem.player] - expected)
        gap = float(np.sum(np.where(problem.free, 0.0, np.maximum(terms, 0.0))))
    else:
        gap = dual - primal
    return Certificate(sigma, expected, eps, gaps, violation, primal, dual, gap)
