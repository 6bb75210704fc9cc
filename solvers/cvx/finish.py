"""The finishing step of the dual solvers: the eps-MWMRE primal of a ``DualProblem``
solved with CVXPY on its support (``polish``), returning a cleaned joint, eps, duals and
an honest report of the remaining gap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse as sps

from solvers.cvx.common import (
    ENTROPY_SOLVERS,
    FEASIBILITY_TOL,
    OK_STATUSES,
    check_solver,
    clean_joint,
)
from solvers.cvx.entropy import solve_entropy
from solvers.cvx.objective import Candidate, EntropyProblem, evaluate_joint
from solvers.dual import DualProblem
from solvers.face import polytope_face

__all__ = ["FALLBACK_SKIP_VIOLATION", "PolishResult", "polish"]

#: A CLARABEL answer within this violation, even short of tol, ends the fallback chain:
#: ECOS and SCS are less accurate and, on large problems, far slower
#: (benchmarks/results/policy_constants.md).
FALLBACK_SKIP_VIOLATION = 1e-6


class PolishResult(NamedTuple):
    """What ``polish`` returns (normalised units, flat joint order).

    Attributes:
      joint: ``[|A|]`` cleaned joint; exactly 0 off the problem's support.
      eps: ``[N]`` approximation (``eps_hat`` when hard; else ``max(eps, gaps)``).
      duals: ``[K]`` multipliers in the gains layout (>= 0 except on ``free`` rows); the
        dual loss at these duals bounds the optimum (``duality_gap``). Zeros when the
        start joint was kept.
      objective: primal objective at ``(joint, eps)`` (``solvers.dual.primal_objective``).
      gaps: ``[N]`` per-player max expected gain of ``joint``.
      violation: ``max(0, gaps_p - eps_p)`` over players, and over ``|E_joint[M_k] - eps|``
        on the equality rows (0 = feasible).
      duality_gap: ``L(duals) - objective`` (NaN when the start joint was kept).
      status: "optimal" (a solver converged and the cleaned joint is feasible to
        ``feas_tol``), "inaccurate" (best joint found, some tolerance not met) or
        "failed" (no solver produced a joint; the start joint is returned as given).
      solver: the solver whose joint is returned ("start" when ``joint0`` was better).
      solve_time: solver seconds (all attempts); setup_time: model build/compile seconds.
      refine_time: seconds of Newton refinement (all attempts).
    """

    joint: np.ndarray
    eps: np.ndarray
    duals: np.ndarray
    objective: float
    gaps: np.ndarray
    violation: float
    duality_gap: float
    status: str
    solver: str
    solve_time: float
    setup_time: float
    refine_time: float = 0.0



def _problem_matrix(problem: DualProblem) -> sps.csr_array:
    num_joint = problem.rows.shape[0]
    cols = np.broadcast_to(np.arange(num_joint)[:, None], problem.rows.shape)
    matrix = sps.coo_array(
        (problem.values.ravel(), (problem.rows.ravel(), cols.ravel())),
        shape=(problem.num_constraints, num_joint),
    ).tocsr()
    matrix.sum_duplicates()
    return matrix


def polish(
    problem: DualProblem,
    joint0: np.ndarray | None = None,
    *,
    solver: str = "CLARABEL",
    fallbacks: Sequence[str] = ("ECOS",),
    feas_tol: float = FEASIBILITY_TOL,
    face: bool | None = None,
    refine: bool = True,
    **solver_opts: object,
) -> PolishResult:
    """Finishes a dual solve by solving the primal with CVXPY on the problem's support.

    The model is the eps-MWMRE primal of ``problem`` (DESIGN §3): variables only on the
    support ``isfinite(problem.base_logits)`` (zero mass elsewhere, as after
    ``solvers.dual.restrict``), rows with ``problem.free`` as equalities
    ``E[M_k] == eps``, the rest as ``E[M_k] <= eps``; hard (``rho = inf``) or soft.

    Typical call from the dual solvers::

        res = polish(problem, joint_from_duals(problem, alpha))
        if res.status == "optimal": sigma, eps, alpha = res.joint, res.eps, res.duals

    Steps: solve with ``solver``; if it fails or its cleaned joint violates the
    constraints by more than ``feas_tol``, try each of ``fallbacks`` (not after a CLARABEL
    answer within ``FALLBACK_SKIP_VIOLATION``: the fallbacks are less accurate). Among the solver
    answers and ``joint0`` (if given), return the feasible one (violation <= feas_tol)
    with the highest objective, else the least infeasible. No failure is silent: the
    status says what happened.

    Args:
      problem: the dual problem (normalised units), possibly restricted to a face.
      joint0: ``[|A|]`` (or ``[A1..AN]``) starting joint, e.g. ``sigma(alpha)`` of the
        stalled dual solver; kept if no solver does better. SCS uses it as a warm start.
      solver: "CLARABEL" (default), "ECOS" or "SCS".
      fallbacks: solvers tried in order when ``solver`` does not give a feasible joint.
      feas_tol: largest accepted constraint violation (normalised units).
      face: first restrict to the minimal face (``solvers.face.polytope_face``, one HiGHS
        LP) so that the interior-point solver has a Slater point and full accuracy.
        None (default) = only for hard constraints on a problem that is not restricted
        yet (all ``base_logits`` finite, no ``free`` rows). With ``True`` on a restricted
        problem the LP runs on its support and adds any further equalities.
      **solver_opts: overrides of the tight defaults of ``solver`` (not the fallbacks').

    Returns:
      ``PolishResult`` with a flat ``[|A|]`` joint.
    """
    solver = check_solver(solver, ENTROPY_SOLVERS)
    chain = [solver] + [check_solver(s, ENTROPY_SOLVERS, "fallbacks") for s in fallbacks if s.upper() != solver]
    num_joint = problem.rows.shape[0]
    base = np.asarray(problem.base_logits, dtype=np.float64).reshape(-1)
    if base.shape != (num_joint,) or not np.any(np.isfinite(base)):
        raise ValueError(f"problem.base_logits must be [{num_joint}] with some finite entry")
    eps_hat = np.asarray(problem.eps_hat, dtype=np.float64)
    eps_plus = np.asarray(problem.eps_plus, dtype=np.float64)
    rho = float(problem.rho)
    free = np.asarray(problem.free, dtype=bool)
    start = time.perf_counter()
    matrix = _problem_matrix(problem)
    if face is None:
        face = math.isinf(rho) and bool(np.all(np.isfinite(base))) and not free.any()
    if face and math.isinf(rho):
        on = np.isfinite(base)
        found = polytope_face(matrix[:, on], eps_hat[problem.player])
        if found.feasible:
            support = np.zeros_like(on)
            support[np.flatnonzero(on)[found.support]] = True
            base = np.where(support, base, -np.inf)
            free = free | found.equalities
    setup_total = time.perf_counter() - start
    solve_total = 0.0
    refine_total = 0.0

    prob = EntropyProblem(matrix, problem.player, base, eps_hat, eps_plus, rho, free)
    start_cand = None
    if joint0 is not None:
        j0 = np.asarray(joint0, dtype=np.float64).reshape(-1)
        if j0.shape != (num_joint,):
            raise ValueError(f"joint0 has {j0.size} entries; the problem has {num_joint} joint actions")
        j0 = clean_joint(np.where(np.isfinite(base), j0, 0.0), num_joint)
        if j0 is not None:
            eps0, gaps0, viol0, obj0 = evaluate_joint(j0, None, prob)
            start_cand = Candidate(
                j0, eps0, np.zeros(problem.num_constraints), obj0, gaps0, viol0, math.nan, "start", "start"
            )

    candidates: list[Candidate] = []
    for i, name in enumerate(chain):
        opts = solver_opts if i == 0 else {}
        cand, solve_time, setup_time, refine_time = solve_entropy(
            prob, name, opts, joint0=start_cand.joint if start_cand else None, refine=refine
        )
        solve_total += solve_time
        refine_total += refine_time
        setup_total += setup_time
        if cand is None:
            continue
        candidates.append(cand)
        if cand.status in OK_STATUSES and cand.violation <= feas_tol:
            break
        if name == "CLARABEL" and cand.violation <= FALLBACK_SKIP_VIOLATION:
            break

    pool = candidates + ([start_cand] if start_cand is not None else [])
    if not pool:  # every solver failed and there is no start joint
        support = np.isfinite(base)
        best = Candidate(
            support / support.sum(), eps_hat.copy(), np.zeros(problem.num_constraints), math.nan,
            np.full(eps_hat.shape[0], math.nan), math.inf, math.nan, "failed", chain[-1],
        )
        pool = [best]
    feasible = [c for c in pool if c.violation <= feas_tol and math.isfinite(c.objective)]
    best = max(feasible, key=lambda c: c.objective) if feasible else min(pool, key=lambda c: c.violation)
    if not candidates:
        status = "failed"
    elif feasible and any(c.status in OK_STATUSES for c in candidates):
        status = "optimal"
    else:
        status = "inaccurate"
    duals = best.duals if np.all(np.isfinite(best.duals)) else np.zeros(problem.num_constraints)
    return PolishResult(
        best.joint, best.eps, duals, best.objective, best.gaps, best.violation, best.duality_gap,
        status, best.solver, solve_total, setup_total, refine_total,
    )
