"""Warm starts from the ``Solution`` of a related game (DESIGN §12).

In PSRO/JPSRO, and in evaluations where agents or tasks arrive, each game is the previous
one with a few actions added (or some dropped, or re-ordered). Pass the previous
``Solution`` as ``duals0`` of ``solvers.solve`` / ``solve_batch`` (or ``warm_start`` of
``hybrid_nes.solve_exact``)::

    sol = solvers.solve(game, "ce")
    sol2 = solvers.solve(bigger_game, "ce", duals0=sol)          # actions appended
    sol3 = solvers.solve(other_game, "ce",
                         duals0=related(sol, action_map=[[0, 2, -1], [1, 0]]))

Action map. ``action_map[p][j]`` is the previous game's index of the new game's action
``j`` of player ``p``, or ``-1`` for an action the previous game did not have. Old actions
missing from the map were dropped. Without a map, the new actions are taken to be
appended at the end of every axis (allowed when the previous shape is <= the new one on
every axis): ``action_map[p] = [0, 1, ..., A_p_old - 1, -1, ..., -1]``.

Duals. A row whose actions all carry over (CE: ``(p, a -> a')`` with ``a`` and ``a'`` old;
CCE: ``(p, a')`` with ``a'`` old) keeps its dual. Solution duals are in payoff units, in
which ``alpha_k A_k(a)`` (the logits) does not depend on the normalisation; when the old
payoffs are unchanged that is the exact carry-over, and when they were re-scaled (e.g.
scores re-normalised per task) the carry-over through the normalised units
(``alpha'_k = alpha_k / s_p``, the previous scale) is the right one. New rows get
``c * max(0, E_sigma[A_k])`` (normalised units) with ``sigma`` the previous joint extended
by zero. ``warm_duals`` picks the unit convention, a shrink factor ``t`` of the carried
duals and ``c`` by the dual loss ``L`` of the new game (a handful of evaluations, each the
cost of one gradient), and starts cold when no candidate beats ``L(0)``.

No stalls. ``solve_related`` runs the warm start with an iteration cap (``_watch_cap``:
about the previous solve's cold count, at least ``WATCH_MIN``, at most ``FACE_AFTER``)
and without the CVXPY stage (facial reduction only first, when the previous solve needed
it); a run not optimal by then is restarted cold, so a warm start costs at most that
capped run more than a cold solve. Hard-constraint CEs instead go on with the
facial-reduction LP from where the watched run stopped (what a cold run does after
``FACE_AFTER`` iterations), and are restarted cold only if that is not optimal. On the
matrix-free route (``newton_cg``, no LP) the cap is ``MF_WATCH_FACTOR`` times the previous
Newton iterations, and a run short of it goes on from its duals (Newton alone: no second
FISTA pass), then cold. ``info["warm_start"]``: ``"related"``, ``"related→face"`` (the LP
from where the watched run stopped), ``"related→continued"`` (matrix-free, on from the
watched run), ``"related→cold-restart"`` or ``"related→cold"`` (no candidate beat ``L(0)``);
``info["warm_candidate"]``: ``(units, t, c)``. Hard-constraint CEs on the matrix-free
route first try ``solvers.restricted`` (the game without the actions that the previous
joint left unplayed and that are strictly dominated, certified on the full game):
``"related→restricted"``, or ``"related→restricted→full"`` (Newton went on on the full game).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from solvers import kernels as kn
from solvers import policy
from solvers.gains import check_concept, constraint_player, num_constraints
from solvers.game import NormalisedGame, as_game, normalise
from solvers.selection import Selection, as_selection, resolve_selection
from solvers.solution import Solution, Status

__all__ = [
    "RelatedStart", "related", "is_related", "has_related", "resolve_action_map", "map_duals", "row_maps",
    "extend_joint", "warm_duals", "solve_related", "solve_batch_related", "WARM", "RESTART", "FACE", "COLD",
    "CONTINUED", "LABELS",
]

WARM = "related"
RESTART = "related→cold-restart"
FACE = "related→face"
COLD = "related→cold"
CONTINUED = "related→continued"
RESTRICTED = "related→restricted"
RESTRICTED_FULL = "related→restricted→full"
#: Every ``Solution.info["warm_start"]`` value of a related warm start.
LABELS = (WARM, FACE, RESTART, COLD, CONTINUED, RESTRICTED, RESTRICTED_FULL)
WATCH_MIN = 20  #: least iteration cap of the watched warm run
#: Matrix-free route: the watched run's cap (and FISTA pass) is this many times the previous
#: solve's Newton iterations; one short of it goes on from its duals (``CONTINUED``): a cold
#: restart cost twice a cold solve on the 21x66 evaluation-game CE (results/related_suite.md).
MF_WATCH_FACTOR = 3
#: ``warm_duals`` goes matrix-free from this many joint actions (the layout: 1.3 ms against
#: 6 ms at 8^3; 52 ms against 10 ms on the 21x66 evaluation-game CCE).
MF_LOSS_JOINT = 10_000
#: Shrink factors ``t`` of the carried duals and weights ``c`` of the new rows, tried in order
#: while the loss decreases (large face duals put large logits on new joint actions).
SHRINK = (1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256)
NEW_ROW_WEIGHTS = (0.0, 0.5, 2.0, 8.0, 32.0)


def _descend(value, grid: Sequence[float]) -> float:
    """The first point of ``grid`` after which ``value`` stops decreasing."""
    best, best_value = grid[0], value(grid[0])
    for point in grid[1:]:
        current = value(point)
        if not current < best_value:
            break
        best, best_value = point, current
    return best


@dataclass(frozen=True, eq=False)
class RelatedStart:
    """A previous ``Solution`` and how the new game's actions relate to its game.

    Attributes:
      solution: the ``Solution`` of the previous (related) game.
      action_map: None (new actions appended at the end of each axis) or N integer
        arrays: ``action_map[p][j]`` = previous index of new action ``j`` of player ``p``,
        ``-1`` for a new action.
    """

    solution: Solution
    action_map: tuple[np.ndarray, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.solution, Solution):
            raise TypeError(f"a related warm start needs a solvers.Solution, got {type(self.solution).__name__}")
        if self.action_map is not None:
            object.__setattr__(self, "action_map", _as_map(self.action_map, self.solution.joint.shape))


def related(solution: Solution, action_map: Sequence[Sequence[int]] | None = None) -> RelatedStart:
    """A warm start for ``duals0`` from ``solution`` of a related game (see the module doc)."""
    return RelatedStart(solution, action_map)


def is_related(duals0: object) -> bool:
    """True when ``duals0`` is a ``Solution`` or a ``RelatedStart``."""
    return isinstance(duals0, (Solution, RelatedStart))


def _as_start(start: object) -> RelatedStart:
    if isinstance(start, RelatedStart):
        return start
    if isinstance(start, Solution):
        return RelatedStart(start)
    raise TypeError(f"expected a Solution or a RelatedStart, got {type(start).__name__}")


def _as_map(action_map: object, old_shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    if isinstance(action_map, (str, bytes)) or not isinstance(action_map, Sequence):
        raise TypeError(f"action_map must be a list of N integer sequences (one per player), got {action_map!r}")
    if len(action_map) != len(old_shape):
        raise ValueError(f"action_map has {len(action_map)} entries; the previous game has {len(old_shape)} players")
    out = []
    for p, (entry, n_old) in enumerate(zip(action_map, old_shape, strict=True)):
        array = np.asarray(entry)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"action_map[{p}] must be a non-empty 1-D sequence of indices, got shape {array.shape}")
        if not (np.issubdtype(array.dtype, np.integer) and array.dtype != bool):
            raise TypeError(f"action_map[{p}] must hold integers (old index or -1), got dtype {array.dtype}")
        array = array.astype(np.int64)
        if np.any(array < -1) or np.any(array >= n_old):
            raise ValueError(f"action_map[{p}] entries must be -1 (new action) or an old index in [0, {n_old}); got {array.tolist()}")
        old = array[array >= 0]
        if np.unique(old).size != old.size:
            raise ValueError(f"action_map[{p}] maps an old action to several new ones: {array.tolist()}")
        out.append(array)
    return tuple(out)


def resolve_action_map(old_shape: Sequence[int], new_shape: Sequence[int],
                       action_map: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, ...]:
    """The action map (N int arrays ``[A_p_new]``, old index or -1), checked.

    None: new actions appended at the end of each axis (needs ``old <= new`` per axis).
    """
    old_shape = tuple(int(n) for n in old_shape)
    new_shape = tuple(int(n) for n in new_shape)
    if len(old_shape) != len(new_shape):
        raise ValueError(f"the previous game has {len(old_shape)} players, the new one {len(new_shape)}")
    if action_map is None:
        if any(o > n for o, n in zip(old_shape, new_shape, strict=True)):
            raise ValueError(
                f"previous shape {old_shape} is larger than {new_shape} on some axis: pass an action_map "
                "(old index or -1 per new action) to say which actions were dropped"
            )
        return tuple(np.concatenate([np.arange(o), np.full(n - o, -1)]).astype(np.int64)
                     for o, n in zip(old_shape, new_shape, strict=True))
    maps = _as_map(action_map, old_shape)
    for p, (m, n) in enumerate(zip(maps, new_shape, strict=True)):
        if m.size != n:
            raise ValueError(f"action_map[{p}] has {m.size} entries; player {p} has {n} actions in the new game")
    return maps


def _check_concept(previous: Solution, concept: str | None) -> str:
    concept = previous.concept if concept is None else check_concept(concept)
    if concept != previous.concept:
        raise ValueError(f"the previous solution is a {previous.concept.upper()}; its duals do not warm-start a {concept.upper()}")
    return concept


def row_maps(maps: tuple[np.ndarray, ...], old_shape: tuple[int, ...], concept: str) -> tuple[np.ndarray, np.ndarray]:
    """``(new_rows, old_rows)``: flat indices of the constraint rows that carry over from
    a game of ``old_shape`` under the action ``maps`` (``resolve_action_map``)."""
    new_idx, old_idx = [], []
    new_off = old_off = 0
    for m, n_old in zip(maps, old_shape, strict=True):
        n_new = m.size
        if concept == "cce":
            keep = np.flatnonzero(m >= 0)
            new_idx.append(new_off + keep)
            old_idx.append(old_off + m[keep])
            new_off += n_new
            old_off += n_old
            continue
        dev, rec = np.meshgrid(np.arange(n_new), np.arange(n_new), indexing="ij")
        ok = (dev != rec) & (m[dev] >= 0) & (m[rec] >= 0)
        dev, rec = dev[ok], rec[ok]
        od, orc = m[dev], m[rec]
        new_idx.append(new_off + dev * (n_new - 1) + np.where(rec < dev, rec, rec - 1))
        old_idx.append(old_off + od * (n_old - 1) + np.where(orc < od, orc, orc - 1))
        new_off += n_new * (n_new - 1)
        old_off += n_old * (n_old - 1)
    return np.concatenate(new_idx).astype(np.int64), np.concatenate(old_idx).astype(np.int64)


def map_duals(previous: Solution, new_shape: Sequence[int], concept: str | None = None,
              action_map: Sequence[Sequence[int]] | None = None, units: str = "payoff",
              new_scale: np.ndarray | None = None) -> np.ndarray:
    """The previous solution's duals on the new game's rows; new rows 0.

    Args:
      previous: ``Solution`` of the previous game.
      new_shape: the new game's action counts ``(A1..AN)``.
      concept: checked against ``previous.concept`` (None: take it).
      action_map: see the module doc (None: actions appended).
      units: "payoff" (the duals as they are: exact when the old payoffs are unchanged)
        or "normalised" (``previous.duals / previous.scale``, re-expressed with
        ``new_scale``: the carry-over when the old payoffs were re-scaled).
      new_scale: ``[N]`` the new game's normalisation scale (``solvers.normalise``);
        needed for ``units="normalised"``.

    Returns:
      ``[K_new]`` non-negative duals in payoff units of the new game (layout of
      ``solvers.gains``).
    """
    previous = _as_start(previous).solution
    concept = _check_concept(previous, concept)
    old_shape = tuple(previous.joint.shape)
    new_shape = tuple(int(n) for n in new_shape)
    maps = resolve_action_map(old_shape, new_shape, action_map)
    duals = np.asarray(previous.duals, dtype=np.float64)
    expected = num_constraints(old_shape, concept)
    if duals.shape != (expected,):
        raise ValueError(f"previous.duals has shape {duals.shape}; its {old_shape} {concept.upper()} has {expected} rows")
    duals = np.where(np.isfinite(duals), np.maximum(duals, 0.0), 0.0)
    if units == "normalised":
        if new_scale is None:
            raise ValueError("units='normalised' needs new_scale (solvers.normalise(game).scale)")
        old_player = constraint_player(old_shape, concept)
        duals = duals / np.asarray(previous.scale, dtype=np.float64)[old_player]
    elif units != "payoff":
        raise ValueError(f"units must be 'payoff' or 'normalised', got {units!r}")
    new_rows, old_rows = row_maps(maps, old_shape, concept)
    out = np.zeros(num_constraints(new_shape, concept))
    out[new_rows] = duals[old_rows]
    if units == "normalised":
        out *= np.asarray(new_scale, dtype=np.float64)[constraint_player(new_shape, concept)]
    return out


def extend_joint(previous: Solution, new_shape: Sequence[int],
                 action_map: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """The previous joint on the new game's joint actions, zero on those with a new
    action, renormalised (uniform when no mass carries over). ``[A1..AN]``."""
    previous = _as_start(previous).solution
    maps = resolve_action_map(previous.joint.shape, new_shape, action_map)
    old = np.asarray(previous.joint, dtype=np.float64)
    padded = np.concatenate([old.reshape(-1), [0.0]]).reshape(-1)
    # Index -1 -> the appended zero: flat index of every new joint action in the old joint.
    flat = np.zeros(tuple(int(n) for n in new_shape), dtype=np.int64)
    valid = np.ones(flat.shape, dtype=bool)
    strides = np.cumprod((old.shape[1:] + (1,))[::-1])[::-1]
    for p, m in enumerate(maps):
        shape = [1] * len(maps)
        shape[p] = m.size
        idx = m.reshape(shape)
        flat = flat + np.maximum(idx, 0) * int(strides[p])
        valid = valid & (idx >= 0)
    joint = np.where(valid, padded[flat], 0.0)
    total = joint.sum()
    if not total > 0:
        return np.full(flat.shape, 1.0 / flat.size)
    return joint / total


def warm_duals(start: Solution | RelatedStart, game: np.ndarray, concept: str | None = None,
               selection: object = "me", **selection_params: object) -> tuple[np.ndarray | None, dict]:
    """Warm-start duals for ``game`` from a related game's solution (payoff units).

    Candidates (normalised units of the new game): the carried duals in payoff or
    normalised units, shrunk by ``t`` in ``SHRINK``, plus ``c * max(0, E_sigma[A_k])`` on
    the new rows, ``c`` in ``NEW_ROW_WEIGHTS``; the one of least dual loss ``L`` wins.

    Returns:
      ``(duals [K] payoff units, info)``; duals None when no candidate has a lower loss
      than the cold start. ``info``: ``units``, ``t``, ``c``, ``loss``, ``cold_loss``,
      ``carried`` (rows that carry over), ``seconds``.
    """
    t0 = time.perf_counter()
    norm = normalise(as_game(game))
    return _warm_duals_of(_as_start(start), norm, concept, as_selection(selection, **selection_params), t0)


def _warm_duals_of(start: RelatedStart, norm: NormalisedGame, concept: str | None, sel: Selection,
                   t0: float) -> tuple[np.ndarray | None, dict]:
    """``warm_duals`` of the normalised game ``norm`` (``solve_related`` normalises once)."""
    previous = start.solution
    concept = _check_concept(previous, concept)
    shape = tuple(norm.payoffs.shape[1:])
    maps = resolve_action_map(previous.joint.shape, shape, start.action_map)
    params = resolve_selection(sel, norm)
    mf = math.prod(shape) >= MF_LOSS_JOINT or policy.auto_matrix_free(shape, concept)
    from solvers.newton_cg import blas_threads

    with blas_threads(1 if mf else None):  # as newton_cg
        return _warm_duals(start, maps, norm, concept, params, t0, mf)


def _warm_duals(start: RelatedStart, maps: tuple[np.ndarray, ...], norm, concept: str, params,
                t0: float, mf: bool) -> tuple[np.ndarray | None, dict]:
    previous = start.solution
    shape = tuple(norm.payoffs.shape[1:])
    loss, expected, row_player = _dual_loss(norm, concept, params, mf)
    scale_rows = norm.scale[row_player]
    eps_hat = np.ascontiguousarray(params.eps_hat, dtype=np.float64)
    num = row_player.size
    carried_rows, _ = row_maps(maps, tuple(previous.joint.shape), concept)
    new_rows = np.ones(num, dtype=bool)
    new_rows[carried_rows] = False
    mean = expected(extend_joint(start, shape, maps).reshape(-1))
    push = np.where(new_rows, np.maximum(mean - eps_hat[row_player], 0.0), 0.0)
    cold_loss = loss(np.zeros(num))
    # Coordinate search (units, then t, then c): each candidate costs one loss evaluation.
    carried = {units: map_duals(start, shape, concept, maps, units=units, new_scale=norm.scale) / scale_rows
               for units in ("payoff", "normalised")}
    tried: dict[tuple[str, float, float], float] = {}

    def candidate(units: str, t: float, c: float) -> float:
        key = (units, t, c)
        if key not in tried:
            value = loss(np.ascontiguousarray(t * carried[units] + c * push))
            tried[key] = value if math.isfinite(value) else math.inf
        return tried[key]

    same_units = bool(np.allclose(carried["payoff"], carried["normalised"], rtol=1e-12, atol=0.0))
    # Compared at a moderate shrink: at t = 1 both can overflow on large face duals.
    probe = SHRINK[min(3, len(SHRINK) - 1)]
    units = "payoff" if same_units else min(("payoff", "normalised"), key=lambda u: candidate(u, probe, 0.0))
    t = _descend(lambda v: candidate(units, v, 0.0), SHRINK)
    c = _descend(lambda v: candidate(units, t, v), NEW_ROW_WEIGHTS) if np.any(push > 0) else 0.0
    value = candidate(units, t, c)
    alpha = np.ascontiguousarray(t * carried[units] + c * push) if value < cold_loss else None
    info = {"units": units, "t": t, "c": c, "loss": value, "cold_loss": cold_loss, "evaluations": len(tried) + 1,
            "hard": bool(math.isinf(float(params.rho))), "carried": int(carried_rows.size),
            "seconds": time.perf_counter() - t0}
    return (None if alpha is None else alpha * scale_rows), info


def _dual_loss(norm, concept: str, params, mf: bool) -> tuple:
    """``(loss(alpha), expected_gains(sigma_flat), row player [K])`` of the normalised
    game's dual: on the gain layout (Numba), or with ``mf`` matrix-free
    (``solvers.newton_cg``'s passes, no layout built; ``MF_LOSS_JOINT``)."""
    shape = tuple(norm.payoffs.shape[1:])
    base, eps_hat, eps_plus = (np.ascontiguousarray(x, dtype=np.float64)
                               for x in (params.base_logits, params.eps_hat, params.eps_plus))
    rho = float(params.rho)
    if mf:
        from solvers.matrix_free import MatrixFreeGame
        from solvers.newton_cg import _Dual

        dual = _Dual(MatrixFreeGame(norm.payoffs, concept), base, eps_hat, eps_plus, rho)
        return (lambda alpha: float(dual.loss(alpha)[0]),
                lambda sigma: dual.game.expected_gains(sigma.reshape(shape)), dual.player)
    from solvers.gains import gain_layout

    layout, n = gain_layout(shape, concept), len(shape)
    values = np.empty(layout.rows.shape)
    kn.gain_values_one(np.ascontiguousarray(norm.payoffs.reshape(n, -1)), layout.slot_player, layout.dev, values)
    lg, ssum, eps, mean = np.empty(layout.rows.shape[0]), np.empty(n), np.empty(n), np.empty(layout.num_constraints)

    def loss(alpha: np.ndarray) -> float:
        return float(kn.loss_only_one(layout.rows, values, layout.player, base, eps_hat, eps_plus, rho,
                                      alpha, lg, ssum, eps))

    def expected(sigma: np.ndarray) -> np.ndarray:
        kn.expected_gains_one(layout.rows, values, sigma, mean)
        return mean.copy()

    return loss, expected, layout.player


def _watch_cap(previous: Solution, max_iter: int | None, hard_ce: bool = False) -> int:
    """Iteration cap of each of the (at most two) passes of the watched warm run: half the
    previous solve's cold count, which is taken at least ``WATCH_MIN`` and at most
    ``FACE_AFTER`` (after which a cold run of a hard-constraint problem takes the
    facial-reduction LP); ``hard_ce``: half ``FACE_AFTER`` (the watched run then goes on
    with the LP as a cold run would, see ``solve_related``)."""
    face_after = policy.DEFAULT_POLICY.face_after
    cap = min(max(WATCH_MIN, int(previous.info.get("cold_iterations", previous.iterations))), face_after)
    cap = face_after if hard_ce else cap  # hard CE: the count after which a cold run takes the LP
    cap = -(-cap // 2)  # a pass short of tolerance is followed by a second one
    return cap if max_iter is None else min(cap, max_iter)


def _warm_face(previous: Solution, info: dict, face: str) -> str:
    """Facial reduction of the watched run: first ("always") when the previous hard-
    constraint solve needed it (the related optimum is likely on a face too), else none."""
    if face == "never" or not info.get("hard"):
        return "never"
    return "always" if previous.info.get("face") else "never"


def _mark(sol: Solution, label: str, info: dict, extra_iterations: int = 0, extra_time: float = 0.0,
          cold_iterations: int | None = None, timings: dict | None = None) -> Solution:
    """``sol`` with the warm start recorded in ``info`` (and ``timings``, if given, or the
    warm attempt's extra time and iterations): a new frozen ``Solution``."""
    marks = {
        "warm_start": label,
        "warm_candidate": (info.get("units"), info.get("t"), info.get("c")),
        "cold_iterations": cold_iterations if cold_iterations is not None else sol.info.get(
            "cold_iterations", sol.iterations),
    }
    changes: dict[str, object] = {"info": {**sol.info, **marks}}
    if timings is not None:
        changes["timings"] = timings
    if extra_iterations or extra_time:
        timings = dict(sol.timings if timings is None else timings)
        timings["warm_attempt"] = extra_time
        timings["total"] = timings.get("total", 0.0) + extra_time
        changes["timings"] = timings
        changes["iterations"] = sol.iterations + extra_iterations
    return dataclasses.replace(sol, **changes)


def solve_related(solve_fn, game: object, concept: str, selection: object, start: Solution | RelatedStart,
                  *, max_iter: int | None = None, face: str = "auto", polish: bool = True,
                  **kwargs: object) -> Solution:
    """``solve_fn(game, concept, selection, duals0=..., ...)`` warm-started from a related
    game's solution, restarted cold when the watched warm run is not optimal in time.

    ``solve_fn`` is ``solvers.solve``; ``kwargs`` are its other keyword arguments.
    """
    t0 = time.perf_counter()
    start = _as_start(start)
    concept = check_concept(concept)
    selection_params = {k: kwargs[k] for k in list(kwargs) if k not in _SOLVE_KEYS}
    sel = as_selection(selection, **selection_params)
    if sel.objective != "entropy" or kwargs.get("method") == "cvxpy":
        # Max Gini and the CVXPY reference take no dual warm start.
        _check_concept(start.solution, concept)
        sol = solve_fn(game, concept, selection, duals0=None, max_iter=max_iter, face=face, polish=polish, **kwargs)
        return _mark(sol, COLD, {})
    norm = normalise(as_game(game))
    if _matrix_free_route(tuple(norm.payoffs.shape[1:]), concept, face, kwargs):
        from solvers import related_mf

        done = related_mf.restricted_route(solve_fn, game, norm, concept, selection, sel, start, t0,
                                           max_iter=max_iter, face=face, polish=polish, **kwargs)
        if done is not None:
            return done
    duals, info = _warm_duals_of(start, norm, concept, sel, t0)
    prev_cold = int(start.solution.info.get("cold_iterations", start.solution.iterations))
    if duals is None:
        sol = solve_fn(game, concept, selection, duals0=None, max_iter=max_iter, face=face, polish=polish, **kwargs)
        return _mark(sol, COLD, info, extra_time=time.perf_counter() - t0)
    if _matrix_free_route(tuple(norm.payoffs.shape[1:]), concept, face, kwargs):
        from solvers import related_mf

        return related_mf.solve_matrix_free(solve_fn, game, norm, concept, selection, sel, start, duals, info, t0,
                                            max_iter=max_iter, face=face, polish=polish, **kwargs)
    warm_face = _warm_face(start.solution, info, face)
    hard_ce = concept == "ce" and info["hard"] and face != "never"
    cap = _watch_cap(start.solution, max_iter, hard_ce)
    if warm_face == "always":
        # One restricted pass after the LP, against a cold run's FACE_AFTER iterations,
        # the same LP and its own restricted pass.
        cap = max(3 * policy.DEFAULT_POLICY.face_after, prev_cold)
        cap = cap if max_iter is None else min(cap, max_iter)
    warm = solve_fn(game, concept, selection, duals0=duals, max_iter=cap, face=warm_face, polish=False, **kwargs)
    if warm.status is Status.OPTIMAL:
        timings = {**warm.timings, "total": time.perf_counter() - t0}
        return _mark(warm, WARM, info, cold_iterations=prev_cold, timings=timings)
    if hard_ce and warm_face == "never":
        # Hard-constraint CEs (optima on a face of the simplex are the common case, DESIGN
        # §4b): a cold run not optimal after FACE_AFTER iterations takes the
        # facial-reduction LP; the watched run has spent about as many, so the LP and
        # the restricted solve go on from where it stopped.
        ahead = solve_fn(game, concept, selection, duals0=np.maximum(warm.duals, 0.0), max_iter=max_iter,
                         face="always", polish=polish, **kwargs)
        if ahead.status is Status.OPTIMAL:
            spent = time.perf_counter() - t0
            timings = {**ahead.timings, "warm_attempt": spent - ahead.timings.get("total", 0.0), "total": spent}
            ahead = dataclasses.replace(ahead, iterations=ahead.iterations + warm.iterations)
            return _mark(ahead, FACE, info, cold_iterations=prev_cold, timings=timings)
    spent = time.perf_counter() - t0
    sol = solve_fn(game, concept, selection, duals0=None, max_iter=max_iter, face=face, polish=polish, **kwargs)
    return _mark(sol, RESTART, info, extra_iterations=warm.iterations, extra_time=spent)


def _matrix_free_route(shape: tuple[int, ...], concept: str, face: str, kwargs: dict) -> bool:
    """Whether ``solve`` runs ``newton_cg`` on ``shape`` (``method`` "newton-cg", or "auto" there)."""
    method = kwargs.get("method", "auto")
    if method == "newton-cg":
        return True
    return method == "auto" and policy.auto_matrix_free(shape, concept, face)


def mf_watch_cap(prev: Solution, max_iter: int | None) -> int:
    """The matrix-free watch cap: ``MF_WATCH_FACTOR`` x the previous Newton iterations."""
    newton = max(int(prev.iterations) - int(prev.info.get("first_order_iterations") or 0), 1)
    cap = max(WATCH_MIN, MF_WATCH_FACTOR * newton)
    return cap if max_iter is None else min(cap, max_iter)


#: ``solvers.solve`` keyword arguments that are not selection parameters.
_SOLVE_KEYS = frozenset({"tol", "method", "memory_budget"})


def solve_batch_related(solve_batch_fn, games: object, concept: str, selection: object, starts: Sequence[object],
                        *, max_iter: int | None = None, face: str = "auto", polish: bool = True,
                        **kwargs: object) -> list[Solution]:
    """``solve_batch_fn`` with ``starts[i]`` a related ``Solution``/``RelatedStart``,
    duals ``[K]`` or None per game: the related ones are warm-started and watched as in
    ``solve_related`` (one batch, no facial reduction); those not optimal within the cap
    are solved again cold, in one batch."""
    t0 = time.perf_counter()
    concept = check_concept(concept)
    game_list = list(games)
    if len(starts) != len(game_list):
        raise ValueError(f"duals0 has {len(starts)} entries for {len(game_list)} games")
    selection_params = {k: kwargs[k] for k in list(kwargs) if k not in _SOLVE_KEYS}
    duals0: list[np.ndarray | None] = []
    infos: list[dict | None] = []
    caps = []
    for g, s in zip(game_list, starts, strict=True):
        if is_related(s):
            rs = _as_start(s)
            d, info = warm_duals(rs, g, concept, selection, **selection_params)
            duals0.append(d)
            infos.append(info)
            caps.append(_watch_cap(rs.solution, max_iter))
        else:
            duals0.append(None if s is None else np.asarray(s, dtype=np.float64))
            infos.append(None)
    watched = [i for i, (d, info) in enumerate(zip(duals0, infos, strict=True)) if info is not None and d is not None]
    out: list[Solution | None] = [None] * len(game_list)
    others = [i for i in range(len(game_list)) if i not in set(watched)]
    prep = time.perf_counter() - t0
    if watched:
        sols = solve_batch_fn([game_list[i] for i in watched], concept, selection, duals0=[duals0[i] for i in watched],
                              max_iter=max(caps), face="never", polish=False, **kwargs)
        for i, sol in zip(watched, sols, strict=True):
            if sol.status is Status.OPTIMAL:
                prev = _as_start(starts[i]).solution
                out[i] = _mark(sol, WARM, infos[i],
                               cold_iterations=int(prev.info.get("cold_iterations", prev.iterations)))
    redo = [i for i in range(len(game_list)) if out[i] is None]
    if redo:
        sols = solve_batch_fn([game_list[i] for i in redo], concept, selection,
                              duals0=[duals0[i] if i in others else None for i in redo],
                              max_iter=max_iter, face=face, polish=polish, **kwargs)
        for i, sol in zip(redo, sols, strict=True):
            if infos[i] is None:
                out[i] = sol
            else:
                label = COLD if duals0[i] is None else RESTART
                out[i] = _mark(sol, label, infos[i], extra_time=prep / len(game_list))
    return out  # type: ignore[return-value]


def has_related(duals0: object) -> bool:
    """True when ``duals0`` (of ``solve_batch``) is a list holding a related start."""
    if duals0 is None or isinstance(duals0, (np.ndarray, str, bytes)) or not isinstance(duals0, Sequence):
        return False
    return any(is_related(d) for d in duals0)
