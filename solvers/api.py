"""The public entry points in payoff units: ``solve`` and ``solve_batch``.

Both validate (``solvers.checks``), normalise (``solvers.game``, DESIGN §5), resolve the
selection (``solvers.selection``), turn warm-start duals into normalised units and hand
the games to the stage boundary in normalised units: ``solvers.single.refine_one`` for
one game, ``solvers.refine.refine_batch`` for a same-shape group. Each returns a
``DualResult``: ``solve`` converts it into a frozen ``Solution``
(``solvers.units.one_solution``), ``solve_batch`` into a ``SolutionBatch`` (stacked
payoff-unit arrays, ``Solution``s built on access; ``solvers.solution_batch``).
Which stages run is ``solvers.policy``'s.

``duals0`` and ``Solution.duals`` are flat ``[K]`` vectors in payoff units (layout:
``solvers.gains``), so a solution's duals are a valid warm start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from solvers import memory, related, small, units
from solvers.checks import (
    FACE_MODES,
    METHODS,
    check_duals,
    check_method,
    check_options,
    check_polish,
)
from solvers.gains import GainLayout, constraint_player, gain_layout
from solvers.game import (
    NormalisedGame,
    as_game,
    as_game_batch,
    as_game_fast,
    normalise_fast,
    normalise_games,
)
from solvers.policy import (
    NewtonPlan,
    auto_first_order,
    auto_first_pass,
    auto_matrix_free,
    check_game_memory,
    check_newton_memory,
    newton_plan,
    solve_bytes,
    solve_route,
)
from solvers.refine import DualResult, RefineResult, refine_batch
from solvers.selection import Selection, resolve_batch, resolve_cached
from solvers.single import refine_one
from solvers.solution import Solution
from solvers.solution_batch import SolutionBatch
from solvers.symmetry import joint_asymmetry, resolve_symmetry

__all__ = [
    "FACE_MODES",
    "METHODS",
    "DualResult",
    "GainLayout",
    "NewtonPlan",
    "RefineResult",
    "SolutionBatch",
    "auto_first_order",
    "auto_first_pass",
    "auto_matrix_free",
    "check_game_memory",
    "check_method",
    "gain_layout",
    "newton_plan",
    "normalised_batch",
    "normalised_duals",
    "refine_batch",
    "solve",
    "solve_bytes",
    "solve_batch",
    "solve_normalised",
]


def solve(
    game: np.ndarray | Sequence[np.ndarray],
    concept: str = "cce",
    selection: str | Selection = "me",
    *,
    duals0: np.ndarray | Solution | related.RelatedStart | None = None,
    tol: float = 1e-8,
    max_iter: int | None = None,
    method: str = "auto",
    face: str = "auto",
    polish: bool = True,
    memory_budget: int | str | None = None,
    symmetry: str | Sequence[Sequence[int]] | None = None,
    **selection_params: object,
) -> Solution:
    """The selected (C)CE of one game, certified.

    Args:
      game: payoffs ``[N, A1..AN]`` or a bimatrix pair ``(A, B)``.
      concept: "cce" or "ce".
      selection: a preset name ("me", "mre", "mw", "mwme", "ms", "mg") or a ``Selection``.
      duals0: ``[K]`` non-negative warm-start duals in payoff units (e.g. a previous
        ``Solution.duals``); None starts from zero (the target joint); or the ``Solution``
        of a related game (fewer / other actions; ``solvers.related.related(sol,
        action_map)`` for dropped or re-ordered ones): its duals are mapped onto this
        game, watched, and restarted cold if they do not pay (``solvers.related``;
        ``Solution.info["warm_start"]``).
      tol: tolerance on the (C)CE violation, KKT residual and duality gap, in
        normalised units (DESIGN §5).
      max_iter: iteration cap per dual pass (None: method default).
      method: "auto", "newton", "gd" (dual solvers, CVXPY finish if they stall) or
        "cvxpy" (the CVXPY reference model). "auto" is Newton, after a short
        first-order pass on large problems (``solvers.policy.auto_first_pass``). "gd"
        (first-order alone) on hard-constraint CEs whose optimum lies on a face needs
        thousands of iterations and may end "inaccurate" (8x8 MW-CE: 3 of 32 games;
        "auto" and "newton": 32 of 32 optimal). "newton-cg": matrix-free FISTA pass then
        truncated Newton (``solvers.newton_cg``, DESIGN §11; ``info["first_order_iterations"]``,
        ``info["cg_iterations"]``): no gain layout, memory a few copies of the joint; no
        facial reduction or polish (a dual drifting to a face may end "max_iter"); "auto"
        takes it for large games (``solvers.policy.auto_matrix_free``).
      face: facial reduction for hard constraints (DESIGN §4b): "auto" (when the dual
        solver is not optimal after the policy's ``face_after`` iterations), "always"
        (first: exact zeros off the minimal face) or "never".
      polish: finish a game the dual solvers leave short of ``tol`` with the CVXPY polish
        (``solvers.cvx.polish``; seconds on 24x24 CEs and up). False reports it as the
        dual solver left it ("max_iter" or "inaccurate"), for batch jobs that prefer speed.
      memory_budget: bytes (or a string such as "4G") Newton's dense Hessian buffers may
        take (``solvers.memory``; None: half the available memory, or the environment
        variable ``HYBRID_NES_MEMORY_BUDGET``). Beyond it "auto" takes the first-order
        method (``auto_first_order``; ``Solution.method`` then starts with "gd").
      symmetry: groups of exchangeable players, e.g. ``[(1, 2)]`` for an evaluation game
        [task, agent, agent], verified (``solvers.symmetry.check_symmetry``; a ValueError
        names the players, payoff player, joint action and the change); "auto" detects
        them (``find_symmetries``); None (default): off. newton-cg then solves over the
        symmetric subspace (shared duals, ``solvers.matrix_free.TiedGame``) and certifies
        on the full problem; the gain-layout routes average an optimal result's duals over
        the groups and certify again on the full problem (kept only if still within
        ``tol``); the CVXPY models only verify. ``info["symmetry"]`` (the groups),
        ``info["symmetry_shared"]`` (duals tied in the solver),
        ``info["symmetry_symmetrised"]`` (result symmetrised after the solve) and
        ``info["joint_asymmetry"]`` say what was used.
      **selection_params: parameters of the preset (``eps_hat``, ``target``, ``mu``, ...).

    Returns:
      A frozen ``Solution`` in the game's payoff units; ``status`` is "optimal" only when
      every tolerance is met.

    Raises:
      TypeError, ValueError: bad game, concept, selection, parameters, ``duals0``,
        ``memory_budget`` or ``symmetry`` (players that are not exchangeable).
      MemoryError: ``solvers.memory.GameTooLargeError``, before anything of the game's size
        is allocated: a game whose solve needs more than the available memory
        (``solvers.policy.check_game_memory``), or ``method="newton"`` whose dense
        ``[K, K]`` buffers exceed the memory budget.
    """
    t_start = time.perf_counter()
    if duals0 is None and symmetry is None and memory_budget is None and not selection_params:
        # A small game: the cached plan and one compiled call (solvers.small).
        sol = small.solve_game(game, concept, selection, method, tol, max_iter, face, polish, t_start)
        if sol is not None:
            return sol
    if related.is_related(duals0):
        if symmetry is not None:
            raise ValueError("symmetry= with a related game's Solution as duals0 is not supported; pass its duals")
        return related.solve_related(solve, game, concept, selection, duals0, tol=tol, max_iter=max_iter, method=method,
                                     face=face, polish=polish, memory_budget=memory_budget, **selection_params)
    payoffs = as_game_fast(game)
    concept, sel, method, tol, max_iter, face = check_options(
        concept, selection, selection_params, method, tol, max_iter, face
    )
    polish = check_polish(polish)
    if memory_budget is not None:
        memory_budget = memory.parse_bytes(memory_budget)
    shape = tuple(payoffs.shape[1:])
    if method == "newton":
        check_newton_memory(method, shape, concept, 1, False, memory_budget)
    if method == "newton-cg" and face == "always":
        raise ValueError("method='newton-cg' has no facial reduction; use face='auto' or another method")
    matrix_free = sel.objective != "gini" and (method == "newton-cg" or (
        method == "auto" and auto_matrix_free(shape, concept, face)))
    check_game_memory(solve_route(sel.objective, method, matrix_free), shape, concept, 1, memory_budget)
    groups = resolve_symmetry(payoffs, symmetry)  # after the memory check: a pair's swap is [N, A1..AN]
    norm = normalise_fast(payoffs)
    params = resolve_cached(sel, norm)
    # The matrix-free route never builds the gain layout (it may not fit in memory).
    player = constraint_player(shape, concept) if matrix_free else gain_layout(shape, concept).player
    alpha0 = None
    if duals0 is not None:
        alpha0 = check_duals(duals0, (player.shape[0],)) / norm.scale[player]
    timings = {"validate": time.perf_counter() - t_start}
    res = refine_one(norm, concept, params, alpha0, method, tol, max_iter, face, polish, memory_budget, matrix_free,
                     timings, t_start, symmetry=groups)
    return units.one_solution(res, norm.scale, player, concept, sel, res.timings,
                              _symmetry_info(res, groups, symmetry))


def _symmetry_info(res: DualResult, groups: tuple[tuple[int, ...], ...], symmetry: object) -> dict[str, object] | None:
    """``Solution.info`` entries of ``symmetry=`` (None when off; no groups found: ``()``)."""
    if symmetry is None:
        return None
    if not groups:
        return {"symmetry": (), "symmetry_shared": False}
    shared = bool(res.info is not None and res.info[0].get("symmetry_shared", False))
    return {"symmetry": groups, "symmetry_shared": shared, "joint_asymmetry": joint_asymmetry(res.joint[0], groups)}


def _group_games(games: object) -> tuple[Sequence[np.ndarray], np.ndarray | None]:
    """Validated games as a sequence of ``[N, A1..AN]`` arrays (the batch itself when given
    as one array: its rows, no list of B views), and the ``[B, N, A1..AN]`` batch when
    given as one array (None for a list)."""
    if isinstance(games, np.ndarray):
        batch = as_game_batch(games, copy=False)  # read, never kept or edited
        return batch, batch
    if not isinstance(games, Sequence) or isinstance(games, (str, bytes)):
        raise TypeError(f"games must be a [B, N, A1..AN] array or a list of games, got {type(games).__name__}")
    if len(games) == 0:
        raise ValueError("games is an empty list")
    return [as_game(g, name=f"games[{i}]") for i, g in enumerate(games)], None


def _duals_list(duals0: object, game_list: Sequence[np.ndarray], as_array: bool) -> list[np.ndarray | None]:
    """``solve_batch``'s ``duals0`` as one entry (None or ``[K]``) per game."""
    num_games = len(game_list)
    if duals0 is None:
        return [None] * num_games
    if isinstance(duals0, np.ndarray) and duals0.ndim == 2:
        if not as_array and len({g.shape for g in game_list}) > 1:
            raise ValueError("duals0 as a [B, K] array needs games of one shape; pass a list")
        if duals0.shape[0] != num_games:
            raise ValueError(f"duals0 has {duals0.shape[0]} rows for {num_games} games")
        return list(duals0)
    if isinstance(duals0, Sequence) and not isinstance(duals0, (str, bytes)):
        if len(duals0) != num_games:
            raise ValueError(f"duals0 has {len(duals0)} entries for {num_games} games")
        return list(duals0)
    raise TypeError("duals0 must be a [B, K] array or a list of [K] arrays (or None)")


def normalised_duals(duals: Sequence[np.ndarray | None], idx: Sequence[int], scale: np.ndarray,
                     player: np.ndarray) -> np.ndarray | None:
    """``[B, K]`` warm starts in normalised units of a group (``scale: [B, N]``) from payoff
    duals (None: zeros), checked (``duals0[i]`` names game ``i``); None when none is given."""
    if all(duals[i] is None for i in idx):
        return None
    alpha0 = np.zeros((len(idx), player.shape[0]))
    for j, i in enumerate(idx):
        if duals[i] is not None:
            alpha0[j] = check_duals(duals[i], (player.shape[0],), name=f"duals0[{i}]") / scale[j][player]
    return alpha0


def _stage_timings(timings: Mapping[str, float], extra: Mapping[str, float] | None) -> Mapping[str, float]:
    """``timings`` with the caller's own stages ``extra`` (seconds per game) added, and to "total"."""
    if not extra:
        return timings
    out = dict(timings)
    for key, value in extra.items():
        out[key] = out.get(key, 0.0) + value
    out["total"] = out.get("total", 0.0) + sum(extra.values())
    return out


def normalised_batch(
    norm: NormalisedGame,
    concept: str,
    selection: Selection,
    alpha0: np.ndarray | None = None,
    *,
    method: str = "auto",
    tol: float = 1e-8,
    max_iter: int | None = None,
    face: str = "auto",
    polish: bool = True,
    memory_budget: object = None,
    per_game: bool = False,
    prep: float = 0.0,
    extra: Mapping[str, float] | None = None,
    info: Mapping[str, object] | None = None,
) -> SolutionBatch:
    """Games of one shape, normalised once, to a ``SolutionBatch``: the normalised-units
    entry of ``solve_batch`` (checked options, as ``solve_batch``'s).

    Args:
      norm: ``[B, N, A1..AN]`` normalised games (``solvers.game.normalise_batch`` or
        ``normalise_group``), fields with a leading B axis.
      alpha0: ``[B, K]`` warm-start duals in normalised units, or None (zeros).
      per_game: each game as ``solve`` runs it (``solvers.single.refine_one``: the compiled
        Newton fast path, the matrix-free route, the CVXPY models); else one
        ``refine_batch`` call for the group (entropy selections, batched methods only).
      prep: seconds already spent on the group (reported per game as "validate").
      extra: the caller's stage times per game (e.g. "inference"), added to ``timings``.
      info: entries added to every game's ``Solution.info``.
    """
    t_start = time.perf_counter() - prep
    num_games = norm.payoffs.shape[0]
    shape = tuple(norm.payoffs.shape[2:])
    if not per_game:
        if method == "newton":
            check_newton_memory(method, shape, concept, num_games, num_games > 1, memory_budget)
        check_game_memory("layout", shape, concept, num_games, memory_budget)
        layout = gain_layout(shape, concept)
        # Newton alone on a small game: each game as solve() runs it (solvers.small).
        fast = small.plan(shape, concept, selection, method, tol, max_iter, face, polish)
        timings = {"validate": (time.perf_counter() - t_start) / num_games}
        res = None if fast is None else small.solve_batch_compiled(norm, fast, alpha0, memory_budget)
        if res is None:
            params = resolve_batch(selection, norm)
            timings = {"validate": (time.perf_counter() - t_start) / num_games}
            res = refine_batch(norm.payoffs, concept, params, alpha0, method, tol, max_iter, face=face,
                               polish=polish, memory_budget=memory_budget)
        timings.update({k: v / num_games for k, v in res.timings.items()})
        return SolutionBatch.from_result(res, norm.scale, layout.player, concept, selection,
                                         _stage_timings(timings, extra), info)
    if method == "newton":
        check_newton_memory(method, shape, concept, 1, False, memory_budget)
    matrix_free = selection.objective != "gini" and (method == "newton-cg" or (
        method == "auto" and auto_matrix_free(shape, concept, face)))
    check_game_memory(solve_route(selection.objective, method, matrix_free), shape, concept, 1, memory_budget)
    player = constraint_player(shape, concept) if matrix_free else gain_layout(shape, concept).player
    sols = []
    for b in range(num_games):
        one = NormalisedGame(norm.payoffs[b], norm.scale[b], norm.offset[b])
        params = resolve_cached(selection, one)
        timings = {"validate": time.perf_counter() - t_start}
        res = refine_one(one, concept, params, None if alpha0 is None else alpha0[b], method, tol, max_iter, face,
                         polish, memory_budget, matrix_free, timings, t_start)
        sols += units.to_solutions(res, norm.scale[b:b + 1], player, concept, selection,
                                   _stage_timings(res.timings, extra), info)
        t_start = time.perf_counter()
    return SolutionBatch.from_solutions(sols)


def solve_normalised(norm: NormalisedGame, concept: str, selection: Selection, alpha0: np.ndarray | None = None,
                     **options: object) -> list[Solution]:
    """``normalised_batch`` as a list of ``Solution``s (the NES pipeline's entry, which
    edits the list)."""
    return list(normalised_batch(norm, concept, selection, alpha0, **options))


def solve_batch(
    games: np.ndarray | Sequence[np.ndarray | Sequence[np.ndarray]],
    concept: str = "cce",
    selection: str | Selection = "me",
    *,
    duals0: np.ndarray | Sequence[np.ndarray | None] | None = None,
    tol: float = 1e-8,
    max_iter: int | None = None,
    method: str = "auto",
    face: str = "auto",
    polish: bool = True,
    memory_budget: int | str | None = None,
    symmetry: str | Sequence[Sequence[int]] | None = None,
    **selection_params: object,
) -> SolutionBatch:
    """``solve`` for many games at once, in parallel over games of the same shape.

    Args:
      games: ``[B, N, A1..AN]`` array, or a list of games (payoff tensors or bimatrix
        pairs), mixed shapes allowed (solved in groups of equal shape).
      duals0: ``[B, K]`` array (one shape) or a list of ``[K]`` arrays / None / related
        ``Solution`` (as in ``solve``).
      other arguments: as ``solve``; one selection for every game. The memory budget
        covers the games Newton solves at once (one per core). With ``symmetry`` (checked
        per game) each game is solved as ``solve`` does.

    Returns:
      A ``SolutionBatch``: ``B`` ``Solution``s in input order, as a read-only sequence
      (each built on first access) and as stacked arrays (``joints``, ``duals``,
      ``status``, ...). ``timings`` are per game (the group's stage times divided by its
      size).
    """
    if related.has_related(duals0):
        if symmetry is not None:
            raise ValueError("symmetry= with a related game's Solution as duals0 is not supported; pass its duals")
        return SolutionBatch.from_solutions(related.solve_batch_related(
            solve_batch, games, concept, selection, duals0, tol=tol, max_iter=max_iter, method=method, face=face,
            polish=polish, memory_budget=memory_budget, **selection_params))
    game_list, whole = _group_games(games)
    concept, sel, method, tol, max_iter, face = check_options(
        concept, selection, selection_params, method, tol, max_iter, face
    )
    polish = check_polish(polish)
    if memory_budget is not None:
        memory_budget = memory.parse_bytes(memory_budget)
    duals_list = _duals_list(duals0, game_list, whole is not None)
    if sel.objective == "gini" or method in ("cvxpy", "newton-cg") or symmetry is not None:
        return SolutionBatch.from_solutions([
            solve(g, concept, sel, duals0=d, tol=tol, max_iter=max_iter, method=method, face=face, polish=polish,
                  memory_budget=memory_budget, symmetry=symmetry)
            for g, d in zip(game_list, duals_list, strict=True)
        ])
    groups: dict[tuple[int, ...], list[int]] = {}
    if whole is not None:  # one shape: no per-game loop
        groups[whole.shape[1:]] = list(range(whole.shape[0]))
    else:
        for i, g in enumerate(game_list):
            groups.setdefault(g.shape, []).append(i)
    parts: list[tuple[list[int], SolutionBatch]] = []
    for gshape, idx in groups.items():
        t_group = time.perf_counter()
        if method == "newton":  # before the gain layout is built
            check_newton_memory(method, tuple(gshape[1:]), concept, len(idx), len(idx) > 1, memory_budget)
        # Large games take solve's matrix-free route, game by game (no gain layout built).
        per_game = method == "auto" and auto_matrix_free(tuple(gshape[1:]), concept, face)
        check_game_memory(solve_route(sel.objective, method, per_game), tuple(gshape[1:]), concept,
                          1 if per_game else len(idx), memory_budget)
        batch = whole if whole is not None else np.stack([game_list[i] for i in idx])
        norm = normalise_games(batch)
        player = (constraint_player(tuple(gshape[1:]), concept) if per_game
                  else gain_layout(tuple(gshape[1:]), concept).player)
        alpha0 = None if duals0 is None else normalised_duals(duals_list, idx, norm.scale, player)
        parts.append((idx, normalised_batch(norm, concept, sel, alpha0, method=method, tol=tol, max_iter=max_iter,
                                            face=face, polish=polish, memory_budget=memory_budget, per_game=per_game,
                                            prep=time.perf_counter() - t_group)))
    return parts[0][1] if len(parts) == 1 else SolutionBatch.concat(parts)
