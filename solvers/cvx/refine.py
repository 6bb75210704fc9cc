"""Newton refinement of an interior-point answer on its active set (DESIGN §4).

An interior-point joint is accurate to about the square root of the solver's tolerance
(the objective is flat at the optimum). Guessing the active set from the solver's
multipliers and minimising the smooth dual with those rows as equalities gives the
joint to rounding; the answer is kept only when it is a verified KKT point.
"""

from __future__ import annotations

import math
import time

import numpy as np

from solvers.cvx.common import FEASIBILITY_TOL
from solvers.cvx.objective import Candidate, EntropyProblem, entropy_dual_loss, evaluate_joint

__all__ = [
    "REFINE_GRAD_TOL",
    "REFINE_MAX_ITER",
    "REFINE_MAX_ROUNDS",
    "REFINE_MAX_WORK",
    "REFINE_MIN_SECONDS",
    "refine_candidate",
]

#: Newton refinement of an interior-point answer: gradient tolerance (normalised units),
#: iteration cap, and the largest dense Hessian work (rows^2 * support) it attempts.
REFINE_GRAD_TOL = 1e-12
REFINE_MAX_ITER = 30
REFINE_MAX_WORK = 2e8
#: The refinement gives up after this many seconds, or twice the solver's time if longer.
REFINE_MIN_SECONDS = 0.5
#: Rounds of active-set correction before the refinement gives up.
REFINE_MAX_ROUNDS = 20


def _newton_on_active(
    dense: np.ndarray,
    owner: np.ndarray,
    base: np.ndarray,
    beta: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: float,
    deadline: float = math.inf,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Minimises the dual with the rows of ``dense: [k, s]`` as equalities (signs free).

    ``f(beta) = ln sum exp(base - dense' beta) + sum_p [eps terms of DESIGN §4]`` is
    smooth and convex; damped Newton with a least-squares step (the Hessian may be
    singular: dependent rows). Returns (beta, sigma on the support, converged).
    """
    num_players = eps_hat.shape[0]
    hard = math.isinf(rho)
    width = eps_plus - eps_hat

    def evaluate(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        lg = base - dense.T @ b
        top = lg.max()
        w = np.exp(lg - top)
        z = w.sum()
        sigma = w / z
        sums = np.bincount(owner, weights=b, minlength=num_players)
        if hard:
            eps = eps_hat
            value = top + math.log(z) + float(eps_hat @ sums)
        else:
            decay = np.exp(-sums / rho)
            eps = eps_plus - width * decay
            value = top + math.log(z) + float(eps_plus @ sums + rho * width @ decay)
        grad = eps[owner] - dense @ sigma
        return value, grad, sigma, sums

    value, grad, sigma, sums = evaluate(beta)
    for _ in range(REFINE_MAX_ITER):
        if np.max(np.abs(grad), initial=0.0) <= REFINE_GRAD_TOL:
            return beta, sigma, True
        if time.perf_counter() > deadline:
            return beta, sigma, False
        mean = dense @ sigma
        hess = (dense * sigma) @ dense.T - np.outer(mean, mean)
        if not hard:
            curv = width / rho * np.exp(-sums / rho)
            hess += (owner[:, None] == owner[None, :]) * curv[owner][:, None]
        step = np.linalg.lstsq(hess, -grad, rcond=1e-14)[0]
        slope = float(grad @ step)
        t = 1.0
        while t > 1e-12:
            trial = beta + t * step
            t_value, t_grad, t_sigma, t_sums = evaluate(trial)
            # Near the optimum f changes below rounding: a smaller gradient is progress.
            if t_value <= value + 1e-4 * t * slope or np.max(np.abs(t_grad)) < np.max(np.abs(grad)):
                break
            t *= 0.5
        else:
            return beta, sigma, False
        beta, value, grad, sigma, sums = trial, t_value, t_grad, t_sigma, t_sums
    return beta, sigma, bool(np.max(np.abs(grad), initial=0.0) <= REFINE_GRAD_TOL)


def refine_candidate(cand: Candidate, prob: EntropyProblem, deadline: float = math.inf) -> Candidate | None:
    """Sharpens an interior-point answer to machine precision, or None.

    Guesses the active set from the solver's multipliers, solves the dual on it exactly
    (``_newton_on_active``) and accepts only a KKT point: multipliers >= 0 off ``free``
    and every constraint satisfied (to ``REFINE_GRAD_TOL``). Wrong guesses are corrected
    by dropping rows with negative multipliers and adding violated rows (a few rounds).
    """
    if not np.all(np.isfinite(cand.duals)):
        return None
    matrix, player, base_logits, eps_hat, eps_plus, rho, free = prob
    support = np.isfinite(base_logits)
    sub = matrix[:, support].toarray()
    base = base_logits[support]
    duals = cand.duals
    floor = 1e-6 * max(1.0, float(np.max(np.abs(duals), initial=0.0)))
    active = free | (duals > floor)
    hard = math.isinf(rho)
    for _ in range(REFINE_MAX_ROUNDS):
        rows = np.flatnonzero(active)
        if rows.size**2 * support.sum() > REFINE_MAX_WORK or time.perf_counter() > deadline:
            return None
        start = np.where(free[rows], duals[rows], np.maximum(duals[rows], 0.0))
        beta, sigma_s, converged = _newton_on_active(
            sub[rows], player[rows], base, start, eps_hat, eps_plus, rho, deadline
        )
        if not converged:
            return None
        alpha = np.zeros(matrix.shape[0])
        alpha[rows] = beta
        negative = active & ~free & (alpha < -REFINE_GRAD_TOL * max(1.0, float(np.abs(beta).max(initial=0.0))))
        sums = np.bincount(player, weights=alpha, minlength=eps_hat.shape[0])
        eps = eps_hat if hard else eps_plus - (eps_plus - eps_hat) * np.exp(-sums / rho)
        expected = sub @ sigma_s
        violated = ~active & (expected - eps[player] > REFINE_GRAD_TOL)
        if not negative.any() and not violated.any():
            break
        if negative.any():
            # One row at a time: dropping every negative row at once can cycle.
            worst = np.flatnonzero(negative)[np.argmin(alpha[negative])]
            active[worst] = False
        active |= violated
    else:
        return None
    alpha = np.where(free, alpha, np.maximum(alpha, 0.0))
    joint = np.zeros(base_logits.shape[0])
    joint[support] = sigma_s
    eps_out, gaps, violation, objective = evaluate_joint(joint, None if hard else eps, prob)
    bound = entropy_dual_loss(prob, alpha)
    refined = Candidate(
        joint, eps_out, alpha, objective, gaps, violation, bound - objective, cand.status, cand.solver
    )
    if violation > max(cand.violation, FEASIBILITY_TOL) or objective < cand.objective - 1e-8:
        return None
    return refined


