"""The stage boundary in normalised units: ``refine_batch`` and its ``DualResult``.

A batch of normalised games of one shape (``solvers.game.normalise_batch``) and a
resolved selection go through stages (``Stage``): projected Newton and/or the
accelerated gradient method from ``alpha0`` (DESIGN §4), the face of hard constraints
that do not converge (§4b: guessed from Newton's iterate and certified LP-free,
``solvers.face_guess``, else the facial-reduction LP) and a restricted solve, and the CVXPY finish
for games still short of tolerance. Every stage reports one ``Status``; the certificate
is computed once at the end. ``solvers.units.to_solutions`` turns a ``DualResult`` into
``Solution``s in payoff units. Which stages run, and for how long, is
``solvers.policy``'s ``SolverPolicy``.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from solvers import face_cert
from solvers import kernels as kn
from solvers import policy as pol
from solvers.checks import FACE_MODES, check_method
from solvers.dual import DualProblem
from solvers.face import Face, lift_duals, support_face
from solvers.face_guess import solve_on_guessed_faces
from solvers.gains import GainLayout, check_concept, gain_layout
from solvers.gradient import GradientOptions, gradient_batch
from solvers.newton import (
    BLOCK_LIMIT,
    DIVERGED,
    MAX_ITER,
    OPTIMAL,
    STALLED,
    NewtonOptions,
    newton_batch,
)
from solvers.selection import SelectionParams
from solvers.solution import Status

__all__ = ["DualResult", "RefineResult", "Stage", "finish_status", "refine_batch", "solver_status"]


class Stage(str, enum.Enum):
    """A stage a game went through; ``Solution.method`` is their values joined by "+"."""

    NEWTON = "newton"
    GD = "gd"
    FACE = "face"
    CVXPY = "cvxpy"
    NEWTON_CG = "newton-cg"

    def __str__(self) -> str:
        return self.value


#: The compiled dual solvers' status codes (``solvers.newton``) as a ``Status``.
_SOLVER_STATUS = {
    OPTIMAL: Status.OPTIMAL,
    MAX_ITER: Status.MAX_ITER,
    BLOCK_LIMIT: Status.MAX_ITER,
    STALLED: Status.INACCURATE,
    DIVERGED: Status.INACCURATE,
}


def solver_status(code: int) -> Status:
    """The ``Status`` of a compiled dual solver's (Newton, FISTA, newton-cg) status code."""
    return _SOLVER_STATUS[int(code)]


def finish_status(cvx_status: str, violation: float, duality_gap: float, tol: float) -> Status:
    """The ``Status`` of a CVXPY answer (the finish or the reference model): optimal only
    when CVXPY says so and the violation and the duality gap are within ``tol``."""
    if cvx_status == "infeasible":
        return Status.INFEASIBLE
    if cvx_status == "optimal" and violation <= tol and abs(duality_gap) <= tol:
        return Status.OPTIMAL
    return Status.INACCURATE


class DualResult(NamedTuple):
    """Per-game outcome of the dual stages of a batch of one shape (normalised units).

    Attributes:
      joint: ``[B, A1..AN]``; alpha: ``[B, K]`` non-negative duals with
        ``sigma(alpha) = joint`` (lifted off a face, see ``solvers.face.lift_duals``).
      eps: ``[B, N]`` certified approximation ``eps'``; gaps: ``[B, N]`` per-player
        ``max_dev E[gain]``; violation: ``[B]`` ``max_k (E[M_k] - eps_k)^+``;
      kkt: ``[B]`` KKT residual (None: not measured, e.g. the CVXPY reference);
        duality_gap: ``[B]``; objective: ``[B]`` primal value.
      iterations: ``[B]`` dual-solver iterations (all passes).
      status: ``B`` ``Status`` values.
      stages: per game, the ``Stage`` values it went through (a CVXPY solver's name may
        follow ``Stage.CVXPY``); ``method`` joins them with "+".
      face: ``[B]`` bool, True where the game was solved on a face: the facial-reduction
        LP's, or one guessed and certified without it (``solvers.face_guess``; None: not
        applicable).
      timings: seconds per stage for the whole batch.
      restricted_alpha: ``[B, K]`` the duals before ``lift_duals`` (sign-free on the
        face's implicit equalities, moderate in size; equal to ``alpha`` without a face).
      info: per-game extra diagnostics for ``Solution.info`` (None: none).
    """

    joint: np.ndarray
    alpha: np.ndarray
    eps: np.ndarray
    gaps: np.ndarray
    violation: np.ndarray
    kkt: np.ndarray | None
    duality_gap: np.ndarray
    objective: np.ndarray
    iterations: np.ndarray
    status: tuple[Status, ...]
    stages: tuple[tuple[str, ...], ...]
    face: np.ndarray | None
    timings: Mapping[str, float]
    restricted_alpha: np.ndarray | None = None
    info: tuple[Mapping[str, object], ...] | None = None

    @property
    def method(self) -> tuple[str, ...]:
        """Per game, the stages joined by "+" ("newton", "gd+newton", "newton+face+cvxpy", ...)."""
        return tuple("+".join(s) for s in self.stages)


