"""``solve_exact`` / ``solve_batch``: the hybrid pipeline (DESIGN §6).

    game --normalise--> NES (JAX, one batched call) --duals--> exact dual solver (Numba)
         --> polish (CVXPY) where needed --> certified ``Solution`` in payoff units

Each same-shape group is normalised once; the network's duals stay in normalised units
and go to the exact stages (``solvers.api.solve_normalised``: ``refine_batch``, or one
game as ``solvers.solve`` runs it) as the warm start. This module adds the per-shape
choice between cold and warm starts (``warm_start="auto"``) and the inference timings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import NamedTuple

import numpy as np

import solvers
from solvers import related
from solvers.api import normalised_duals, solve_normalised
from solvers.checks import check_method
from solvers.gains import check_concept, constraint_player
from solvers.game import as_game, as_game_batch, normalise_group
from solvers.selection import Selection, as_selection
from solvers.solution import Solution

__all__ = [
    "WARM_STARTS",
    "Plan",
    "WarmStartOptions",
    "plan_for",
    "solve_exact",
    "solve_batch",
    "warm_duals",
]

WARM_STARTS: tuple[str, ...] = ("auto", "nes", "cold")
POLICY_FILE = "auto_policy.json"


class WarmStartOptions(NamedTuple):
    """How network duals are turned into a warm start (normalised units).

    Attributes:
      snap: predicted duals below ``snap * max(alpha)`` (per game) are set to exactly 0:
        softplus duals are never 0, and Newton must otherwise discover the inactive set.
      scale: multiply the duals by this factor (network duals tend to be shrunk).
    """

    snap: float = 0.05
    scale: float = 1.0


class Plan(NamedTuple):
    """What ``warm_start="auto"`` picked for one (concept, shape, selection) cell."""

    warm: bool
    method: str
    source: str  # "policy" (measured table), "default" or "user"


@functools.lru_cache(maxsize=4)
def _model(concept: str):
    from hybrid_nes.model import load_pretrained

    return load_pretrained(concept)


@functools.lru_cache(maxsize=1)
def _policy() -> dict:
    """The measured auto policy shipped with the weights (written by the pipeline benchmark)."""
    path = resources.files("hybrid_nes") / "pretrained" / POLICY_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def _cell_key(concept: str, shape: tuple[int, ...], selection: str) -> str:
    return f"{concept}/{'x'.join(map(str, shape))}/{selection}"


def plan_for(concept: str, shape: tuple[int, ...], selection: Selection, warm_start: str, method: str) -> Plan:
    """Cold or warm start and the dual method for one cell.

    ``warm_start="auto"`` reads the table measured by ``benchmarks/pipeline_suite.py``
    (``hybrid_nes/pretrained/auto_policy.json``): the fastest of cold and warm, Newton
    and first-order, per concept, shape and preset. Cells the table lacks start cold with
    ``method`` (the exact solvers' own default picks Newton or first-order by size).

    A warm start the caller chose (``"nes"``, or ``"given"`` duals) with ``method="auto"``
    takes the cell's measured method too (the solvers' own rule,
    ``solvers.policy.auto_first_pass``, runs a first-order pass before Newton on large CEs,
    which a warm start may not need).
    """
    cells = _policy().get("cells", {})
    cell = cells.get(_cell_key(concept, shape, selection.name))
    if warm_start != "auto":
        warm = warm_start != "cold"
        measured = warm and method == "auto" and cell is not None and selection.objective == "entropy"
        return Plan(warm, cell["method"] if measured else method, "user")
    if cell is None or selection.objective != "entropy":
        return Plan(False, method, "default")
    chosen_method = cell["method"] if method == "auto" else method
    return Plan(bool(cell["warm"]), chosen_method, "policy")


def warm_duals(alpha: np.ndarray, options: WarmStartOptions | None = None) -> np.ndarray:
    """Post-processes network duals ``alpha: [B, K]`` (normalised) into a warm start."""
    options = options or WarmStartOptions()
    alpha = np.maximum(np.asarray(alpha, dtype=np.float64), 0.0) * options.scale
    if options.snap > 0:
        top = alpha.max(axis=1, keepdims=True)
        alpha = np.where(alpha < options.snap * top, 0.0, alpha)
    return alpha


def _check_options(
    concept: str, selection: str | Selection, selection_params: Mapping[str, object], method: object
) -> tuple[str, Selection, str]:
    """The checked ``(concept, selection, method)`` of ``solve_batch`` and ``solve_exact``.

    ``selection_params`` are the preset's parameters only: any other keyword is a
    TypeError naming it (``as_selection``), a parameter the preset does not take a
    ValueError.
    """
    return check_concept(concept), as_selection(selection, **selection_params), check_method(method)


def _check_model(model: object, concept: str, warm_start: str | np.ndarray) -> None:
    """``model`` is None or an ``NESModel`` for ``concept`` that ``warm_start`` may use."""
    if model is None:
        return
    if isinstance(model, (str, bytes)) or not all(
        callable(getattr(model, name, None)) for name in ("predict_normalised", "selection_inputs", "check_shape")
    ):
        raise TypeError(
            f"model must be an NESModel (e.g. hybrid_nes.load_pretrained(concept) or NESModel.from_file(path)) "
            f"or None, got {model!r}"
        )
    model_concept = getattr(model, "concept", concept)
    if model_concept != concept:
        raise ValueError(f"model is a {str(model_concept).upper()} network; this solve is concept={concept!r}")
    if not isinstance(warm_start, str) or warm_start == "cold":
        given = "duals" if isinstance(warm_start, np.ndarray) else "'cold'/None"
        raise ValueError(
            f"model is only used for a NES warm start (warm_start='nes' or 'auto'); with warm_start={given} "
            f"it would be ignored"
        )


def _check_warm_options(warm_options: object) -> None:
    if warm_options is not None and not isinstance(warm_options, WarmStartOptions):
        raise TypeError(f"warm_options must be a WarmStartOptions or None, got {warm_options!r}")


def _check_warm_start(warm_start: object) -> str | np.ndarray:
    if warm_start is None:
        return "cold"
    if isinstance(warm_start, str):
        name = warm_start.lower()
        if name not in WARM_STARTS:
            raise ValueError(f"unknown warm_start {warm_start!r}; expected one of {WARM_STARTS}, None or an array of duals")
        return name
    return np.asarray(warm_start, dtype=np.float64)


def _predict(model, norm, selection: Selection, timings: dict) -> np.ndarray | None:
    """Normalised network duals ``[B, K]``, or None (with a warning) if the network cannot take these games."""
    shape = tuple(norm.payoffs.shape[2:])
    try:
        model.check_shape(shape)
    except ValueError as err:
        warnings.warn(f"no NES warm start for shape {shape}: {err}; starting cold", stacklevel=4)
        return None
    from hybrid_nes.model import chunk_buckets

    # jit compiles once per model, game shape and padded batch size: time that call apart.
    key = (shape, chunk_buckets(norm.payoffs.shape[0]))
    compiled = _COMPILED.setdefault(model, set())
    t0 = time.perf_counter()
    sel = model.selection_inputs(norm, selection)
    if key not in compiled:
        if not model.has_statistics(shape):
            model.statistics(shape)  # first use of a shape the weights do not ship: calibrate
            timings["calibrate"] = time.perf_counter() - t0
            t0 = time.perf_counter()
        model.predict_normalised(norm.payoffs, sel)
        compiled.add(key)
        timings["compile"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    alpha = model.predict_normalised(norm.payoffs, sel)
    timings["inference"] = time.perf_counter() - t0
    return alpha


#: Per model: the (game shape, padded batch sizes) already compiled.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _solve_group(
    batch: np.ndarray,
    concept: str,
    selection: Selection,
    warm_start: str | np.ndarray,
    method: str,
    tol: float,
    max_iter: int | None,
    model,
    options: WarmStartOptions | None,
    polish: bool = True,
) -> list[Solution]:
    """One shape group ``batch: [B, N, A1..AN]`` through the pipeline: one normalisation,
    the network's duals kept in normalised units, one call of the exact stages
    (``solvers.api.solve_normalised``), and the Solutions built once with the pipeline's
    stages in ``timings`` and ``info``."""
    t_start = time.perf_counter()
    shape = tuple(batch.shape[2:])
    num_games = batch.shape[0]
    plan = plan_for(concept, shape, selection, "given" if isinstance(warm_start, np.ndarray) else warm_start, method)
    nes = not isinstance(warm_start, np.ndarray) and plan.warm and selection.objective == "entropy"
    norm = normalise_group(batch)
    player = constraint_player(shape, concept)
    alpha0 = None
    start = "cold"
    extra: dict[str, float] = {}
    cold_games: list[int] = []
    if isinstance(warm_start, np.ndarray):
        start = "given"
        alpha0 = normalised_duals(list(warm_start), range(num_games), norm.scale, player)
    elif nes:
        extra["normalise"] = time.perf_counter() - t_start
        net = model if model is not None else _load_model(concept)
        alpha = None if net is None else _predict(net, norm, selection, extra)
        if alpha is not None:
            alpha0 = warm_duals(alpha, options)
            start = "nes"
            with np.errstate(over="ignore", invalid="ignore"):
                finite = np.isfinite(alpha0 * norm.scale[:, player]).all(axis=1)
            if not finite.all():
                # Payoffs spanning ~1e-300 or less: scale ~1e300+, the network's duals
                # overflow in payoff units (as the Solution's duals would). Those games
                # start cold (and say so).
                warnings.warn(
                    f"NES duals of {int((~finite).sum())} game(s) overflow float64 in payoff units "
                    "(payoffs spanning ~1e-300 or less); those start cold", RuntimeWarning, stacklevel=4,
                )
                cold_games = np.flatnonzero(~finite).tolist()
                alpha0[cold_games] = 0.0
    per_game = {k: v / num_games for k, v in extra.items()}
    prep = time.perf_counter() - t_start - sum(extra.values())
    sols = solve_normalised(
        norm, concept, selection, alpha0, method=plan.method, tol=tol, max_iter=max_iter, polish=polish,
        per_game=num_games == 1 or selection.objective != "entropy" or plan.method in ("cvxpy", "newton-cg"),
        prep=prep, extra=per_game, info={"warm_start": start, "plan": plan.source},
    )
    for b in cold_games:  # games whose NES duals overflowed started cold
        sols[b] = dataclasses.replace(sols[b], info={**sols[b].info, "warm_start": "cold"})
    return sols


def _planned_by_user(sol: Solution) -> Solution:
    """``sol`` with ``info["plan"] = "user"`` (a warm start the caller chose)."""
    return dataclasses.replace(sol, info={**sol.info, "plan": "user"})


def _load_model(concept: str):
    from hybrid_nes.checkpoint import CheckpointError

    try:
        return _model(concept)
    except (CheckpointError, OSError) as err:  # a missing or broken weight file must not stop an exact solve
        warnings.warn(f"could not load the pretrained {concept.upper()} network ({err}); starting cold", stacklevel=4)
        return None


def solve_batch(
    games: np.ndarray | Sequence[np.ndarray],
    concept: str = "cce",
    selection: str | Selection = "me",
    *,
    warm_start: str | np.ndarray | Sequence[np.ndarray] | None = "auto",
    tol: float = 1e-8,
    method: str = "auto",
    max_iter: int | None = None,
    model=None,
    warm_options: WarmStartOptions | None = None,
    polish: bool = True,
    **selection_params: object,
) -> list[Solution]:
    """Certified equilibria of many games: NES warm start -> exact dual solver -> polish.

    Args:
      games: ``[B, N, A1..AN]`` array or a list of games (mixed shapes are grouped).
      concept: "cce" or "ce".
      selection: preset name or ``Selection`` (one for every game).
      warm_start: "auto" (measured per shape and concept, see ``plan_for``), "nes" (the
        network's duals), "cold"/None (zero duals), duals ``[B, K]`` in payoff units, or
        a list with the ``Solution`` of a related game (or None / duals) per game (see
        ``solve_exact``).
      tol: tolerance on gap, KKT residual and duality gap (normalised units).
      method: "auto", "newton", "gd" or "cvxpy" (as ``solvers.solve``).
      max_iter: iteration cap per dual pass.
      model: an ``NESModel`` of ``concept`` to use instead of the shipped one, with
        ``warm_start="nes"`` or ``"auto"`` (the measured policy may still start a shape
        cold); given with a cold or duals warm start it is a ValueError (it would be
        ignored), anything but an ``NESModel`` a TypeError.
      warm_options: how network duals become a warm start (``WarmStartOptions``).
      polish: finish games the dual solvers leave short of ``tol`` with the CVXPY polish
        (as ``solvers.solve``); False reports them as they are.
      **selection_params: the preset's parameters (``solvers.selection.PRESET_PARAMS``);
        any other keyword argument is a TypeError naming it.

    Returns:
      ``B`` Solutions in input order; ``timings`` per game include "normalise",
      "inference" and (first call of a shape) "compile" for warm starts, and
      "calibrate" on the first use of a shape whose statistics the weights do not ship; ``info``
      records the warm start used.
    """
    concept, sel, method = _check_options(concept, selection, selection_params, method)
    if related.has_related(warm_start):
        _check_model(model, concept, np.zeros(0))
        _check_warm_options(warm_options)
        sols = solvers.solve_batch(games, concept, sel, duals0=warm_start, tol=tol, max_iter=max_iter, method=method,
                                   polish=polish)
        return [_planned_by_user(sol) for sol in sols]
    start = _check_warm_start(warm_start)
    _check_model(model, concept, start)
    _check_warm_options(warm_options)
    if isinstance(games, np.ndarray):
        batch = as_game_batch(games)
        if isinstance(start, np.ndarray) and start.shape[0] != batch.shape[0]:
            raise ValueError(f"warm_start duals have {start.shape[0]} rows for {batch.shape[0]} games")
        return _solve_group(batch, concept, sel, start, method, tol, max_iter, model, warm_options, polish)
    elif isinstance(games, Sequence) and not isinstance(games, (str, bytes)) and len(games) > 0:
        game_list = [as_game(g, name=f"games[{i}]") for i, g in enumerate(games)]
    else:
        raise TypeError("games must be a [B, N, A1..AN] array or a non-empty list of games")
    if isinstance(start, np.ndarray) and start.shape[0] != len(game_list):
        raise ValueError(f"warm_start duals have {start.shape[0]} rows for {len(game_list)} games")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, g in enumerate(game_list):
        groups.setdefault(g.shape, []).append(i)
    out: list[Solution | None] = [None] * len(game_list)
    for idx in groups.values():
        batch = np.stack([game_list[i] for i in idx])
        given = start[idx] if isinstance(start, np.ndarray) else start
        for i, sol in zip(idx, _solve_group(batch, concept, sel, given, method, tol, max_iter, model, warm_options, polish), strict=True):
            out[i] = sol
    return out  # type: ignore[return-value]


def solve_exact(
    game: np.ndarray | Sequence[np.ndarray],
    concept: str = "cce",
    selection: str | Selection = "me",
    *,
    warm_start: str | np.ndarray | Solution | related.RelatedStart | None = "auto",
    tol: float = 1e-8,
    method: str = "auto",
    max_iter: int | None = None,
    model=None,
    warm_options: WarmStartOptions | None = None,
    polish: bool = True,
    **selection_params: object,
) -> Solution:
    """The certified, selected (C)CE of one game (see ``solve_batch``).

    ``warm_start`` may be duals ``[K]`` in payoff units (e.g. a previous ``Solution.duals``),
    or the ``Solution`` of a related game (fewer or re-ordered actions; wrap it with
    ``solvers.related.related(solution, action_map)`` for dropped or re-ordered ones): its
    duals are mapped onto this game and the run is watched, restarting cold when the warm
    start does not pay (``solvers.related``; ``info["warm_start"]`` says which).
    """
    concept, sel, method = _check_options(concept, selection, selection_params, method)
    if related.is_related(warm_start):
        _check_model(model, concept, np.zeros(0))
        _check_warm_options(warm_options)
        sol = solvers.solve(as_game(game), concept, sel, duals0=warm_start, tol=tol, max_iter=max_iter, method=method,
                            polish=polish)
        return _planned_by_user(sol)
    start = _check_warm_start(warm_start)
    _check_model(model, concept, start)
    _check_warm_options(warm_options)
    game = as_game(game)
    if isinstance(start, np.ndarray):
        start = start[None]
    # One validation of the game (not solve_batch's second one): a 4x4 CCE solves in ~25 us.
    return _solve_group(game[None], concept, sel, start, method, tol, max_iter, model, warm_options, polish)[0]

