"""The eps-MWMRE reference: the entropy selection primal (DESIGN §3) as an
exponential-cone program, on the minimal face when constraints are hard.

``reference_solve`` builds the (C)CE rows straight from the payoff tensor
(``solvers.lp.constraint_matrix``, independently of ``solvers.gains`` / ``solvers.dual``)
and is what the tests hold the dual solvers to; ``solve_entropy`` is the one CVXPY
solve (plus Newton refinement) that ``solvers.cvx.finish`` also runs. ME, MRE, MW and
their mixes are this model with different base logits and eps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse as sps

from solvers.cvx.common import (
    ENTROPY_SOLVERS,
    ReferenceResult,
    check_solver,
    clean_joint,
    import_cvxpy,
    player_max,
    run_solver,
    solver_options,
)
from solvers.cvx.gini import max_gini
from solvers.cvx.objective import Candidate, EntropyProblem, entropy_dual_loss, evaluate_joint
from solvers.cvx.refine import REFINE_MIN_SECONDS, refine_candidate
from solvers.face import polytope_face
from solvers.gains import check_concept
from solvers.game import as_game
from solvers.lp import constraint_matrix
from solvers.selection import SelectionParams

if TYPE_CHECKING:
    import cvxpy as cp

__all__ = ["reference_solve", "solve_entropy"]


class _EntropyModel(NamedTuple):
    problem: cp.Problem
    x: cp.Variable
    eps: cp.Variable | None
    ineq: cp.Constraint | None
    eq: cp.Constraint | None
    ineq_rows: np.ndarray
    eq_rows: np.ndarray
    support: np.ndarray
    build_time: float


def _entropy_model(prob: EntropyProblem) -> _EntropyModel:
    """``max <x, b> + H(x) - rho penalty`` s.t. simplex, ``M x <= eps`` (``== eps`` on free rows).

    Only the support (finite ``base_logits``) gets variables; the base logits are shifted
    by their maximum for conditioning (the simplex makes that a constant offset).
    """
    cp = import_cvxpy()
    start = time.perf_counter()
    matrix, player, base_logits, eps_hat, eps_plus, rho, free = prob
    num_players = eps_hat.shape[0]
    num_rows = matrix.shape[0]
    support = np.isfinite(base_logits)
    base = base_logits[support]
    shift = float(base.max())
    sub = matrix[:, support].tocsr()
    free = np.asarray(free, dtype=bool)
    x = cp.Variable(int(support.sum()), name="sigma")
    objective = (base - shift) @ x + cp.sum(cp.entr(x)) + shift
    constraints = [cp.sum(x) == 1]
    hard = math.isinf(rho)
    eps_var = None
    if hard:
        rhs_all = eps_hat[player]
    else:
        eps_var = cp.Variable(num_players, name="eps")
        slack = eps_plus - eps_var
        width = eps_plus - eps_hat
        # -rho * sum s ln(s / (e w)) = rho * sum [entr(s) + s (ln w + 1)]
        objective = objective + rho * (cp.sum(cp.entr(slack)) + slack @ (np.log(width) + 1.0))
        constraints.append(eps_var <= eps_plus)
        owner = sps.csr_array(
            (np.ones(num_rows), (np.arange(num_rows), player)), shape=(num_rows, num_players)
        )
    # Rows that vanish on the support are constant: with hard constraints they are
    # dropped when satisfied (redundant rows hurt interior-point accuracy); their
    # multipliers are 0. Soft constraints keep every row (each bounds its eps).
    if hard:
        empty = (np.diff(sub.indptr) == 0) & np.where(free, rhs_all == 0, rhs_all >= 0)
    else:
        empty = np.zeros(num_rows, dtype=bool)
    ineq_rows = np.flatnonzero(~free & ~empty)
    eq_rows = np.flatnonzero(free & ~empty)
    ineq = eq = None
    if ineq_rows.size:
        rhs = rhs_all[ineq_rows] if hard else owner[ineq_rows] @ eps_var
        ineq = sub[ineq_rows] @ x <= rhs
        constraints.append(ineq)
    if eq_rows.size:
        rhs = rhs_all[eq_rows] if hard else owner[eq_rows] @ eps_var
        eq = sub[eq_rows] @ x == rhs
        constraints.append(eq)
    problem = cp.Problem(cp.Maximize(objective), constraints)
    return _EntropyModel(
        problem, x, eps_var, ineq, eq, ineq_rows, eq_rows, support, time.perf_counter() - start
    )


def solve_entropy(
    prob: EntropyProblem,
    solver: str,
    opts: Mapping[str, object],
    joint0: np.ndarray | None = None,
    refine: bool = True,
) -> tuple[Candidate | None, float, float, float]:
    """One CVXPY solve; returns (candidate or None, solve, setup and refine seconds)."""
    matrix, player, base_logits, eps_hat, eps_plus, rho, free = prob
    model = _entropy_model(prob)
    warm = False
    if joint0 is not None and solver == "SCS":
        model.x.value = np.asarray(joint0, dtype=np.float64).reshape(-1)[model.support]
        warm = True
    status, solve_time, compile_time = run_solver(model.problem, solver, solver_options(solver, opts), warm)
    setup_time = model.build_time + compile_time
    size = base_logits.shape[0]
    x = None if model.x.value is None else np.zeros(size)
    if x is not None:
        x[model.support] = model.x.value
    joint = clean_joint(x, size)
    if joint is None:
        return None, solve_time, setup_time, 0.0
    eps_raw = None if model.eps is None or model.eps.value is None else model.eps.value
    eps, gaps, violation, objective = evaluate_joint(joint, eps_raw, prob)
    duals = np.zeros(matrix.shape[0])
    for con, rows in ((model.ineq, model.ineq_rows), (model.eq, model.eq_rows)):
        if con is None:
            continue
        value = con.dual_value
        duals[rows] = np.nan if value is None else np.asarray(value, dtype=np.float64).reshape(-1)
    if np.all(np.isfinite(duals)):
        duals[~free] = np.maximum(duals[~free], 0.0)
        bound = entropy_dual_loss(prob, duals)
        duality_gap = bound - objective
    else:
        duality_gap = math.nan
    cand = Candidate(joint, eps, duals, objective, gaps, violation, duality_gap, status, solver)
    refine_time = 0.0
    if refine and status.startswith("optimal"):
        start = time.perf_counter()
        deadline = start + max(REFINE_MIN_SECONDS, 2.0 * solve_time)
        sharp = refine_candidate(cand, prob, deadline)
        refine_time = time.perf_counter() - start
        if sharp is not None:
            cand = sharp._replace(status="optimal", solver=f"{solver}+newton")
    return cand, solve_time, setup_time, refine_time



def _validated_params(params: SelectionParams, num_players: int, num_joint: int) -> tuple[np.ndarray, ...]:
    base = np.asarray(params.base_logits, dtype=np.float64).reshape(-1)
    if base.shape != (num_joint,):
        raise ValueError(f"params.base_logits has shape {base.shape}; expected [{num_joint}]")
    if not np.any(np.isfinite(base)) or np.any(np.isnan(base)) or np.any(base == np.inf):
        raise ValueError("params.base_logits must be finite or -inf, with some finite entry")
    eps_hat = np.asarray(params.eps_hat, dtype=np.float64).reshape(-1)
    eps_plus = np.asarray(params.eps_plus, dtype=np.float64).reshape(-1)
    for name, value in (("eps_hat", eps_hat), ("eps_plus", eps_plus)):
        if value.shape != (num_players,):
            raise ValueError(f"params.{name} has shape {value.shape}; expected [{num_players}]")
    return base, eps_hat, eps_plus


def reference_solve(
    payoffs: np.ndarray,
    concept: str,
    params: SelectionParams,
    solver: str = "CLARABEL",
    *,
    face: bool | None = None,
    refine: bool = True,
    **solver_opts: object,
) -> ReferenceResult:
    """Solves the eps-MWMRE selection problem (DESIGN §3) with CVXPY: the reference.

        max_{sigma, eps}  <sigma, base_logits> + H(sigma) - rho sum_p s_p ln(s_p / (e w_p))
        s.t.              sigma in simplex,  M sigma <= eps_{p(k)}  (eps = eps_hat if hard)

    with ``s = eps_plus - eps``, ``w = eps_plus - eps_hat``. ``M`` is built by
    ``constraint_matrix`` straight from the payoff tensor. A ``params`` with
    ``objective="gini"`` is passed on to ``max_gini``.

    With hard constraints the polytope may lie on a face of the simplex (most CEs of
    random games, DESIGN §4b); interior-point solvers then lose accuracy (no Slater
    point). ``face=True`` (the default when hard) first finds the minimal face with one
    HiGHS LP (``solvers.face.polytope_face``) and solves on it: zero mass off its support,
    implicit equalities as equality constraints.

    Args:
      payoffs: ``[N, A1..AN]`` normalised payoffs.
      concept: "cce" or "ce".
      params: ``SelectionParams`` of the normalised game (``resolve_selection``);
        ``base_logits`` may be -inf (those joint actions get zero mass).
      solver: "CLARABEL" (default), "ECOS" or "SCS".
      face: restrict to the minimal face first; None = when constraints are hard.
      refine: sharpen the interior-point answer (joint accurate to ~1e-6 only) with a
        Newton solve of the dual on the solver's active set; kept only when it is a
        verified KKT point (multipliers >= 0, constraints met, gradient <= 1e-12), and
        then ``solver`` reads e.g. "CLARABEL+newton" and the status "optimal".
      **solver_opts: overrides of the tight defaults (``DEFAULT_SOLVER_OPTS``).

    Returns:
      ``ReferenceResult`` (joint ``[A1..AN]``); ``status`` is CVXPY's string
      ("infeasible" when no joint meets ``eps_hat``; ``setup_time`` includes the face LP). A failed
      solve returns a uniform-over-support joint with status "solver_error" and NaN
      objective rather than raising.
    """
    payoffs = as_game(payoffs, "payoffs")
    concept = check_concept(concept)
    if params.objective == "gini":
        if math.isfinite(float(np.max(params.eps_plus))) or not math.isinf(params.rho):
            raise ValueError("Max Gini takes hard constraints (rho = inf)")
        return max_gini(payoffs, concept, params.eps_hat, solver="OSQP", **solver_opts)
    if params.objective != "entropy":
        raise ValueError(f"params.objective must be 'entropy' or 'gini', got {params.objective!r}")
    solver = check_solver(solver, ENTROPY_SOLVERS)
    shape = payoffs.shape[1:]
    num_players = payoffs.shape[0]
    start = time.perf_counter()
    matrix, player = constraint_matrix(payoffs, concept)
    rows_time = time.perf_counter() - start
    base, eps_hat, eps_plus = _validated_params(params, num_players, matrix.shape[1])
    rho = float(params.rho)
    free = np.zeros(matrix.shape[0], dtype=bool)
    if face is None:
        face = math.isinf(rho)
    if face and math.isinf(rho):
        start = time.perf_counter()
        on = np.isfinite(base)
        found = polytope_face(matrix[:, on], eps_hat[player])
        rows_time += time.perf_counter() - start
        if not found.feasible:
            joint = on / on.sum()
            return ReferenceResult(
                joint.reshape(shape), eps_hat.copy(), math.nan, "infeasible", 0.0, rows_time, solver,
                player_max(matrix @ joint, player, num_players), math.inf, None, math.nan,
            )
        support = np.zeros_like(on)
        support[np.flatnonzero(on)[found.support]] = True
        base = np.where(support, base, -np.inf)
        free = found.equalities
    cand, solve_time, setup_time, refine_time = solve_entropy(
        EntropyProblem(matrix, player, base, eps_hat, eps_plus, rho, free), solver, solver_opts, refine=refine
    )
    setup_time += rows_time
    if cand is None:
        support = np.isfinite(base)
        joint = support / support.sum()
        return ReferenceResult(
            joint.reshape(shape), eps_hat.copy(), math.nan, "solver_error", solve_time, setup_time, solver,
            player_max(matrix @ joint, player, num_players), math.nan, None, math.nan,
        )
    return ReferenceResult(
        cand.joint.reshape(shape), cand.eps, cand.objective, cand.status, solve_time, setup_time,
        cand.solver, cand.gaps, cand.violation, cand.duals, cand.duality_gap, refine_time,
    )