#: The name ``refine_batch``'s result had before it was shared by every stage.
RefineResult = DualResult


#: Extra Newton passes of ``face_after`` iterations, each from a fresh damping multiplier,
#: before a hard-constraint game not yet optimal gets the facial-reduction LP. One retry
#: sends 202 -> 91 of 4,096 random 8x8 ME-CE games to the LP for +8 % Newton iterations,
#: but the games it then finishes without the face end certified to tolerance with small
#: masses instead of exact zeros: joints up to 4.9e-6 from the face's (8 games above
#: 1e-7), so it is off by default (benchmarks/results/solvers_suite_ce_face.md).
FACE_RETRIES = 0
# The face restart: on the face, Newton from the stalled duals converges in a few iterations on most games
# (p90 7 on 8x8 ME-CE) but can stall: one in 202 of those 8x8 games diverged, and a 4x5
# ME-CE game (then in tests/test_api.py) reached the 1,000-iteration cap, short of tolerance.
# From zero all 202 converged (p100 101). So the face pass from the stalled duals gets
# ``face_after`` iterations, and the games it leaves restart from zero with the full cap
# (``_plan_passes``; benchmarks/results/solvers_suite_ce_face.md).


class _Pass(NamedTuple):
    """One pass of a dual solver over the games not yet optimal."""

    solver: Stage
    cap: int
    face_first: bool
    restart_faces: bool = False  # games on a face start again from alpha = 0


def _batched_params(params: SelectionParams, num_games: int, num_players: int, num_joint: int):
    # Fresh writable C arrays: the face stage edits base, and Numba types read-only or
    # broadcast views differently (one compiled specialisation per kernel is the aim).
    def full(value, shape):
        return np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), shape), order="C")

    return (full(params.base_logits, (num_games, num_joint)), full(params.eps_hat, (num_games, num_players)),
            full(params.eps_plus, (num_games, num_players)), full(params.rho, (num_games,)))


def _run_pass(solver: Stage, arrays: tuple, alpha0: np.ndarray, tol: float, max_iter: int,
              parallel: bool | None, max_block: int = 0):
    if solver is Stage.NEWTON:
        return newton_batch(*arrays, alpha0, NewtonOptions(tol=tol, max_iter=max_iter, max_block=max_block),
                            parallel=parallel)
    return gradient_batch(*arrays, alpha0, GradientOptions(tol=tol, max_iter=max_iter), parallel=parallel)


def _problem_of(layout: GainLayout, values, base, eps_hat, eps_plus, rho, free, b: int) -> DualProblem:
    return DualProblem(layout.rows, values[b], layout.player, base[b], eps_hat[b], eps_plus[b],
                       float(rho[b]), free[b])


def _finish(problem: DualProblem, joint0: np.ndarray):
    """The CVXPY finish (``solvers.cvx.polish``); None where it has nothing better than
    ``joint0`` or its facial-reduction LP failed (HiGHS; the dual answer then stands)."""
    from solvers.cvx import polish

    try:
        out = polish(problem, joint0)
    except RuntimeError:  # HiGHS failed on the finish's facial-reduction LP
        return None
    if out.status == "failed" or out.solver == "start":
        return None
    return out


