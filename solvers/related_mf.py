"""The matrix-free route (``solvers.newton_cg``) of ``solvers.related.solve_related``.

Two warm starts from a related game's ``Solution``, both watched (see ``solvers.related``):

- ``restricted_route`` (hard-constraint CEs): ``solvers.restricted``, the game without
  the actions that the previous joint left unplayed and that are strictly dominated,
  certified on the full game; tried first, None where it does not apply;
- ``solve_matrix_free``: ``newton_cg`` from the related start's duals within
  ``MF_WATCH_FACTOR`` times the previous Newton iterations, then Newton alone on from its
  duals, then cold.

The constants (``WATCH_MIN``, ``MF_WATCH_FACTOR``) and labels are read from
``solvers.related`` at call time.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from solvers import related as rel
from solvers import units
from solvers.gains import constraint_player
from solvers.game import NormalisedGame
from solvers.selection import Selection, resolve_selection
from solvers.solution import Solution, Status

__all__ = ["restricted_route", "solve_matrix_free"]


def restricted_route(solve_fn, game: object, norm: NormalisedGame, concept: str, selection: object, sel: Selection,
                     start: rel.RelatedStart, t0: float, *, max_iter: int | None, face: str, polish: bool,
                     **kwargs: object) -> Solution | None:
    """``solvers.restricted.attempt`` (``related.mf_watch_cap``: the sub-game's FISTA
    iterations and the full game's continuation; the sub-game's Newton runs to
    ``max_iter``): a
    ``Solution`` marked ``related→restricted`` / ``related→restricted→full``, a cold
    solve marked ``related→cold-restart`` when the attempt is not optimal, or None when
    the route does not apply (the usual warm start runs then)."""
    from solvers import restricted

    prev = start.solution
    shape = tuple(int(n) for n in norm.payoffs.shape[1:])
    maps = rel.resolve_action_map(prev.joint.shape, shape, start.action_map)
    cap = rel.mf_watch_cap(prev, max_iter)
    att = restricted.attempt(norm, concept, resolve_selection(sel, norm), prev, maps, float(kwargs.get("tol", 1e-8)),
                             cap, max_iter, cap)
    if att is None:
        return None
    prev_cold = int(prev.info.get("cold_iterations", prev.iterations))
    spent = time.perf_counter() - t0
    if att.optimal:
        timings = {**att.result.timings, "total": spent}
        sol = units.one_solution(att.result, norm.scale, constraint_player(shape, concept), concept, sel, timings)
        label = rel.RESTRICTED if att.path == "restricted" else rel.RESTRICTED_FULL
        return rel._mark(sol, label, {}, cold_iterations=prev_cold, timings=timings)
    sol = solve_fn(game, concept, selection, duals0=None, max_iter=max_iter, face=face, polish=polish, **kwargs)
    sol = dataclasses.replace(sol, info={**sol.info, **att.info})
    return rel._mark(sol, rel.RESTART, {}, extra_iterations=int(att.info.get("restricted_iterations", 0)),
                     extra_time=spent)


def solve_matrix_free(solve_fn, game: object, norm: NormalisedGame, concept: str, selection: object, sel: Selection,
                      start: rel.RelatedStart, duals: np.ndarray, info: dict, t0: float, *, max_iter: int | None,
                      face: str, polish: bool, **kwargs: object) -> Solution:
    """The watched warm run on the matrix-free route: ``newton_cg`` from ``duals`` within
    ``related.mf_watch_cap`` iterations (its FISTA pass is as long as that cap), then
    Newton alone on from its duals (``_newton_cg_from`` on ``norm``, the game normalised,
    and ``sel``, the checked selection), then cold."""
    prev = start.solution
    prev_cold = int(prev.info.get("cold_iterations", prev.iterations))
    cap = rel.mf_watch_cap(prev, max_iter)
    warm = solve_fn(game, concept, selection, duals0=duals, max_iter=cap, face=face, polish=False, **kwargs)
    if warm.status is Status.OPTIMAL or (max_iter is not None and cap >= max_iter):
        timings = {**warm.timings, "total": time.perf_counter() - t0}
        return rel._mark(warm, rel.WARM, info, cold_iterations=prev_cold, timings=timings)
    ahead = _newton_cg_from(norm, concept, sel, np.maximum(warm.duals, 0.0), max_iter, float(kwargs.get("tol", 1e-8)))
    spent = time.perf_counter() - t0
    if ahead.status is Status.OPTIMAL:
        timings = {**ahead.timings, "warm_attempt": spent - ahead.timings.get("total", 0.0), "total": spent}
        ahead = dataclasses.replace(ahead, iterations=ahead.iterations + warm.iterations)
        return rel._mark(ahead, rel.CONTINUED, info, cold_iterations=prev_cold, timings=timings)
    sol = solve_fn(game, concept, selection, duals0=None, max_iter=max_iter, face=face, polish=polish, **kwargs)
    return rel._mark(sol, rel.RESTART, info, extra_iterations=warm.iterations + ahead.iterations, extra_time=spent)


def _newton_cg_from(norm: NormalisedGame, concept: str, sel: Selection, duals: np.ndarray, max_iter: int | None,
                    tol: float) -> Solution:
    """``single.matrix_free_one`` on ``norm`` from a watched run's ``duals [K]`` (payoff units), Newton alone."""
    from solvers.single import matrix_free_one

    t_start = time.perf_counter()
    player = constraint_player(tuple(norm.payoffs.shape[1:]), concept)
    res = matrix_free_one(norm, concept, resolve_selection(sel, norm), np.ascontiguousarray(duals / norm.scale[player]),
                          tol, max_iter, {"validate": 0.0}, t_start, first_order_iter=0)
    return units.one_solution(res, norm.scale, player, concept, sel, res.timings)
