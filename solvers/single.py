"""One normalised game through the stages (what ``solve`` runs), as a ``DualResult`` of B = 1.

Three routes, all in normalised units (DESIGN §5):

- the ELL gain layout: a compiled fast path (gains, Newton and certificate in one call,
  ``solvers.newton.solve_single``) where Newton alone is the plan, ``refine_batch`` for
  the rest (first-order passes, facial reduction, the CVXPY finish);
- matrix-free truncated Newton (``solvers.newton_cg``) for games too large for the layout,
  continued on the layout where that is affordable and it fell short of tolerance;
- the CVXPY reference models: Max Gini and ``method="cvxpy"``.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np

from solvers import policy as pol
from solvers.gains import gain_layout
from solvers.game import NormalisedGame
from solvers.newton import OPTIMAL, NewtonOptions, options_array, solve_single
from solvers.refine import DualResult, Stage, finish_status, refine_batch, solver_status
from solvers.selection import SelectionParams
from solvers.solution import Status
from solvers.symmetry import check_selection_symmetry

__all__ = ["after_newton", "matrix_free_one", "matrix_free_result", "newton_result", "refine_one"]


@functools.lru_cache(maxsize=64)
def _newton_opts(tol: float, max_iter: int) -> np.ndarray:
    return options_array(NewtonOptions(tol=tol, max_iter=max_iter))


_NEWTON_OPTIMAL = (Status.OPTIMAL,)
_NEWTON_STAGES = ((Stage.NEWTON,),)
_NO_FACE = np.zeros(1, dtype=bool)
_NO_FACE.flags.writeable = False


def _one(joint, alpha, eps, gaps, violation, kkt, dgap, objective, iterations, status: Status,
         stages: tuple[str, ...], face, timings, info=None) -> DualResult:
    """A ``DualResult`` of one game from its unbatched parts."""
    return DualResult(
        joint[None], alpha[None], eps[None], gaps[None], np.array([violation], dtype=np.float64),
        None if kkt is None else np.array([kkt], dtype=np.float64), np.array([dgap], dtype=np.float64),
        np.array([objective], dtype=np.float64), np.array([iterations], dtype=np.int64), (status,), (stages,),
        None if face is None else np.array([face]), timings, None, None if info is None else (info,),
    )


def matrix_free_one(norm: NormalisedGame, concept: str, params: SelectionParams, alpha0: np.ndarray | None,
                    tol: float, max_iter: int | None, timings: dict[str, float], t_start: float,
                    symmetry: tuple[tuple[int, ...], ...] = (), first_order_iter: int | None = None) -> DualResult:
    """``solvers.newton_cg`` (no gain layout, facial reduction nor polish); with ``symmetry``
    groups on the symmetric subspace (``solvers.matrix_free.TiedGame``: shared duals), the
    certificate on the full problem. ``first_order_iter``: FISTA iterations before Newton
    (None: ``NewtonCGOptions``' default, at most ``max_iter``; ``solvers.related`` passes 0
    to go on from a watched warm run's duals)."""
    from solvers.matrix_free import MatrixFreeGame, TiedGame
    from solvers.newton_cg import NewtonCGOptions, newton_cg

    t0 = time.perf_counter()
    if symmetry:
        check_selection_symmetry(params.base_logits, params.eps_hat, params.eps_plus, symmetry,
                                 tuple(norm.payoffs.shape[1:]))
    game = TiedGame(norm.payoffs, concept, symmetry) if symmetry else MatrixFreeGame(norm.payoffs, concept)
    options = NewtonCGOptions(tol=tol) if max_iter is None else NewtonCGOptions(tol=tol, max_iter=max_iter)
    if first_order_iter is not None:
        options = options._replace(first_order_iter=first_order_iter)
    timings["gains"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = newton_cg(game, params.base_logits, params.eps_hat, params.eps_plus, float(params.rho), alpha0, options)
    timings["refine"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    info = {"cg_iterations": res.cg_iterations, "first_order_iterations": res.first_order_iterations}
    if symmetry:
        info["symmetry_shared"] = True
    return matrix_free_result(res, tuple(norm.payoffs.shape[1:]), timings, info)


def matrix_free_result(res, shape: tuple[int, ...], timings: dict[str, float], info: dict | None = None,
                       iterations: int | None = None) -> DualResult:
    """A ``newton_cg.MatrixFreeResult`` of one game (joint ``[A1..AN]`` = ``shape``) as a
    ``DualResult`` (``iterations``: None takes ``res.iterations``)."""
    joint = np.asarray(res.joint).reshape(shape)
    return _one(joint, res.alpha, res.eps, res.gaps, res.violation, res.kkt, res.duality_gap,
                res.loss - res.duality_gap, res.iterations if iterations is None else iterations,
                solver_status(res.status), (Stage.NEWTON_CG,), False, timings, info)


def _reference(norm: NormalisedGame, concept: str, params: SelectionParams, tol: float,
               timings: dict[str, float], t_start: float) -> DualResult:
    """Max Gini and ``method="cvxpy"``: the CVXPY models of ``solvers.cvx``."""
    from solvers import cvx

    shape = tuple(norm.payoffs.shape[1:])
    num = gain_layout(shape, concept).num_constraints
    t0 = time.perf_counter()
    if params.objective == "gini":
        ref = cvx.max_gini(norm.payoffs, concept, params.eps_hat)
        stages: tuple[str, ...] = ("osqp" if ref.solver == "" else ref.solver.lower(),)
    else:
        ref = cvx.reference_solve(norm.payoffs, concept, params)
        stages = (Stage.CVXPY,) if ref.solver == "" else (Stage.CVXPY, ref.solver.lower())
    timings["polish"] = time.perf_counter() - t0
    duals = np.zeros(num) if ref.duals is None else np.asarray(ref.duals, dtype=np.float64)
    duals = np.where(np.isfinite(duals), np.maximum(duals, 0.0), 0.0)
    gaps = np.asarray(ref.gaps if ref.gaps is not None else np.zeros(norm.scale.shape), dtype=np.float64)
    joint = np.asarray(ref.joint, dtype=np.float64).reshape(shape)
    status = finish_status(ref.status, ref.violation, ref.duality_gap, tol)
    timings["total"] = time.perf_counter() - t_start
    return _one(joint, duals, np.asarray(ref.eps, dtype=np.float64), gaps, float(ref.violation), None,
                float(ref.duality_gap), float(ref.objective), 0, status, stages, None, timings,
                {"solver_status": ref.status})


def _layout(norm: NormalisedGame, concept: str, params: SelectionParams, alpha0: np.ndarray | None, method: str,
            tol: float, max_iter: int | None, face: str, polish: bool, memory_budget: object,
            policy: pol.SolverPolicy, timings: dict[str, float], t_start: float) -> DualResult:
    """The ELL gain layout: the compiled Newton fast path, else ``refine_batch``."""
    shape = tuple(norm.payoffs.shape[1:])
    num_players = norm.payoffs.shape[0]
    layout = gain_layout(shape, concept)
    num = layout.num_constraints
    hard = math.isinf(params.rho)
    newton_alone = method == "newton" or (
        method == "auto" and not pol.auto_first_pass(concept, num_players, num, hard, policy)
    )
    if (newton_alone and num <= policy.newton_max_duals and not (hard and face == "always")
            and pol.newton_plan(shape, concept, budget=memory_budget).fits):
        # Fast path: gains, Newton and certificate in one compiled call.
        cap = max_iter if max_iter is not None else policy.newton_max_iter
        first_cap = min(cap, policy.face_after) if hard and face == "auto" else cap
        alpha = np.zeros(num) if alpha0 is None else alpha0.copy()
        t0 = time.perf_counter()
        joint, gaps, eps, stats = solve_single(
            layout.rows, layout.slot_player, layout.dev, layout.player,
            norm.payoffs.reshape(num_players, -1), params.base_logits, params.eps_hat,
            params.eps_plus, float(params.rho), alpha, _newton_opts(float(tol), int(first_cap)),
        )
        timings["refine"] = time.perf_counter() - t0
        if int(stats[1]) == OPTIMAL:
            timings["total"] = time.perf_counter() - t_start
            return newton_result(joint.reshape((1,) + shape), alpha, eps, gaps, stats, timings)
        # Not optimal: the rest of refine_batch's plan from where Newton stopped, as in solve_batch.
        return after_newton(norm, concept, params, alpha, stats, method, tol, max_iter, face, polish, memory_budget,
                            policy, timings, t_start)
    return _stages(norm, concept, params, alpha0, method, tol, max_iter, face, polish, memory_budget, policy,
                   timings, t_start, (), 0)


def newton_result(joint: np.ndarray, alpha: np.ndarray, eps: np.ndarray, gaps: np.ndarray, stats: np.ndarray,
                  timings: dict[str, float]) -> DualResult:
    """The ``DualResult`` (B = 1) of one game the compiled Newton pass solved to "optimal":
    ``joint: [1, A1..AN]``, ``alpha: [K]``, ``eps, gaps: [N]``, ``stats`` as
    ``newton.solve_single``'s (iterations, status, violation, kkt, duality gap, loss, ...);
    the arrays are viewed, not copied."""
    return DualResult(
        joint, alpha[None], eps[None], gaps[None], stats[2:3], stats[3:4], stats[4:5], stats[5:6] - stats[4:5],
        stats[0:1].astype(np.int64), _NEWTON_OPTIMAL, _NEWTON_STAGES, _NO_FACE, timings,
    )


def after_newton(norm: NormalisedGame, concept: str, params: SelectionParams, alpha: np.ndarray, stats: np.ndarray,
                 method: str, tol: float, max_iter: int | None, face: str, polish: bool, memory_budget: object,
                 policy: pol.SolverPolicy, timings: dict[str, float], t_start: float) -> DualResult:
    """A game the compiled Newton pass (``stats`` as ``newton.solve_single``'s) left short
    of ``tol`` at ``alpha: [K]``: the rest of ``refine_batch``'s pass plan (the face and
    its restart from zero on hard constraints, the CVXPY finish; ``refine_batch(resume=)``),
    as ``solvers.small.solve_batch_compiled`` runs it, so ``solve`` and ``solve_batch``
    give the same answer."""
    res = refine_batch(norm.payoffs[None], concept, params, alpha[None], method, tol, max_iter, face=face,
                       polish=polish, parallel=False, memory_budget=memory_budget, policy=policy,
                       resume=stats[None, :2].astype(np.int64))
    for key, value in res.timings.items():
        timings[key] = timings.get(key, 0.0) + value
    timings["total"] = time.perf_counter() - t_start
    return res._replace(timings=timings)


def _stages(norm: NormalisedGame, concept: str, params: SelectionParams, alpha0: np.ndarray | None, method: str,
            tol: float, max_iter: int | None, face: str, polish: bool, memory_budget: object,
            policy: pol.SolverPolicy, timings: dict[str, float], t_start: float, prefix: tuple[str, ...],
            done: int) -> DualResult:
    """One game through ``refine_batch``; ``prefix``, ``done``: stages and iterations before."""
    res = refine_batch(norm.payoffs[None], concept, params, None if alpha0 is None else alpha0[None], method, tol,
                       max_iter, face=face, polish=polish, parallel=False, memory_budget=memory_budget,
                       policy=policy)
    for key, value in res.timings.items():
        timings[key] = timings.get(key, 0.0) + value
    timings["total"] = time.perf_counter() - t_start
    return res._replace(iterations=res.iterations + done, stages=(prefix + res.stages[0],), timings=timings)


def _tied_result(norm: NormalisedGame, concept: str, params: SelectionParams, res: DualResult,
                 symmetry: tuple[tuple[int, ...], ...], tol: float) -> DualResult:
    """The gain-layout routes with ``symmetry``: an optimal result's duals averaged over each
    group's players (``TiedGame.tie``), its joint and certificate recomputed on the full
    problem (``newton_cg.certify``), kept where that certificate is still within ``tol``
    (``info["symmetry_symmetrised"]``); else ``res`` unchanged."""
    from solvers.matrix_free import TiedGame
    from solvers.newton_cg import certify

    info = dict(res.info[0]) if res.info is not None else {}
    info["symmetry_symmetrised"] = False
    if res.status[0] is Status.OPTIMAL:
        check_selection_symmetry(params.base_logits, params.eps_hat, params.eps_plus, symmetry,
                                 tuple(norm.payoffs.shape[1:]))
        tied = TiedGame(norm.payoffs, concept, symmetry)
        cert = certify(tied.untied(), params.base_logits, params.eps_hat, params.eps_plus, float(params.rho),
                       tied.tie(res.alpha[0]), tol)
        if cert.status == OPTIMAL:
            info["symmetry_symmetrised"] = True
            f64 = functools.partial(np.array, dtype=np.float64)
            return res._replace(
                joint=np.asarray(cert.joint).reshape(res.joint.shape), alpha=cert.alpha[None], eps=cert.eps[None],
                gaps=cert.gaps[None], violation=f64([cert.violation]), kkt=f64([cert.kkt]),
                duality_gap=f64([cert.duality_gap]), objective=f64([cert.loss - cert.duality_gap]), info=(info,))
    return res._replace(info=(info,))


def refine_one(
    norm: NormalisedGame,
    concept: str,
    params: SelectionParams,
    alpha0: np.ndarray | None,
    method: str,
    tol: float,
    max_iter: int | None,
    face: str,
    polish: bool,
    memory_budget: object,
    matrix_free: bool,
    timings: dict[str, float],
    t_start: float,
    policy: pol.SolverPolicy | None = None,
    symmetry: tuple[tuple[int, ...], ...] = (),
) -> DualResult:
    """One normalised game (``norm`` of ``solvers.game.normalise``) as a ``DualResult`` of B = 1.

    Args:
      alpha0: ``[K]`` start duals (normalised units) or None.
      method, tol, max_iter, face, polish, memory_budget: as ``solvers.solve`` (checked).
      matrix_free: take ``solvers.newton_cg`` first (``method="newton-cg"``, or "auto" where
        ``solvers.policy.auto_matrix_free``); a result short of tolerance goes on with the
        ELL path when its layout fits (unless ``method="newton-cg"``).
      timings: the stage times so far ("validate"); filled in, and "total" since ``t_start``.
      symmetry: verified groups of exchangeable players (``solvers.symmetry.resolve_symmetry``):
        the matrix-free route ties their duals (``TiedGame``); the gain-layout routes
        symmetrise an optimal result and certify it again (``_tied_result``); the CVXPY
        models ignore them.
    """
    policy = policy or pol.DEFAULT_POLICY
    if params.objective == "gini" or method == "cvxpy":
        return _reference(norm, concept, params, tol, timings, t_start)
    if not matrix_free:
        res = _layout(norm, concept, params, alpha0, method, tol, max_iter, face, polish, memory_budget, policy,
                      timings, t_start)
        return _tied_result(norm, concept, params, res, symmetry, tol) if symmetry else res
    first = matrix_free_one(norm, concept, params, alpha0, tol, max_iter, dict(timings), t_start, symmetry)
    shape = tuple(norm.payoffs.shape[1:])
    if method == "newton-cg" or first.status[0] is Status.OPTIMAL or not pol.layout_fits(shape, concept, policy):
        return first
    # Short of tol (a hard-constraint dual drifting to a face) and the gain layout is
    # affordable: the ELL path (facial reduction, polish) from newton-cg's duals.
    res = _layout(norm, concept, params, first.alpha[0], method, tol, max_iter, face, polish, memory_budget, policy,
                  {"validate": time.perf_counter() - t_start}, t_start)
    if symmetry:
        res = _tied_result(norm, concept, params, res, symmetry, tol)
    merged = dict(res.timings)
    for key, value in first.timings.items():
        if key not in ("validate", "total"):
            merged[key] = merged.get(key, 0.0) + value
    merged["total"] = time.perf_counter() - t_start
    return res._replace(iterations=res.iterations + first.iterations, stages=((Stage.NEWTON_CG,) + res.stages[0],),
                        timings=merged)
