"""CVXPY / OSQP models: the primal polish, Maximum Gini and the independent reference.

Everything here works in NORMALISED units (DESIGN §5): ``payoffs: [N, A1..AN]`` is a
normalised game and ``SelectionParams`` comes from ``solvers.selection.resolve_selection``.

- ``reference_solve``: the eps-MWMRE primal of DESIGN §3 as an exponential-cone program
  (``cp.entr``), with the (C)CE constraint rows built here directly from the payoff
  tensor, independently of ``solvers.gains`` / ``solvers.dual``. With hard constraints
  it first restricts to the minimal face (one HiGHS LP, ``solvers.lp.minimal_face``) so
  that the interior-point solver keeps full accuracy, then sharpens the answer with a
  Newton solve on the solver's active set, kept only when it is a verified KKT point
  (``refine=False`` gives the plain CVXPY answer). Tests hold the dual solvers to it;
  benchmarks time it (construction, solver and refinement times are reported apart).
- ``max_gini``: ``min ||sigma||_2^2`` over the (C)CE polytope, a QP solved tightly with
  OSQP (polishing on) and checked by a dual bound; CLARABEL is the fallback.
- ``polish``: the finishing step of the dual solvers. Given a ``DualProblem`` (possibly
  restricted to a face by ``solvers.dual.restrict``) and an optional starting joint, it
  solves the primal on the support with CVXPY and returns a cleaned joint, eps, duals and
  an honest report of the remaining gap.

Flat orders: joints are C-order ``[|A|]`` (``joint.reshape(-1)``); constraint rows (and
every ``duals: [K]``) follow the layout of ``solvers.gains`` (CCE: player, deviation a';
CE: player, deviation a', recommendation a'' != a').
"""

from __future__ import annotations

import importlib
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse as sps

from solvers.dual import DualProblem
from solvers.gains import check_concept
from solvers.game import as_game
from solvers.lp import constraint_matrix, minimal_face
from solvers.selection import SelectionParams


def _import_cvxpy():
    """Imports CVXPY without JAX.

    On import CVXPY probes every optional solver; its MPAX probe imports JAX (~1 s, and
    ``solvers`` must never import JAX). Unless JAX is already loaded, the probe is
    answered "not installed" by a temporary ``sys.modules["jax"] = None``; the entry is
    removed again so that a later ``import jax`` works as usual.
    """
    if "jax" in sys.modules or "cvxpy" in sys.modules:
        return importlib.import_module("cvxpy")
    sys.modules["jax"] = None  # type: ignore[assignment]
    try:
        return importlib.import_module("cvxpy")
    finally:
        if sys.modules.get("jax", 0) is None:
            del sys.modules["jax"]


cp = _import_cvxpy()

