"""Maximum Gini (DESIGN §7): ``min ||sigma||_2^2`` over the (C)CE polytope, a QP solved
tightly with OSQP (polishing on) and certified by a closed-form dual bound; CLARABEL is
the fallback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sps

from solvers.cvx.common import (
    FEASIBILITY_TOL,
    GINI_SOLVERS,
    OK_STATUSES,
    ReferenceResult,
    check_solver,
    clean_joint,
    import_cvxpy,
    player_max,
    run_solver,
    solver_options,
)
from solvers.gains import check_concept
from solvers.game import as_game
from solvers.lp import constraint_matrix

__all__ = ["GINI_GAP_TOL", "gini_dual_bound", "max_gini"]

#: Max Gini: accept OSQP's answer when the certified duality gap is at most this.
GINI_GAP_TOL = 1e-9


def gini_dual_bound(matrix: sps.csr_array, rhs: np.ndarray, lam: np.ndarray) -> float:
    """A certified lower bound on ``min ||x||^2 s.t. x in simplex, M x <= rhs``.

    For any ``lam >= 0`` (clipped here), the Lagrangian dual
    ``max_nu  min_{x >= 0} ||x||^2 + nu (1'x - 1) + lam'(M x - rhs)`` has the closed form
    ``x_a = max(0, -(nu + c_a) / 2)`` with ``c = M' lam``; the best ``nu`` makes
    ``sum x = 1`` (found exactly by sorting, like a simplex projection).

    Args:
      matrix: ``[K, |A|]``; rhs: ``[K]``; lam: ``[K]``.
    """
    lam = np.maximum(np.nan_to_num(np.asarray(lam, dtype=np.float64)), 0.0)
    c = matrix.T @ lam  # [|A|]
    # x(nu) = max(0, (t - c) / 2) with t = -nu; sum x = 1 fixes t.
    order = np.sort(c)
    csum = np.cumsum(order)
    k = np.arange(1, order.size + 1)
    t_candidates = (2.0 + csum) / k
    valid = t_candidates > order
    j = int(np.flatnonzero(valid).max())
    t = t_candidates[j]
    x = np.maximum(0.0, (t - c) / 2.0)
    nu = -t
    return float(x @ x + nu * (x.sum() - 1.0) + c @ x - lam @ rhs)


def max_gini(
    payoffs: np.ndarray,
    concept: str,
    eps_hat: float | np.ndarray = 0.0,
    solver: str = "OSQP",
    *,
    fallback: str | None = "CLARABEL",
    gap_tol: float = GINI_GAP_TOL,
    feas_tol: float = FEASIBILITY_TOL,
    **solver_opts: object,
) -> ReferenceResult:
    """Maximum Gini (C)CE: ``min ||sigma||_2^2`` s.t. simplex and ``M sigma <= eps_hat``.

    A strictly convex QP, so the answer is unique. OSQP runs with polishing and tight
    tolerances; the answer is accepted when its cleaned joint is feasible to
    ``feas_tol`` and the certified duality gap (``gini_dual_bound``) is at most
    ``gap_tol``; otherwise ``fallback`` (an interior-point solver) is tried and the
    better certified answer is returned.

    Args:
      payoffs: ``[N, A1..AN]`` (normalised units expected; any units work).
      concept: "cce" or "ce".
      eps_hat: scalar or ``[N]`` approximation, in the units of ``payoffs``.
      solver: "OSQP" (default), "CLARABEL", "ECOS" or "SCS".
      fallback: solver tried when the first answer is not certified; None = none.
      gap_tol, feas_tol: acceptance tolerances (duality gap, constraint violation).
      **solver_opts: overrides of the tight defaults for ``solver``.

    Returns:
      ``ReferenceResult``: joint ``[A1..AN]`` (clipped, renormalised), ``objective``
      ``||joint||^2``, ``gaps``/``violation`` of the cleaned joint, ``duality_gap``
      ``objective - dual bound``. ``status`` is "optimal" only when certified;
      otherwise "optimal_inaccurate" (or the solver's failure status).
    """
    cp = import_cvxpy()
    payoffs = as_game(payoffs, "payoffs")
    concept = check_concept(concept)
    solver = check_solver(solver, GINI_SOLVERS)
    if fallback is not None:
        fallback = check_solver(fallback, GINI_SOLVERS, "fallback")
    shape = payoffs.shape[1:]
    num_players = payoffs.shape[0]
    eps = np.asarray(eps_hat, dtype=np.float64)
    eps = np.full(num_players, float(eps)) if eps.ndim == 0 else eps.reshape(-1)
    if eps.shape != (num_players,) or not np.all(np.isfinite(eps)):
        raise ValueError(f"eps_hat must be a finite scalar or [{num_players}] vector, got {eps_hat!r}")
    start = time.perf_counter()
    matrix, player = constraint_matrix(payoffs, concept)
    rhs = eps[player]
    rows_time = time.perf_counter() - start

    def attempt(name: str, opts: Mapping[str, object]) -> tuple[ReferenceResult, bool]:
        t0 = time.perf_counter()
        x = cp.Variable(matrix.shape[1], name="sigma")
        cons = [cp.sum(x) == 1, x >= 0]
        ineq = matrix @ x <= rhs if matrix.shape[0] else None
        if ineq is not None:
            cons.append(ineq)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(x)), cons)
        build = time.perf_counter() - t0
        status, solve_time, compile_time = run_solver(problem, name, solver_options(name, opts))
        joint = clean_joint(x.value, matrix.shape[1])
        if joint is None:
            joint = np.full(matrix.shape[1], 1.0 / matrix.shape[1])
            result = ReferenceResult(
                joint.reshape(shape), eps.copy(), math.nan, status, solve_time,
                rows_time + build + compile_time, name,
                player_max(matrix @ joint, player, num_players),
                math.inf if status.startswith("infeasible") else math.nan, None, math.nan,
            )
            return result, False
        expected = matrix @ joint
        gaps = player_max(expected, player, num_players)
        violation = float(np.max(np.maximum(expected - rhs, 0.0), initial=0.0))
        lam = (
            np.asarray(ineq.dual_value, dtype=np.float64).reshape(-1)
            if ineq is not None and ineq.dual_value is not None
            else np.zeros(matrix.shape[0])
        )
        objective = float(joint @ joint)
        duality_gap = objective - gini_dual_bound(matrix, rhs, lam)
        certified = status in OK_STATUSES and violation <= feas_tol and duality_gap <= gap_tol
        result = ReferenceResult(
            joint.reshape(shape), eps.copy(), objective,
            "optimal" if certified else ("optimal_inaccurate" if status.startswith("optimal") else status),
            solve_time, rows_time + build + compile_time, name, gaps, violation, lam, duality_gap,
        )
        return result, certified

    first, ok = attempt(solver, solver_opts)
    if ok or fallback is None or fallback == solver:
        return first
    second, ok2 = attempt(fallback, {})
    total = dict(solve_time=first.solve_time + second.solve_time, setup_time=first.setup_time + second.setup_time)
    if ok2:
        return second._replace(**total)

    def badness(r: ReferenceResult) -> tuple[float, float]:
        return (r.violation if math.isfinite(r.violation) else math.inf,
                r.duality_gap if math.isfinite(r.duality_gap) else math.inf)

    best = min((first, second), key=badness)
    return best._replace(**total)