def _plan_passes(method: str, first_pass: int, plan: pol.NewtonPlan | None, face: str, any_hard: bool,
                 max_iter: int | None, policy: pol.SolverPolicy) -> tuple[Stage, list[_Pass]]:
    """The dual passes of ``refine_batch`` and the solver named when a game ran none."""
    # "auto": Newton when its Cholesky is cheap; else a first-order pass first and Newton
    # for the games it leaves. Beyond the memory budget "auto" is the first-order method,
    # then a Newton finish limited to free blocks within the budget (plan.max_block).
    first_order = method == "auto" and not plan.fits
    if first_order:
        solver = second = Stage.GD
    else:
        solver = Stage(method) if method != "auto" else (Stage.GD if first_pass else Stage.NEWTON)
        second = Stage.NEWTON if method == "auto" else solver
    cap = max_iter if max_iter is not None else policy.max_iter(solver)
    cap2 = max_iter if max_iter is not None else policy.max_iter(second)
    passes: list[_Pass] = []
    if second != solver:
        passes.append(_Pass(solver, min(cap, first_pass), False))
    if face == "auto" and any_hard:
        after = policy.face_after if second is Stage.NEWTON else policy.face_after_gd
        passes.append(_Pass(second, min(cap2, after), False))
        if second is Stage.NEWTON:
            # Retries with fresh damping; then the face, first from the stalled duals, then
            # (games not yet optimal) from zero: the face restart noted at FACE_RETRIES.
            passes.extend(_Pass(second, min(cap2, after), False) for _ in range(FACE_RETRIES))
            passes.append(_Pass(second, min(cap2, after), True))
            passes.append(_Pass(second, cap2, False, restart_faces=True))
        else:
            passes.append(_Pass(second, cap2, True))
    else:
        passes.append(_Pass(second, cap2, False))
    if first_order and plan.max_block > 0:
        passes.append(_Pass(Stage.NEWTON, max_iter if max_iter is not None else policy.newton_max_iter, False))
    return solver, passes


def _stage_tuples(stages: list[list[str]], solver: Stage) -> tuple[tuple[str, ...], ...]:
    """Each game's stages as a tuple (``(solver,)`` for a game no pass ran), one shared
    tuple per distinct sequence (a batch has a handful)."""
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    out = []
    for s in stages:
        key = tuple(s) if s else (solver,)
        out.append(seen.setdefault(key, key))
    return tuple(out)


class _Batch(NamedTuple):
    """The arrays of ``refine_batch``'s games (B of them) that its stages read and update
    in place: the gains ``values [B, |A|, c]``, the (face-restricted) ``base`` and the full
    ``full_base [B, |A|]``, ``eps_hat, eps_plus [B, N]``, ``rho, iterations, status [B]``,
    ``free, alpha [B, K]``, each game's stages, ``used_face [B]``, the faces found and the
    timings."""

    layout: GainLayout
    values: np.ndarray
    base: np.ndarray
    full_base: np.ndarray
    eps_hat: np.ndarray
    eps_plus: np.ndarray
    rho: np.ndarray
    free: np.ndarray
    alpha: np.ndarray
    iterations: np.ndarray
    status: np.ndarray
    stages: list[list[str]]
    used_face: np.ndarray
    faces: dict[int, Face]
    timings: dict[str, float]