__all__ = [
    "ENTROPY_SOLVERS",
    "GINI_SOLVERS",
    "ReferenceResult",
    "PolishResult",
    "constraint_matrix",
    "entropy_objective",
    "gini_dual_bound",
    "reference_solve",
    "max_gini",
    "polish",
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
#: A CLARABEL answer within this violation, even short of tol, ends the fallback chain:
#: ECOS and SCS are less accurate and, on large problems, far slower. Measured on MW-CE
#: (CLARABEL "inaccurate" at 1e-9..7e-8), ECOS was worse in all 9 such games from 8x8 to
#: 32x32 and took 28 s at 32x32 (CLARABEL 4.5 s) for nothing.
FALLBACK_SKIP_VIOLATION = 1e-6
#: Max Gini: accept OSQP's answer when the certified duality gap is at most this.
GINI_GAP_TOL = 1e-9

_OK_STATUSES = ("optimal",)


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


def _player_max(values: np.ndarray, player: np.ndarray, num_players: int) -> np.ndarray:
    out = np.full(num_players, -np.inf)
    np.maximum.at(out, player, values)
    out[np.isneginf(out)] = 0.0  # a player without deviations (CE, one action)
    return out


def _clean_joint(x: np.ndarray | None, size: int) -> np.ndarray | None:
    """Clips tiny negatives and renormalises; None when there is nothing usable."""
    if x is None or not np.all(np.isfinite(x)):
        return None
    x = np.maximum(np.asarray(x, dtype=np.float64).reshape(size), 0.0)
    total = x.sum()
    if total <= 0:
        return None
    return x / total


def _solver_options(solver: str, overrides: Mapping[str, object]) -> dict[str, object]:
    opts = dict(DEFAULT_SOLVER_OPTS.get(solver, {}))
    opts.update(overrides)
    return opts


def _check_solver(solver: str, allowed: Sequence[str], name: str = "solver") -> str:
    if not isinstance(solver, str) or solver.upper() not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {solver!r}")
    return solver.upper()


def _run(problem: cp.Problem, solver: str, opts: Mapping[str, object], warm: bool = False) -> tuple[str, float, float]:
    """Solves; returns (status, solve seconds, compile seconds). Never raises on failure."""
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


# ---------------------------------------------------------------------------------------
# Entropy objective (eps-MWMRE, DESIGN §3).
# ---------------------------------------------------------------------------------------


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
    dropped when ``rho`` is inf. ``-inf`` when mass sits where ``base_logits`` is -inf.

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


def _entropy_dual_value(
    matrix: sps.csr_array,
    player: np.ndarray,
    base: np.ndarray,
    alpha: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: float,
) -> float:
    """The dual loss ``L(alpha)`` (DESIGN §4) on the support where ``base`` is finite."""
    support = np.isfinite(base)
    lg = base[support] - matrix[:, support].T @ alpha
    top = np.max(lg)
    value = float(top + np.log(np.sum(np.exp(lg - top))))
    sums = np.bincount(player, weights=alpha, minlength=eps_hat.shape[0])
    if math.isinf(rho):
        return value + float(eps_hat @ sums)
    width = eps_plus - eps_hat
    return value + float(eps_plus @ sums + rho * width @ np.exp(-sums / rho))


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


def _entropy_model(
    matrix: sps.csr_array,
    player: np.ndarray,
    base_logits: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: float,
    free: np.ndarray | None = None,
) -> _EntropyModel:
    """``max <x, b> + H(x) - rho penalty`` s.t. simplex, ``M x <= eps`` (``== eps`` on free rows).

    Only the support (finite ``base_logits``) gets variables; the base logits are shifted
    by their maximum for conditioning (the simplex makes that a constant offset).
    """
    start = time.perf_counter()
    num_players = eps_hat.shape[0]
    num_rows = matrix.shape[0]
    support = np.isfinite(base_logits)
    base = base_logits[support]
    shift = float(base.max())
    sub = matrix[:, support].tocsr()
    free = np.zeros(num_rows, dtype=bool) if free is None else np.asarray(free, dtype=bool)
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
    # multipliers are 0.
    empty = np.diff(sub.indptr) == 0
    if hard:
        empty &= np.where(free, rhs_all == 0, rhs_all >= 0)
    else:
        empty &= free & False
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


class _Candidate(NamedTuple):
    joint: np.ndarray  # [|A|]
    eps: np.ndarray
    duals: np.ndarray
    objective: float
    gaps: np.ndarray
    violation: float
    duality_gap: float
    status: str
    solver: str


def _evaluate(
    joint: np.ndarray,
    eps_raw: np.ndarray | None,
    matrix: sps.csr_array,
    player: np.ndarray,
    base_logits: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: float,
    free: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """eps, gaps, violation and objective of a cleaned joint."""
    expected = matrix @ joint
    num_players = eps_hat.shape[0]
    gaps = _player_max(expected, player, num_players)
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


def _solve_entropy(
    matrix: sps.csr_array,
    player: np.ndarray,
    base_logits: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: float,
    free: np.ndarray,
    solver: str,
    opts: Mapping[str, object],
    joint0: np.ndarray | None = None,
    refine: bool = True,
) -> tuple[_Candidate | None, float, float]:
    """One CVXPY solve; returns (candidate or None, solve seconds, setup seconds)."""
    model = _entropy_model(matrix, player, base_logits, eps_hat, eps_plus, rho, free)
    warm = False
    if joint0 is not None and solver == "SCS":
        model.x.value = np.asarray(joint0, dtype=np.float64).reshape(-1)[model.support]
        warm = True
    status, solve_time, compile_time = _run(model.problem, solver, _solver_options(solver, opts), warm)
    setup_time = model.build_time + compile_time
    size = base_logits.shape[0]
    x = None if model.x.value is None else np.zeros(size)
    if x is not None:
        x[model.support] = model.x.value
    joint = _clean_joint(x, size)
    if joint is None:
        return None, solve_time, setup_time, 0.0
    eps_raw = None if model.eps is None or model.eps.value is None else model.eps.value
    eps, gaps, violation, objective = _evaluate(
        joint, eps_raw, matrix, player, base_logits, eps_hat, eps_plus, rho, free
    )
    duals = np.zeros(matrix.shape[0])
    for con, rows in ((model.ineq, model.ineq_rows), (model.eq, model.eq_rows)):
        if con is None:
            continue
        value = con.dual_value
        duals[rows] = np.nan if value is None else np.asarray(value, dtype=np.float64).reshape(-1)
    if np.all(np.isfinite(duals)):
        duals[~free] = np.maximum(duals[~free], 0.0)
        bound = _entropy_dual_value(matrix, player, base_logits, duals, eps_hat, eps_plus, rho)
        duality_gap = bound - objective
    else:
        duality_gap = math.nan
    cand = _Candidate(joint, eps, duals, objective, gaps, violation, duality_gap, status, solver)
    refine_time = 0.0
    if refine and status.startswith("optimal"):
        start = time.perf_counter()
        deadline = start + max(REFINE_MIN_SECONDS, 2.0 * solve_time)
        sharp = _refine(cand, matrix, player, base_logits, eps_hat, eps_plus, rho, free, deadline)
        refine_time = time.perf_counter() - start
        if sharp is not None:
            cand = sharp._replace(status="optimal", solver=f"{solver}+newton")
    return cand, solve_time, setup_time, refine_time


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


def _refine(
    cand: _Candidate,
    matrix: sps.csr_array,
    player: np.ndarray,
    base_logits: np.ndarray,
    eps_hat: np.ndarray,
    eps_plus: np.ndarray,
    rho: float,
    free: np.ndarray,
    deadline: float = math.inf,
) -> _Candidate | None:
    """Sharpens an interior-point answer to machine precision, or None.

    Guesses the active set from the solver's multipliers, solves the dual on it exactly
    (``_newton_on_active``) and accepts only a KKT point: multipliers >= 0 off ``free``
    and every constraint satisfied (to ``REFINE_GRAD_TOL``). Wrong guesses are corrected
    by dropping rows with negative multipliers and adding violated rows (a few rounds).
    """
    if not np.all(np.isfinite(cand.duals)):
        return None
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
    eps_out, gaps, violation, objective = _evaluate(
        joint, None if hard else eps, matrix, player, base_logits, eps_hat, eps_plus, rho, free
    )
    bound = _entropy_dual_value(matrix, player, base_logits, alpha, eps_hat, eps_plus, rho)
    refined = _Candidate(
        joint, eps_out, alpha, objective, gaps, violation, bound - objective, cand.status, cand.solver
    )
    if violation > max(cand.violation, FEASIBILITY_TOL) or objective < cand.objective - 1e-8:
        return None
    return refined


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
    HiGHS LP (``solvers.lp.minimal_face``) and solves on it: zero mass off its support,
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
    solver = _check_solver(solver, ENTROPY_SOLVERS)
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
        found = minimal_face(matrix[:, on], eps_hat[player])
        rows_time += time.perf_counter() - start
        if not found.feasible:
            joint = on / on.sum()
            return ReferenceResult(
                joint.reshape(shape), eps_hat.copy(), math.nan, "infeasible", 0.0, rows_time, solver,
                _player_max(matrix @ joint, player, num_players), math.inf, None, math.nan,
            )
        support = np.zeros_like(on)
        support[np.flatnonzero(on)[found.support]] = True
        base = np.where(support, base, -np.inf)
        free = found.equalities
    cand, solve_time, setup_time, refine_time = _solve_entropy(
        matrix, player, base, eps_hat, eps_plus, rho, free, solver, solver_opts, refine=refine
    )
    setup_time += rows_time
    if cand is None:
        support = np.isfinite(base)
        joint = support / support.sum()
        return ReferenceResult(
            joint.reshape(shape), eps_hat.copy(), math.nan, "solver_error", solve_time, setup_time, solver,
            _player_max(matrix @ joint, player, num_players), math.nan, None, math.nan,
        )
    return ReferenceResult(
        cand.joint.reshape(shape), cand.eps, cand.objective, cand.status, solve_time, setup_time,
        cand.solver, cand.gaps, cand.violation, cand.duals, cand.duality_gap, refine_time,
    )


# ---------------------------------------------------------------------------------------
# Maximum Gini (DESIGN §7): min ||sigma||_2^2 over the (C)CE polytope.
# ---------------------------------------------------------------------------------------


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
    payoffs = as_game(payoffs, "payoffs")
    concept = check_concept(concept)
    solver = _check_solver(solver, GINI_SOLVERS)
    if fallback is not None:
        fallback = _check_solver(fallback, GINI_SOLVERS, "fallback")
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
        status, solve_time, compile_time = _run(problem, name, _solver_options(name, opts))
        joint = _clean_joint(x.value, matrix.shape[1])
        if joint is None:
            joint = np.full(matrix.shape[1], 1.0 / matrix.shape[1])
            result = ReferenceResult(
                joint.reshape(shape), eps.copy(), math.nan, status, solve_time,
                rows_time + build + compile_time, name,
                _player_max(matrix @ joint, player, num_players),
                math.inf if status.startswith("infeasible") else math.nan, None, math.nan,
            )
            return result, False
        expected = matrix @ joint
        gaps = _player_max(expected, player, num_players)
        violation = float(np.max(np.maximum(expected - rhs, 0.0), initial=0.0))
        lam = (
            np.asarray(ineq.dual_value, dtype=np.float64).reshape(-1)
            if ineq is not None and ineq.dual_value is not None
            else np.zeros(matrix.shape[0])
        )
        objective = float(joint @ joint)
        duality_gap = objective - gini_dual_bound(matrix, rhs, lam)
        certified = status in _OK_STATUSES and violation <= feas_tol and duality_gap <= gap_tol
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


# ---------------------------------------------------------------------------------------
# Polish: the finishing step of the dual solvers.
# ---------------------------------------------------------------------------------------


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
      face: first restrict to the minimal face (``solvers.lp.minimal_face``, one HiGHS
        LP) so that the interior-point solver has a Slater point and full accuracy.
        None (default) = only for hard constraints on a problem that is not restricted
        yet (all ``base_logits`` finite, no ``free`` rows). With ``True`` on a restricted
        problem the LP runs on its support and adds any further equalities.
      **solver_opts: overrides of the tight defaults of ``solver`` (not the fallbacks').

    Returns:
      ``PolishResult`` with a flat ``[|A|]`` joint.
    """
    solver = _check_solver(solver, ENTROPY_SOLVERS)
    chain = [solver] + [_check_solver(s, ENTROPY_SOLVERS, "fallbacks") for s in fallbacks if s.upper() != solver]
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
        found = minimal_face(matrix[:, on], eps_hat[problem.player])
        if found.feasible:
            support = np.zeros_like(on)
            support[np.flatnonzero(on)[found.support]] = True
            base = np.where(support, base, -np.inf)
            free = free | found.equalities
    setup_total = time.perf_counter() - start
    solve_total = 0.0
    refine_total = 0.0

    start_cand = None
    if joint0 is not None:
        j0 = np.asarray(joint0, dtype=np.float64).reshape(-1)
        if j0.shape != (num_joint,):
            raise ValueError(f"joint0 has {j0.size} entries; the problem has {num_joint} joint actions")
        j0 = _clean_joint(np.where(np.isfinite(base), j0, 0.0), num_joint)
        if j0 is not None:
            eps0, gaps0, viol0, obj0 = _evaluate(j0, None, matrix, problem.player, base, eps_hat, eps_plus, rho, free)
            start_cand = _Candidate(
                j0, eps0, np.zeros(problem.num_constraints), obj0, gaps0, viol0, math.nan, "start", "start"
            )

    candidates: list[_Candidate] = []
    for i, name in enumerate(chain):
        opts = solver_opts if i == 0 else {}
        cand, solve_time, setup_time, refine_time = _solve_entropy(
            matrix, problem.player, base, eps_hat, eps_plus, rho, free, name, opts,
            joint0=start_cand.joint if start_cand else None, refine=refine,
        )
        solve_total += solve_time
        refine_total += refine_time
        setup_total += setup_time
        if cand is None:
            continue
        candidates.append(cand)
        if cand.status in _OK_STATUSES and cand.violation <= feas_tol:
            break
        if name == "CLARABEL" and cand.violation <= FALLBACK_SKIP_VIOLATION:
            break

    pool = candidates + ([start_cand] if start_cand is not None else [])
    if not pool:  # every solver failed and there is no start joint
        support = np.isfinite(base)
        best = _Candidate(
            support / support.sum(), eps_hat.copy(), np.zeros(problem.num_constraints), math.nan,
            np.full(eps_hat.shape[0], math.nan), math.inf, math.nan, "failed", chain[-1],
        )
        pool = [best]
    feasible = [c for c in pool if c.violation <= feas_tol and math.isfinite(c.objective)]
    best = max(feasible, key=lambda c: c.objective) if feasible else min(pool, key=lambda c: c.violation)
    if not candidates:
        status = "failed"
    elif feasible and any(c.status in _OK_STATUSES for c in candidates):
        status = "optimal"
    else:
        status = "inaccurate"
    duals = best.duals if np.all(np.isfinite(best.duals)) else np.zeros(problem.num_constraints)
    return PolishResult(
        best.joint, best.eps, duals, best.objective, best.gaps, best.violation, best.duality_gap,
        status, best.solver, solve_total, setup_total, refine_total,
    )