def _guess_stage(batch: _Batch, idx: np.ndarray, cap: int, tol: float, threads: bool, newton_parallel: bool,
                 newton_block: int) -> None:
    """``solvers.face_guess`` on the games ``idx``: the face from the stalled iterate,
    certified by its duals (no LP), and Newton on it from those duals (cap ``cap``); kept
    where that pass is optimal, else the game goes on to the LP with its stalled duals
    (the guessed passes' iterations count). Games with ``eps_hat != 0`` are left out."""
    layout, timings = batch.layout, batch.timings
    idx = idx[~np.any(batch.eps_hat[idx] != 0.0, axis=1)]
    if idx.size == 0:
        return
    t0 = time.perf_counter()
    joint0 = (kn.certify if threads else kn.certify_serial)(
        layout.rows, batch.values[idx], layout.player, batch.base[idx], batch.eps_hat[idx], batch.eps_plus[idx],
        batch.rho[idx], batch.free[idx], batch.alpha[idx])[0]
    refine_time = timings["refine"]

    def newton(games: np.ndarray, face_base: np.ndarray, start: np.ndarray):
        t1 = time.perf_counter()
        g = idx[games]
        arrays = (layout.rows, batch.values[g], layout.player, face_base, batch.eps_hat[g], batch.eps_plus[g],
                  batch.rho[g], batch.free[g])
        res = _run_pass(Stage.NEWTON, arrays, start, tol, cap, newton_parallel, newton_block)
        timings["refine"] += time.perf_counter() - t1
        return res

    num = layout.num_constraints
    st = face_cert.structure(layout.rows, layout.dev, layout.slot_player, num)
    out = solve_on_guessed_faces(layout.rows, batch.values[idx], st, batch.full_base[idx], joint0, batch.alpha[idx],
                                 newton)
    timings["face"] += time.perf_counter() - t0 - (timings["refine"] - refine_time)
    batch.iterations[idx] += out.iterations
    no_equalities = np.zeros(num, dtype=bool)
    for j in np.flatnonzero(out.solved).tolist():
        b = int(idx[j])
        batch.faces[b] = Face(out.support[j], no_equalities, out.certificate[j], True, "certified without an LP",
                              0.0)
        batch.used_face[b] = True
        batch.base[b] = np.where(out.support[j], batch.full_base[b], -np.inf)
        batch.alpha[b] = out.alpha[j]
        batch.status[b] = OPTIMAL
        batch.stages[b] += [Stage.FACE, Stage.NEWTON]


def refine_batch(
    payoffs: np.ndarray,
    concept: str,
    params: SelectionParams,
    alpha0: np.ndarray | None = None,
    method: str = "auto",
    tol: float = 1e-8,
    max_iter: int | None = None,
    *,
    face: str = "auto",
    polish: bool = True,
    parallel: bool | None = None,
    memory_budget: object = None,
    policy: pol.SolverPolicy | None = None,
    resume: np.ndarray | None = None,
) -> DualResult:
    """Exact dual solve of a batch of normalised games of one shape (the low-level entry).

    Everything is in normalised units (DESIGN §5): this is what the NES pipeline calls
    with network duals as ``alpha0``.

    Args:
      payoffs: ``[B, N, A1..AN]`` normalised payoffs (``solvers.game.normalise_batch``).
      concept: "cce" or "ce".
      params: a resolved entropy selection; each field unbatched (shared) or with a
        leading B axis (``base_logits [B, |A|]``, ``eps_hat/eps_plus [B, N]``, ``rho [B]``).
      alpha0: ``[B, K]`` start duals (projected onto ``alpha >= 0``); None = zeros.
      method: "auto" (``solvers.policy.auto_first_pass``: a short first-order pass on
        2-player hard-constraint CEs with many duals, a longer one (hard constraints) or
        one to convergence (soft) above ``newton_max_duals`` duals, then Newton for the
        games not yet optimal; Newton alone otherwise), "newton", "gd". Where Newton's
        dense ``[K, K]`` buffers exceed the memory budget (``auto_first_order``), "auto"
        runs the first-order method to convergence and Newton only on games it leaves
        whose free block fits.
      tol: tolerance on violation, KKT residual and duality gap.
      max_iter: iteration cap per pass (None: the policy's, 1,000 Newton, 20,000 gradient).
      face: "auto" (facial reduction for hard-constraint games not optimal after the
        policy's ``face_after`` iterations), "always" (before the first pass) or "never".
      polish: finish games still short of tolerance with ``solvers.cvx.polish``.
      parallel: run games on all cores (default: when B > 1).
      memory_budget: bytes (or a string such as "4G") the dense Newton buffers may take;
        None: ``solvers.memory.memory_budget()`` (a share of the available memory, or
        ``HYBRID_NES_MEMORY_BUDGET``).
      policy: the ``SolverPolicy`` (None: ``solvers.policy.DEFAULT_POLICY``).
      resume: ``[B, 2]`` int64 (iterations, Newton status code) of the plan's first pass,
        a Newton pass the caller already ran (``solvers.newton.solve_single``: the same
        iterations, bit for bit); ``alpha0`` are the duals it left. That pass is not run
        again; the rest of the plan (the face, its restart, the finish) is as without it.

    Returns:
      A ``DualResult``.

    Raises:
      MemoryError: ``method="newton"`` whose dense ``[K, K]`` buffers exceed the budget
        (raised before the gains or any buffer are allocated).
    """
    t_start = time.perf_counter()
    policy = policy or pol.DEFAULT_POLICY
    concept = check_concept(concept)
    if params.objective != "entropy":
        raise ValueError(f"refine_batch solves the entropy objective; got {params.objective!r} (use polish.max_gini)")
    if face not in FACE_MODES:
        raise ValueError(f"unknown face mode {face!r}; expected one of {FACE_MODES}")
    method = check_method(method)
    if method in ("cvxpy", "newton-cg"):
        raise ValueError(f"refine_batch runs the batched dual solvers; method={method!r} is handled by solve()")
    payoffs = np.ascontiguousarray(payoffs, dtype=np.float64)
    num_games, num_players = payoffs.shape[:2]
    shape = tuple(int(n) for n in payoffs.shape[2:])
    threads = parallel if parallel is not None else num_games > 1
    plan = pol.check_newton_memory(method, shape, concept, num_games, threads, memory_budget)
    layout = gain_layout(shape, concept)
    num = layout.num_constraints
    num_joint = layout.rows.shape[0]
    first_pass = pol.auto_first_pass(concept, num_players, num, bool(np.all(np.isinf(params.rho))), policy)
    solver, passes = _plan_passes(method, first_pass, plan, face, bool(np.any(np.isinf(params.rho))), max_iter,
                                  policy)
    newton_parallel = plan.parallel if plan is not None else threads
    newton_block = plan.max_block if plan is not None else 0

    values = (kn.gain_values if threads else kn.gain_values_serial)(
        payoffs.reshape(num_games, num_players, num_joint), layout.slot_player, layout.dev)
    base, eps_hat, eps_plus, rho = _batched_params(params, num_games, num_players, num_joint)
    free = np.zeros((num_games, num), dtype=bool)
    if alpha0 is None:
        alpha = np.zeros((num_games, num))
    else:
        alpha = np.array(alpha0, dtype=np.float64)
        if alpha.shape != (num_games, num):
            raise ValueError(f"alpha0 has shape {alpha.shape}; expected {(num_games, num)}")
        if not np.all(np.isfinite(alpha)):
            raise ValueError("alpha0 contains NaN or inf")
    hard = np.isinf(rho)
    timings = {"gains": time.perf_counter() - t_start, "face": 0.0, "refine": 0.0, "polish": 0.0}
    used_face = np.zeros(num_games, dtype=bool)
    faces: dict[int, Face] = {}
    infeasible = np.zeros(num_games, dtype=bool)
    full_base = base.copy() if np.any(hard) else base

    def apply_faces(idx: np.ndarray) -> None:
        t0 = time.perf_counter()
        for b in idx:
            problem = _problem_of(layout, values, full_base, eps_hat, eps_plus, rho, free, int(b))
            try:
                fc = support_face(problem)
            except RuntimeError:  # HiGHS failed: go on without the face (polish may finish)
                continue
            faces[int(b)] = fc
            used_face[b] = True
            if not fc.feasible:
                infeasible[b] = True
                continue
            base[b] = np.where(fc.support, full_base[b], -np.inf)
            free[b] = fc.equalities
        timings["face"] += time.perf_counter() - t0

    if face == "always" and np.any(hard):
        apply_faces(np.flatnonzero(hard))
    iterations = np.zeros(num_games, dtype=np.int64)
    status = np.full(num_games, MAX_ITER, dtype=np.int64)
    stages: list[list[str]] = [[] for _ in range(num_games)]
    if resume is not None:
        if passes[0].solver is not Stage.NEWTON or passes[0].face_first or np.any(used_face):
            raise ValueError("resume= continues after a first Newton pass; this plan does not start with one")
        passes = passes[1:]
        iterations[:] = resume[:, 0]
        status[:] = resume[:, 1]
        for b in range(num_games):
            stages[b].append(Stage.NEWTON)
    for b in np.flatnonzero(used_face).tolist():
        stages[b].append(Stage.FACE)

    for stage in passes:
        todo = np.flatnonzero((status != OPTIMAL) & ~infeasible)
        if stage.face_first and stage.solver is Stage.NEWTON and policy.face_guess:
            batch = _Batch(layout, values, base, full_base, eps_hat, eps_plus, rho, free, alpha, iterations, status,
                           stages, used_face, faces, timings)
            _guess_stage(batch, todo[hard[todo] & ~used_face[todo]], stage.cap, tol, threads, newton_parallel,
                         newton_block)
            todo = todo[status[todo] != OPTIMAL]
        if stage.face_first:
            apply_faces(todo[hard[todo] & ~used_face[todo]])
            for b in todo[used_face[todo]]:
                if Stage.FACE not in stages[b]:
                    stages[b].append(Stage.FACE)
            todo = todo[~infeasible[todo]]
        if todo.size == 0:
            break
        if stage.restart_faces:
            alpha[todo[used_face[todo]]] = 0.0
        sub = (layout.rows, values[todo], layout.player, base[todo], eps_hat[todo], eps_plus[todo],
               rho[todo], free[todo])
        t0 = time.perf_counter()
        if stage.solver is Stage.NEWTON:
            res = _run_pass(stage.solver, sub, alpha[todo], tol, stage.cap, newton_parallel, newton_block)
        else:
            res = _run_pass(stage.solver, sub, alpha[todo], tol, stage.cap, parallel)
        timings["refine"] += time.perf_counter() - t0
        alpha[todo] = res.alpha
        iterations[todo] += res.iterations
        # BLOCK_LIMIT: Newton stopped at a free block beyond the budget; the game keeps
        # the previous stage's status (and is not credited to Newton if it took no step).
        ran = res.status != BLOCK_LIMIT
        status[todo[ran]] = res.status[ran]
        for b in todo[ran | (res.iterations != 0)].tolist():  # the games credited with this pass
            if not stages[b] or stages[b][-1] is not stage.solver:
                stages[b].append(stage.solver)

    t0 = time.perf_counter()
    joint, gaps, eps, stats = (kn.certify if threads else kn.certify_serial)(
        layout.rows, values, layout.player, base, eps_hat, eps_plus, rho, free, alpha)
    timings["certificate"] = time.perf_counter() - t0
    violation, kkt, dgap, loss = stats[:, 0].copy(), stats[:, 1].copy(), stats[:, 2].copy(), stats[:, 3]
    objective = loss - dgap
    statuses = [_SOLVER_STATUS[s] for s in status.tolist()]
    for b in np.flatnonzero(infeasible):
        # No primal point: the dual values certify nothing.
        statuses[b] = Status.INFEASIBLE
        dgap[b] = math.nan
        objective[b] = math.nan

    if polish:
        t0 = time.perf_counter()
        for b in range(num_games):
            if statuses[b] is Status.OPTIMAL or statuses[b] is Status.INFEASIBLE:
                continue
            out = _finish(_problem_of(layout, values, base, eps_hat, eps_plus, rho, free, b), joint[b])
            if out is None:
                continue
            stages[b] = (stages[b] or [solver]) + [Stage.CVXPY]
            joint[b] = out.joint
            eps[b] = out.eps
            gaps[b] = out.gaps
            violation[b] = out.violation
            dgap[b] = out.duality_gap
            objective[b] = out.objective
            kkt[b] = math.nan
            duals = np.asarray(out.duals, dtype=np.float64)
            alpha[b] = duals if np.all(np.isfinite(duals)) else alpha[b]
            # The finish never reports "infeasible" (its joint is kept, not refused).
            good = finish_status(out.status, violation[b], dgap[b], tol) is Status.OPTIMAL
            statuses[b] = Status.OPTIMAL if good else Status.INACCURATE
        timings["polish"] = time.perf_counter() - t0

    restricted_alpha = alpha.copy()
    for b, fc in faces.items():
        if fc.feasible:
            full = _problem_of(layout, values, full_base, eps_hat, eps_plus, rho, free, b)
            alpha[b] = lift_duals(full, fc, alpha[b])
    np.maximum(alpha, 0.0, out=alpha)
    timings["total"] = time.perf_counter() - t_start
    return DualResult(
        joint.reshape((num_games,) + shape), alpha, eps, gaps, violation, kkt, dgap, objective,
        iterations, tuple(statuses), _stage_tuples(stages, solver), used_face, timings,
        restricted_alpha,
    )
