"""The public entry points: ``solve``, ``solve_batch`` and the low-level ``refine_batch``.

Pipeline (DESIGN §4-6):

    validate -> normalise (§5) -> resolve the selection -> dual problem (ELL gains)
      -> projected Newton / accelerated gradient from ``duals0`` (§4)
      -> [hard constraints that did not converge: facial reduction LP, restricted
          solve (§4b)] -> [still short of tolerance: CVXPY polish]
      -> certificate -> payoff units -> frozen ``Solution``

``duals0`` and ``Solution.duals`` are flat ``[K]`` vectors in payoff units (layout:
``solvers.gains``), so a solution's duals are a valid warm start. ``refine_batch`` works
in normalised units on whole batches and is what the NES pipeline calls with network
duals.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from solvers import kernels as kn
from solvers import memory, related
from solvers.dual import DualProblem
from solvers.face import Face, lift_duals, minimal_face
from solvers.gains import check_concept, constraint_player, gain_structure, num_constraints
from solvers.game import (
    CONSTANT_ULPS,
    NormalisedGame,
    as_game,
    as_game_batch,
    is_float64_game,
    marginals,
    normalise,
    normalise_batch,
)
from solvers.gradient import GradientOptions, gradient_batch
from solvers.newton import (
    BLOCK_LIMIT,
    DIVERGED,
    MAX_ITER,
    OPTIMAL,
    STALLED,
    NewtonOptions,
    newton_batch,
    options_array,
    solve_single,
)
from solvers.selection import Selection, SelectionParams, as_selection, resolve_selection
from solvers.solution import Solution, Status

__all__ = [
    "METHODS",
    "FACE_MODES",
    "NEWTON_MAX_DUALS",
    "FACE_AFTER",
    "auto_first_order",
    "auto_first_pass",
    "auto_matrix_free",
    "GainLayout",
    "NewtonPlan",
    "RefineResult",
    "check_method",
    "gain_layout",
    "newton_plan",
    "refine_batch",
    "solve",
    "solve_batch",
]

METHODS: tuple[str, ...] = ("auto", "newton", "gd", "cvxpy", "newton-cg")
FACE_MODES: tuple[str, ...] = ("auto", "always", "never")
#: ``method="auto"`` uses Newton up to this many duals, the first-order method above
#: (a Cholesky of the free block costs ``K^3 / 3`` per iteration).
NEWTON_MAX_DUALS = 600
#: ``method="auto"`` in ``solve`` takes the matrix-free truncated Newton
#: (``solvers.newton_cg``, "newton-cg") for games of 3+ players above
#: ``NEWTON_MAX_DUALS`` duals, and for any game whose ELL gain layout (``24 |A| c`` bytes:
#: rows, deviated joints, values) exceeds ``MATRIX_FREE_LAYOUT_BYTES`` or a quarter of the
#: available memory (benchmarks/results/eval_suite.md).
MATRIX_FREE_LAYOUT_BYTES = 256 * 2**20
#: ``face="auto"``: hard-constraint games not optimal after this many Newton iterations
#: (a dual without minimiser converges only linearly) get the facial-reduction LP.
FACE_AFTER = 60
#: Same, for the first-order method.
FACE_AFTER_GD = 3000
#: ``method="auto"`` above ``NEWTON_MAX_DUALS``: first-order iterations before Newton,
#: hard constraints. Soft constraints (finite ``rho``, e.g. Maximum Strength) make the dual
#: strongly convex and FISTA converges alone, while Newton after 500 iterations still has
#: most duals free: MS-CE per game 32x32 3.6 s, 40x40 101 s with the 500-iteration pass;
#: 0.53 s, 2.1 s with the first-order method to convergence (``AUTO_GD_ITER_SOFT``, the
#: first-order cap; Newton only finishes games it leaves).
AUTO_GD_ITER = 500
AUTO_GD_ITER_SOFT = GradientOptions().max_iter
#: ``method="auto"`` on 2-player hard-constraint CEs with at least
#: ``AUTO_PREPASS_MIN_DUALS`` duals: a short first-order pass finds most of the active set
#: before Newton (whose iterations there mostly drift towards a face of the simplex), and
#: Newton's Cholesky then works on a far smaller free block. Measured cold, ME-CE, ms per
#: game (2-core CPU): 10x10 1.14 -> 0.52, 12x12 0.55 -> 0.35, 16x16 1.81 -> 0.84, 20x12
#: 2.72 -> 1.26, 24x24 11.8 (7.3 with the 500-iteration pass) -> 1.9, 32x32 13.1 (500) ->
#: 4.9; 8x8 and 9x9 unchanged. Left out, being slower with it: CCEs (Newton takes ~5
#: iterations), CEs of 3+ players (~5 too: 12x12x12 2.07 -> 3.06), soft constraints (MS).
AUTO_PREPASS_ITER = 30
AUTO_PREPASS_MIN_DUALS = 150
#: Default iteration caps per stage. Newton's was 200: 32x32 MW-CE with ``mu = 50`` then
#: ended at the cap and went to the CVXPY polish, which took 18-35 s and still missed
#: tol 1e-8 (4 of 5 games "inaccurate"); with 1,000 Newton certifies all 5 in 190-520
#: iterations, 0.9-4.1 s.
DEFAULT_MAX_ITER = {"newton": NewtonOptions().max_iter, "gd": GradientOptions().max_iter}

_SOLVER_STATUS = {
    OPTIMAL: Status.OPTIMAL,
    MAX_ITER: Status.MAX_ITER,
    BLOCK_LIMIT: Status.MAX_ITER,
    STALLED: Status.INACCURATE,
    DIVERGED: Status.INACCURATE,
}


class GainLayout(NamedTuple):
    """The payoff-independent ELL structure of one (shape, concept), cached.

    Attributes:
      rows: ``[|A|, c]`` constraint index per slot; slot_player: ``[c]``;
      dev: ``[|A|, c]`` deviated joint per slot; player: ``[K]`` owner of each row.
    """

    rows: np.ndarray
    slot_player: np.ndarray
    dev: np.ndarray
    player: np.ndarray

    @property
    def num_constraints(self) -> int:
        return int(self.player.shape[0])


@functools.lru_cache(maxsize=128)
def gain_layout(shape: tuple[int, ...], concept: str) -> GainLayout:
    """``GainLayout`` of ``shape`` (action counts) and ``concept``, cached: do not modify.

    (The arrays stay writable: Numba compiles read-only arrays as a separate type, and one
    specialisation per kernel keeps the first-call compile time down.)
    """
    rows, slot_player, dev = gain_structure(shape, concept)
    player = constraint_player(shape, concept)
    return GainLayout(*(np.ascontiguousarray(a) for a in (rows, slot_player, dev, player)))


class RefineResult(NamedTuple):
    """Per-game outcome of ``refine_batch`` (normalised units).

    Attributes:
      joint: ``[B, A1..AN]``; alpha: ``[B, K]`` non-negative duals with
        ``sigma(alpha) = joint`` (lifted off a face, see ``solvers.face.lift_duals``).
      eps: ``[B, N]`` certified approximation ``eps'``; gaps: ``[B, N]`` per-player
        ``max_dev E[gain]``; violation: ``[B]`` ``max_k (E[M_k] - eps_k)^+``;
      kkt: ``[B]`` KKT residual; duality_gap: ``[B]``; objective: ``[B]`` primal value.
      iterations: ``[B]`` dual-solver iterations (all passes).
      status: ``B`` ``Status`` values; method: ``B`` strings ("newton", "gd",
        "newton+face", "newton+face+cvxpy", ...).
      face: ``[B]`` bool, True where the facial-reduction LP ran.
      timings: seconds per stage for the whole batch.
      restricted_alpha: ``[B, K]`` the duals before ``lift_duals`` (sign-free on the
        face's implicit equalities, moderate in size; equal to ``alpha`` without a face).
    """

    joint: np.ndarray
    alpha: np.ndarray
    eps: np.ndarray
    gaps: np.ndarray
    violation: np.ndarray
    kkt: np.ndarray
    duality_gap: np.ndarray
    objective: np.ndarray
    iterations: np.ndarray
    status: tuple[Status, ...]
    method: tuple[str, ...]
    face: np.ndarray
    timings: Mapping[str, float]
    restricted_alpha: np.ndarray


# ---------------------------------------------------------------------------------------
# Validation helpers.
# ---------------------------------------------------------------------------------------
def check_method(method: object) -> str:
    """The lower-cased method name; ValueError naming ``METHODS`` otherwise."""
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return method.lower()


def _check_tol(tol: float) -> float:
    try:
        value = float(tol)
    except (TypeError, ValueError) as err:
        raise TypeError(f"tol must be a positive number, got {tol!r}") from err
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"tol must be positive and finite, got {tol!r}")
    return value


def _check_max_iter(max_iter: int | None) -> int | None:
    if max_iter is None:
        return None
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)):
        raise TypeError(f"max_iter must be a positive int or None, got {max_iter!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    return int(max_iter)


def _check_face(face: str) -> str:
    if not isinstance(face, str) or face.lower() not in FACE_MODES:
        raise ValueError(f"unknown face mode {face!r}; expected one of {FACE_MODES}")
    return face.lower()


def _check_options(
    concept: str,
    selection: str | Selection,
    selection_params: Mapping[str, object],
    method: str,
    tol: float,
    max_iter: int | None,
    face: str,
) -> tuple[str, Selection, str, float, int | None, str]:
    """The checked ``(concept, selection, method, tol, max_iter, face)`` of ``solve`` and
    ``solve_batch``, validated in that order."""
    concept = check_concept(concept)
    sel = as_selection(selection, **selection_params)
    method = check_method(method)
    tol = _check_tol(tol)
    max_iter = _check_max_iter(max_iter)
    face = _check_face(face)
    return concept, sel, method, tol, max_iter, face


def _check_polish(polish: object) -> bool:
    if not isinstance(polish, (bool, np.bool_)):
        raise TypeError(f"polish must be True or False, got {polish!r}")
    return bool(polish)


def _check_duals(duals: object, shape: tuple[int, ...], name: str = "duals0") -> np.ndarray:
    array = np.asarray(duals)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}; expected {shape} (flat duals, layout of solvers.gains)")
    array = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains NaN or inf (a Solution's duals are inf where payoff units overflow "
            "float64, see its info['duals_overflow']: pass no warm start, or its "
            "info['normalised_duals'] to solvers.refine_batch)"
        )
    if np.any(array < 0):
        raise ValueError(f"{name} must be >= 0 (dual variables of <= constraints); min entry is {array.min():.3g}")
    return array


# ---------------------------------------------------------------------------------------
# The batched core (normalised units).
# ---------------------------------------------------------------------------------------
def _batched_params(params: SelectionParams, num_games: int, num_players: int, num_joint: int):
    # Fresh writable C arrays: the face stage edits base, and Numba types read-only or
    # broadcast views differently (one compiled specialisation per kernel is the aim).
    def full(value, shape):
        return np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), shape), order="C")

    return (full(params.base_logits, (num_games, num_joint)), full(params.eps_hat, (num_games, num_players)),
            full(params.eps_plus, (num_games, num_players)), full(params.rho, (num_games,)))


def _run_dual(solver: str, arrays: tuple, alpha0: np.ndarray, tol: float, max_iter: int,
              parallel: bool | None, max_block: int = 0):
    if solver == "newton":
        return newton_batch(*arrays, alpha0, NewtonOptions(tol=tol, max_iter=max_iter, max_block=max_block),
                            parallel=parallel)
    return gradient_batch(*arrays, alpha0, GradientOptions(tol=tol, max_iter=max_iter), parallel=parallel)


def _problem_of(layout: GainLayout, values, base, eps_hat, eps_plus, rho, free, b: int) -> DualProblem:
    return DualProblem(layout.rows, values[b], layout.player, base[b], eps_hat[b], eps_plus[b],
                       float(rho[b]), free[b])


def _polish_one(problem: DualProblem, joint0: np.ndarray):
    """The CVXPY finish (``solvers.polish.polish``); None when it is unavailable."""
    try:
        from solvers.polish import polish as cvx_polish
    except ImportError:  # written in parallel; the dual result stands without it
        return None
    try:
        return cvx_polish(problem, joint0)
    except Exception as err:  # noqa: BLE001 - a failed finish must not hide the dual answer
        return err


def _layout_bytes(shape: tuple[int, ...], concept: str) -> int:
    """Bytes of the ELL gain layout of one game: rows, deviated joints, values (``24 |A| c``)."""
    slots = sum(int(n) - (concept == "ce") for n in shape)
    return 24 * math.prod(int(n) for n in shape) * slots


def _layout_fits(shape: tuple[int, ...], concept: str) -> bool:
    """The ELL layout within ``MATRIX_FREE_LAYOUT_BYTES`` and a quarter of the available memory.

    Layouts up to ``memory.UNCHECKED_BYTES`` fit without reading the available memory (the
    rule ``memory.newton_fits`` applies to Newton's buffers): reading ``/proc/meminfo`` on
    every ``solve`` cost more than a small game's whole solve.
    """
    need = _layout_bytes(shape, concept)
    if need <= min(MATRIX_FREE_LAYOUT_BYTES, memory.UNCHECKED_BYTES):
        return True
    return need <= min(MATRIX_FREE_LAYOUT_BYTES, memory.available_memory() // 4)


def auto_matrix_free(shape: tuple[int, ...], concept: str, face: str = "auto") -> bool:
    """True when ``method="auto"`` in ``solve`` runs "newton-cg" (``MATRIX_FREE_LAYOUT_BYTES``).
    Needs only the shape; ``face="always"`` keeps the ELL path (which has facial reduction)."""
    if face == "always":
        return False
    if not _layout_fits(tuple(shape), concept):
        return True
    return len(shape) >= 3 and num_constraints(tuple(shape), concept) > NEWTON_MAX_DUALS


def _solve_matrix_free(norm: NormalisedGame, concept: str, sel: Selection, params: SelectionParams,
                       duals0: np.ndarray | None, tol: float, max_iter: int | None,
                       timings: dict[str, float], t_start: float) -> Solution:
    """``solve`` by ``solvers.newton_cg`` (no gain layout, facial reduction nor polish)."""
    from solvers.matrix_free import MatrixFreeGame
    from solvers.newton_cg import NewtonCGOptions, newton_cg

    t0 = time.perf_counter()
    game = MatrixFreeGame(norm.payoffs, concept)
    alpha0 = None
    if duals0 is not None:
        alpha0 = _check_duals(duals0, (game.num_constraints,)) / norm.scale[game.player]
    options = NewtonCGOptions(tol=tol) if max_iter is None else NewtonCGOptions(tol=tol, max_iter=max_iter)
    timings["gains"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = newton_cg(game, params.base_logits, params.eps_hat, params.eps_plus, float(params.rho), alpha0, options)
    timings["refine"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    stats = (res.violation, res.kkt, res.duality_gap, res.loss - res.duality_gap)
    sol = _make_solution(res.joint, res.alpha, res.eps, res.gaps, stats, res.iterations, _SOLVER_STATUS[res.status],
                         "newton-cg", False, norm.scale, game, concept, sel, timings)
    sol.info["cg_iterations"] = res.cg_iterations
    sol.info["first_order_iterations"] = res.first_order_iterations
    return sol


def auto_first_pass(concept: str, num_players: int, num_duals: int, hard: bool) -> int:
    """First-order iterations ``method="auto"`` runs before Newton (0: Newton alone).

    ``AUTO_PREPASS_ITER`` on 2-player hard-constraint CEs with ``AUTO_PREPASS_MIN_DUALS``
    duals or more; above ``NEWTON_MAX_DUALS`` duals, ``AUTO_GD_ITER`` on other
    hard-constraint problems and ``AUTO_GD_ITER_SOFT`` (to convergence) on soft ones.
    """
    if concept == "ce" and num_players == 2 and hard and num_duals >= AUTO_PREPASS_MIN_DUALS:
        return AUTO_PREPASS_ITER
    if num_duals <= NEWTON_MAX_DUALS:
        return 0
    return AUTO_GD_ITER if hard else AUTO_GD_ITER_SOFT


class NewtonPlan(NamedTuple):
    """How projected Newton may run on a batch within the memory budget (``solvers.memory``).

    Attributes:
      fits: the dense ``[K, K]`` buffers fit (all games at once, or one at a time).
      parallel: Newton may run games on all cores (False: one game at a time, so that
        one set of ``[K, K]`` buffers is allocated at once).
      max_block: ``NewtonOptions.max_block``: 0 where the ``[K, K]`` pair fits, else the
        largest free block within the budget (one game at a time).
    """

    fits: bool
    parallel: bool
    max_block: int


@functools.lru_cache(maxsize=256)
def _newton_sizes(shape: tuple[int, ...], concept: str) -> tuple[int, int, bool]:
    """``(K, |A|, identity)``; the CCE layout is the identity one (``kernels.rows_are_identity``),
    where Newton also keeps ``[n, |A|]`` column buffers."""
    return num_constraints(shape, concept), math.prod(int(n) for n in shape), concept == "cce"


def _check_newton_memory(method: str, shape: tuple[int, ...], concept: str, num_games: int, parallel: bool,
                         budget: object) -> NewtonPlan | None:
    """The ``NewtonPlan`` (None for ``method="gd"``); ``MemoryError`` for ``method="newton"``
    beyond the budget, before anything of the problem's size is allocated."""
    if method == "gd":
        return None
    plan = newton_plan(shape, concept, num_games, parallel, budget)
    if method == "newton" and not plan.fits:
        num, num_joint, identity = _newton_sizes(shape, concept)
        raise memory.newton_memory_error(num, num_joint, identity, memory.memory_budget(budget))
    return plan


def newton_plan(shape: tuple[int, ...], concept: str, num_games: int = 1, parallel: bool = False,
                budget: object = None) -> NewtonPlan:
    """The ``NewtonPlan`` of ``num_games`` games of ``shape`` (action counts) and ``concept``
    under ``solvers.memory.memory_budget(budget)``; ``parallel``: the batch runs its games on
    all cores. Needs no gain layout (cheap for any shape)."""
    num, num_joint, identity = _newton_sizes(tuple(shape), concept)
    concurrent = memory.concurrent_games(num_games, parallel)
    full = memory.newton_bytes(num, num_joint, identity)
    if memory.newton_fits(full * concurrent, budget):
        return NewtonPlan(True, bool(parallel), 0)
    limit = memory.memory_budget(budget)
    if full <= limit:
        return NewtonPlan(True, False, 0)
    return NewtonPlan(False, False, memory.newton_max_block(limit, num_joint, identity))


def auto_first_order(shape: tuple[int, ...], concept: str, num_games: int = 1, parallel: bool = False,
                     budget: object = None) -> bool:
    """True when ``method="auto"`` takes the first-order path: Newton's dense ``[K, K]``
    buffers exceed the memory budget (``newton_plan``). The first-order method then runs
    to convergence and Newton only finishes games it leaves whose free block fits."""
    return not newton_plan(shape, concept, num_games, parallel, budget).fits


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
) -> RefineResult:
    """Exact dual solve of a batch of normalised games of one shape (the low-level entry).

    Everything is in normalised units (DESIGN §5): this is what the NES pipeline calls
    with network duals as ``alpha0``.

    Args:
      payoffs: ``[B, N, A1..AN]`` normalised payoffs (``solvers.game.normalise_batch``).
      concept: "cce" or "ce".
      params: a resolved entropy selection; each field unbatched (shared) or with a
        leading B axis (``base_logits [B, |A|]``, ``eps_hat/eps_plus [B, N]``, ``rho [B]``).
      alpha0: ``[B, K]`` start duals (projected onto ``alpha >= 0``); None = zeros.
      method: "auto" (``auto_first_pass``: a first-order pass of ``AUTO_PREPASS_ITER``
        iterations on 2-player hard-constraint CEs with ``AUTO_PREPASS_MIN_DUALS`` duals or more,
        of ``AUTO_GD_ITER`` on other hard-constraint problems above ``NEWTON_MAX_DUALS``
        duals and up to ``AUTO_GD_ITER_SOFT`` (convergence) on soft-constraint ones, then
        Newton for the games not yet optimal; Newton alone otherwise), "newton", "gd".
        Where Newton's dense ``[K, K]`` buffers exceed the memory budget
        (``auto_first_order``), "auto" runs the first-order method to convergence and
        Newton only on games it leaves whose free block fits.
      tol: tolerance on violation, KKT residual and duality gap.
      max_iter: iteration cap per pass (None: 1,000 Newton, 20,000 gradient).
      face: "auto" (facial reduction for hard-constraint games not optimal after
        ``FACE_AFTER`` iterations), "always" (before the first pass) or "never".
      polish: finish games still short of tolerance with ``solvers.polish.polish``.
      parallel: run games on all cores (default: when B > 1).
      memory_budget: bytes (or a string such as "4G") the dense Newton buffers may take;
        None: ``solvers.memory.memory_budget()`` (a share of the available memory, or
        ``HYBRID_NES_MEMORY_BUDGET``).

    Returns:
      A ``RefineResult``.

    Raises:
      MemoryError: ``method="newton"`` whose dense ``[K, K]`` buffers exceed the budget
        (raised before the gains or any buffer are allocated).
    """
    t_start = time.perf_counter()
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
    plan = _check_newton_memory(method, shape, concept, num_games, threads, memory_budget)
    layout = gain_layout(shape, concept)
    num = layout.num_constraints
    num_joint = layout.rows.shape[0]
    # "auto": Newton when its Cholesky is cheap; else a first-order pass first and Newton
    # for the games it leaves (Newton's free block is small after it, so it stays
    # affordable; ill-conditioned games, e.g. MW, take GD 10^4+ iterations alone).
    first_pass = auto_first_pass(concept, num_players, num, bool(np.all(np.isinf(params.rho))))
    # Beyond the budget "auto" is the first-order method, then a Newton finish limited to
    # free blocks within the budget (plan.max_block).
    first_order = method == "auto" and not plan.fits
    if first_order:
        solver = second = "gd"
    else:
        solver = method if method != "auto" else ("gd" if first_pass else "newton")
        second = "newton" if method == "auto" else solver
    newton_parallel = plan.parallel if plan is not None else threads
    newton_block = plan.max_block if plan is not None else 0
    cap = max_iter if max_iter is not None else DEFAULT_MAX_ITER[solver]
    cap2 = max_iter if max_iter is not None else DEFAULT_MAX_ITER[second]

    values = (kn.gain_values if threads else kn.gain_values_serial)(payoffs.reshape(num_games, num_players, num_joint), layout.slot_player, layout.dev)
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
                fc = minimal_face(problem)
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

    # Stages (solver, iteration cap, facial reduction first); each runs on the games not
    # yet optimal (nor infeasible) from where the previous stage left them.
    stages: list[tuple[str, int, bool]] = []
    if second != solver:
        stages.append((solver, min(cap, first_pass), False))
    if face == "auto" and np.any(hard):
        stages.append((second, min(cap2, FACE_AFTER if second == "newton" else FACE_AFTER_GD), False))
        stages.append((second, cap2, True))
    else:
        stages.append((second, cap2, False))
    if first_order and newton_block > 0:
        stages.append(("newton", max_iter if max_iter is not None else DEFAULT_MAX_ITER["newton"], False))
    if face == "always" and np.any(hard):
        apply_faces(np.flatnonzero(hard))
    iterations = np.zeros(num_games, dtype=np.int64)
    status = np.full(num_games, MAX_ITER, dtype=np.int64)
    tokens: list[list[str]] = [["face"] if used_face[b] else [] for b in range(num_games)]
    for stage_solver, stage_cap, stage_face in stages:
        todo = np.flatnonzero((status != OPTIMAL) & ~infeasible)
        if stage_face:
            apply_faces(todo[hard[todo] & ~used_face[todo]])
            for b in todo[used_face[todo]]:
                if "face" not in tokens[b]:
                    tokens[b].append("face")
            todo = todo[~infeasible[todo]]
        if todo.size == 0:
            break
        sub = (layout.rows, values[todo], layout.player, base[todo], eps_hat[todo], eps_plus[todo],
               rho[todo], free[todo])
        t0 = time.perf_counter()
        if stage_solver == "newton":
            res = _run_dual(stage_solver, sub, alpha[todo], tol, stage_cap, newton_parallel, newton_block)
        else:
            res = _run_dual(stage_solver, sub, alpha[todo], tol, stage_cap, parallel)
        timings["refine"] += time.perf_counter() - t0
        alpha[todo] = res.alpha
        iterations[todo] += res.iterations
        # BLOCK_LIMIT: Newton stopped at a free block beyond the budget; the game keeps
        # the previous stage's status (and is not credited to Newton if it took no step).
        ran = res.status != BLOCK_LIMIT
        status[todo[ran]] = res.status[ran]
        for j, b in enumerate(todo):
            if not ran[j] and res.iterations[j] == 0:
                continue
            if not tokens[b] or tokens[b][-1] != stage_solver:
                tokens[b].append(stage_solver)

    t0 = time.perf_counter()
    joint, gaps, eps, stats = (kn.certify if threads else kn.certify_serial)(layout.rows, values, layout.player, base, eps_hat, eps_plus, rho, free, alpha)
    timings["certificate"] = time.perf_counter() - t0
    violation, kkt, dgap, loss = stats[:, 0].copy(), stats[:, 1].copy(), stats[:, 2].copy(), stats[:, 3]
    objective = loss - dgap
    statuses = [_SOLVER_STATUS[int(s)] for s in status]
    methods = ["+".join(t) if t else solver for t in tokens]
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
            problem = _problem_of(layout, values, base, eps_hat, eps_plus, rho, free, b)
            out = _polish_one(problem, joint[b])
            if out is None or isinstance(out, Exception) or out.status == "failed" or out.solver == "start":
                continue
            methods[b] += "+cvxpy"
            joint[b] = out.joint
            eps[b] = out.eps
            gaps[b] = out.gaps
            violation[b] = out.violation
            dgap[b] = out.duality_gap
            objective[b] = out.objective
            kkt[b] = math.nan
            duals = np.asarray(out.duals, dtype=np.float64)
            alpha[b] = duals if np.all(np.isfinite(duals)) else alpha[b]
            good = out.status == "optimal" and violation[b] <= tol and abs(dgap[b]) <= tol
            statuses[b] = Status.OPTIMAL if good else Status.INACCURATE
        timings["polish"] = time.perf_counter() - t0

    restricted_alpha = alpha.copy()
    for b, fc in faces.items():
        if fc.feasible:
            full = _problem_of(layout, values, full_base, eps_hat, eps_plus, rho, free, b)
            alpha[b] = lift_duals(full, fc, alpha[b])
    np.maximum(alpha, 0.0, out=alpha)
    timings["total"] = time.perf_counter() - t_start
    return RefineResult(
        joint.reshape((num_games,) + shape), alpha, eps, gaps, violation, kkt, dgap, objective,
        iterations, tuple(statuses), tuple(methods), used_face, timings, restricted_alpha,
    )


# ---------------------------------------------------------------------------------------
# Single games and lists of games in payoff units.
# ---------------------------------------------------------------------------------------
def _payoff_duals(alpha: np.ndarray, row_scale: np.ndarray, info: dict) -> np.ndarray:
    """``alpha * s_p`` (payoff units). Where that overflows float64 (a game whose payoffs
    span ~1e-300 or less: ``s_p`` ~1e300 and more) the entries are inf, the normalised
    duals go to ``info["normalised_duals"]`` and ``info["duals_overflow"]`` says so, with a
    ``RuntimeWarning``: never a silent inf. (At ``x1e300`` the duals are ~1e-300 and may
    underflow to 0 or lose digits; as a warm start they are then approximate, not wrong.)"""
    with np.errstate(over="ignore", invalid="ignore"):
        duals = alpha * row_scale
    if not kn.all_finite(duals.reshape(-1)):
        info["normalised_duals"] = np.array(alpha, dtype=np.float64)
        info["duals_overflow"] = (
            "duals in payoff units (normalised duals x scale, up to "
            f"{float(np.max(row_scale)):.3g}) overflow float64; info['normalised_duals'] holds "
            "them in normalised units (solvers.refine_batch takes those as alpha0)"
        )
        warnings.warn(info["duals_overflow"], RuntimeWarning, stacklevel=4)
    return duals


def _make_solution(
    joint: np.ndarray,
    alpha: np.ndarray,
    eps: np.ndarray,
    gaps: np.ndarray,
    stats: tuple[float, float, float, float],
    iterations: int,
    status: Status,
    method: str,
    face: bool,
    scale: np.ndarray,
    layout: GainLayout,
    concept: str,
    selection: Selection,
    timings: Mapping[str, float],
) -> Solution:
    """A ``Solution`` in payoff units from normalised results (DESIGN §5).

    ``stats`` = (violation, kkt, duality gap, objective), normalised units.
    """
    with np.errstate(over="ignore"):
        gaps = gaps / scale
    if joint.ndim == 2:  # the common bimatrix case, without the generic axis bookkeeping
        margins = (joint.sum(axis=1), joint.sum(axis=0))
    else:
        margins = marginals(joint)
    info = {"violation": float(stats[0]), "kkt": float(stats[1]), "face": bool(face)}
    with np.errstate(over="ignore"):
        eps = eps / scale
    return Solution(
        joint=joint,
        marginals=margins,
        duals=_payoff_duals(alpha, scale[layout.player], info),
        eps=eps,
        gap=float(gaps.max()),
        gaps=gaps,
        scale=scale,
        duality_gap=float(stats[2]),
        objective=float(stats[3]),
        iterations=int(iterations),
        timings=timings,
        status=status,
        concept=concept,
        selection=selection,
        method=method,
        info=info,
    )


def _to_solution(
    res: RefineResult,
    b: int,
    scale: np.ndarray,
    layout: GainLayout,
    concept: str,
    selection: Selection,
    timings: Mapping[str, float],
) -> Solution:
    stats = (res.violation[b], res.kkt[b], res.duality_gap[b], res.objective[b])
    sol = _make_solution(
        res.joint[b], res.alpha[b], res.eps[b], res.gaps[b], stats, int(res.iterations[b]),
        res.status[b], res.method[b], bool(res.face[b]), scale, layout, concept, selection, timings,
    )
    if res.face[b]:
        # The face's own duals (payoff units), for users who prefer them to the lifted ones.
        with np.errstate(over="ignore", invalid="ignore"):
            sol.info["restricted_duals"] = res.restricted_alpha[b] * scale[layout.player]
    return sol


def _batch_solutions(
    res: RefineResult,
    scale: np.ndarray,
    layout: GainLayout,
    concept: str,
    selection: Selection,
    timings: Mapping[str, float],
) -> list[Solution]:
    """``_to_solution`` for a whole batch: the unit conversions as one array op each.

    The solutions' arrays are views into the batch arrays (``scale: [B, N]``).
    """
    num_games, num_players = scale.shape
    joint = res.joint
    with np.errstate(over="ignore", invalid="ignore"):
        duals = res.alpha * scale[:, layout.player]
        gaps = res.gaps / scale
        eps = res.eps / scale
    finite_duals = np.isfinite(duals).all(axis=1).tolist()
    axes = tuple(range(1, num_players + 1))
    margins = [joint.sum(axis=axes[:p] + axes[p + 1 :]) for p in range(num_players)]
    gap = gaps.max(axis=1).tolist()
    dgap = res.duality_gap.tolist()
    objective = res.objective.tolist()
    iterations = res.iterations.tolist()
    violation = res.violation.tolist()
    kkt = res.kkt.tolist()
    face = res.face.tolist()
    out = []
    for b in range(num_games):
        info = {"violation": violation[b], "kkt": kkt[b], "face": face[b]}
        if face[b]:
            with np.errstate(over="ignore", invalid="ignore"):
                info["restricted_duals"] = res.restricted_alpha[b] * scale[b, layout.player]
        duals_b = duals[b] if finite_duals[b] else _payoff_duals(res.alpha[b], scale[b, layout.player], info)
        out.append(Solution(
            joint=joint[b], marginals=tuple(m[b] for m in margins), duals=duals_b, eps=eps[b],
            gap=gap[b], gaps=gaps[b], scale=scale[b], duality_gap=dgap[b], objective=objective[b],
            iterations=iterations[b], timings=timings, status=res.status[b], concept=concept,
            selection=selection, method=res.method[b], info=info,
        ))
    return out


def _reference_solution(
    norm: NormalisedGame,
    concept: str,
    selection: Selection,
    params: SelectionParams,
    tol: float,
    timings: dict[str, float],
    t_start: float,
) -> Solution:
    """Max Gini and ``method="cvxpy"``: delegated to ``solvers.polish``."""
    from solvers import polish as pl

    layout = gain_layout(tuple(norm.payoffs.shape[1:]), concept)
    t0 = time.perf_counter()
    if params.objective == "gini":
        ref = pl.max_gini(norm.payoffs, concept, params.eps_hat)
        method = "osqp" if ref.solver == "" else ref.solver.lower()
    else:
        ref = pl.reference_solve(norm.payoffs, concept, params)
        method = "cvxpy" if ref.solver == "" else f"cvxpy+{ref.solver.lower()}"
    timings["polish"] = time.perf_counter() - t0
    scale = norm.scale
    num = layout.num_constraints
    duals = np.zeros(num) if ref.duals is None else np.asarray(ref.duals, dtype=np.float64)
    duals = np.where(np.isfinite(duals), np.maximum(duals, 0.0), 0.0)
    gaps_norm = np.asarray(ref.gaps if ref.gaps is not None else np.zeros(scale.shape), dtype=np.float64)
    if ref.status == "infeasible":
        status = Status.INFEASIBLE
    elif ref.status == "optimal" and ref.violation <= tol and abs(ref.duality_gap) <= tol:
        status = Status.OPTIMAL
    else:
        status = Status.INACCURATE
    joint = np.asarray(ref.joint, dtype=np.float64).reshape(norm.payoffs.shape[1:])
    info = {"violation": float(ref.violation), "solver_status": ref.status}
    with np.errstate(over="ignore"):
        gaps = gaps_norm / scale
        eps = np.asarray(ref.eps, dtype=np.float64) / scale
    timings["total"] = time.perf_counter() - t_start
    return Solution(
        joint=joint,
        marginals=marginals(joint),
        duals=_payoff_duals(duals, scale[layout.player], info),
        eps=eps,
        gap=float(gaps.max()),
        gaps=gaps,
        scale=scale,
        duality_gap=float(ref.duality_gap),
        objective=float(ref.objective),
        iterations=0,
        timings=timings,
        status=status,
        concept=concept,
        selection=selection,
        method=method,
        info=info,
    )


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
        first-order pass on large problems (``auto_first_pass``). "gd" (first-order
        alone) on hard-constraint CEs whose optimum lies on a face needs thousands of
        iterations and may end "inaccurate" (8x8 MW-CE: 3 of 32 games; "auto" and
        "newton": 32 of 32 optimal). "newton-cg": matrix-free FISTA pass then truncated
        Newton (``solvers.newton_cg``, DESIGN §11; ``info["first_order_iterations"]``,
        ``info["cg_iterations"]``): no gain layout, memory a few copies of the joint; no facial reduction or polish (a dual drifting to a face may end
        "max_iter"); "auto" takes it for large games (``auto_matrix_free``).
      face: facial reduction for hard constraints (DESIGN §4b): "auto" (when the dual
        solver is not optimal after ``FACE_AFTER`` iterations), "always" (first: exact
        zeros off the minimal face) or "never".
      polish: finish a game the dual solvers leave short of ``tol`` with the CVXPY polish
        (``solvers.polish.polish``; seconds on 24x24 CEs and up). False reports it as the
        dual solver left it ("max_iter" or "inaccurate"), for batch jobs that prefer speed.
      memory_budget: bytes (or a string such as "4G") Newton's dense Hessian buffers may
        take (``solvers.memory``; None: half the available memory, or the environment
        variable ``HYBRID_NES_MEMORY_BUDGET``). Beyond it "auto" takes the first-order
        method (``auto_first_order``; ``Solution.method`` then starts with "gd").
      **selection_params: parameters of the preset (``eps_hat``, ``target``, ``mu``, ...).

    Returns:
      A frozen ``Solution`` in the game's payoff units; ``status`` is "optimal" only when
      every tolerance is met.

    Raises:
      TypeError, ValueError: bad game, concept, selection, parameters, ``duals0`` or
        ``memory_budget``.
      MemoryError: ``method="newton"`` whose dense ``[K, K]`` buffers exceed the memory
        budget (before they are allocated).
    """
    if related.is_related(duals0):
        return related.solve_related(solve, game, concept, selection, duals0, tol=tol, max_iter=max_iter, method=method,
                                     face=face, polish=polish, memory_budget=memory_budget, **selection_params)
    t_start = time.perf_counter()
    payoffs = _as_game_fast(game)
    concept, sel, method, tol, max_iter, face = _check_options(
        concept, selection, selection_params, method, tol, max_iter, face
    )
    polish = _check_polish(polish)
    if memory_budget is not None:
        memory_budget = memory.parse_bytes(memory_budget)
    shape = tuple(payoffs.shape[1:])
    if method == "newton":
        _check_newton_memory(method, shape, concept, 1, False, memory_budget)
    norm = _normalise_fast(payoffs)
    params = _resolve_cached(sel, norm)
    if method == "newton-cg" and face == "always":
        raise ValueError("method='newton-cg' has no facial reduction; use face='auto' or another method")
    first: Solution | None = None
    if sel.objective != "gini" and (method == "newton-cg" or (
            method == "auto" and auto_matrix_free(shape, concept, face))):
        timings = {"validate": time.perf_counter() - t_start}
        first = _solve_matrix_free(norm, concept, sel, params, duals0, tol, max_iter, timings, t_start)
        if method == "newton-cg" or first.status is Status.OPTIMAL or not _layout_fits(shape, concept):
            return first
        # Short of tol (a hard-constraint dual drifting to a face) and the gain layout is
        # affordable: the ELL path (facial reduction, polish) from newton-cg's duals.
        duals0 = first.duals
    sol = _solve_layout(payoffs, norm, params, shape, concept, sel, method, tol, max_iter, face, polish,
                        memory_budget, duals0, t_start)
    if first is None:
        return sol
    timings = dict(sol.timings)
    for key, value in first.timings.items():
        if key not in ("validate", "total"):
            timings[key] = timings.get(key, 0.0) + value
    timings["total"] = time.perf_counter() - t_start
    return dataclasses.replace(sol, method=f"newton-cg+{sol.method}", iterations=first.iterations + sol.iterations,
                               timings=timings)


def _solve_layout(payoffs: np.ndarray, norm: NormalisedGame, params: SelectionParams, shape: tuple[int, ...],
                  concept: str, sel: Selection, method: str, tol: float, max_iter: int | None, face: str,
                  polish: bool, memory_budget: object, duals0: np.ndarray | None, t_start: float) -> Solution:
    """``solve`` on the ELL gain layout (all methods but "newton-cg")."""
    layout = gain_layout(shape, concept)
    alpha0 = None
    if duals0 is not None:
        alpha0 = (_check_duals(duals0, (layout.num_constraints,)) / norm.scale[layout.player])[None]
    timings = {"validate": time.perf_counter() - t_start}
    if sel.objective == "gini" or method == "cvxpy":
        return _reference_solution(norm, concept, sel, params, tol, timings, t_start)
    num_players = payoffs.shape[0]
    hard = math.isinf(params.rho)
    newton_alone = method == "newton" or (
        method == "auto" and not auto_first_pass(concept, num_players, layout.num_constraints, hard)
    )
    if (newton_alone and layout.num_constraints <= NEWTON_MAX_DUALS and not (hard and face == "always")
            and newton_plan(shape, concept, budget=memory_budget).fits):
        # Fast path: gains, Newton and certificate in one compiled call.
        cap = max_iter if max_iter is not None else DEFAULT_MAX_ITER["newton"]
        first_cap = min(cap, FACE_AFTER) if hard and face == "auto" else cap
        alpha = np.zeros(layout.num_constraints) if alpha0 is None else alpha0[0].copy()
        t0 = time.perf_counter()
        joint, gaps, eps, stats = solve_single(
            layout.rows, layout.slot_player, layout.dev, layout.player,
            norm.payoffs.reshape(num_players, -1), params.base_logits, params.eps_hat,
            params.eps_plus, float(params.rho), alpha, _newton_opts(tol, first_cap),
        )
        timings["refine"] = time.perf_counter() - t0
        if int(stats[1]) == OPTIMAL:
            timings["total"] = time.perf_counter() - t_start
            measures = (stats[2], stats[3], stats[4], stats[5] - stats[4])
            return _make_solution(
                joint.reshape(shape), alpha, eps, gaps, measures, int(stats[0]), Status.OPTIMAL,
                "newton", False, norm.scale, layout, concept, sel, timings,
            )
        res = refine_batch(norm.payoffs[None], concept, params, alpha[None], "newton", tol, max_iter,
                           face="always" if hard and face == "auto" else "never", polish=polish, parallel=False,
                           memory_budget=memory_budget)
        res = res._replace(iterations=res.iterations + int(stats[0]),
                           method=tuple(f"newton+{m}" for m in res.method))
    else:
        res = refine_batch(norm.payoffs[None], concept, params, alpha0, method, tol, max_iter,
                           face=face, polish=polish, parallel=False, memory_budget=memory_budget)
    for key, value in res.timings.items():
        timings[key] = timings.get(key, 0.0) + value
    timings["total"] = time.perf_counter() - t_start
    return _to_solution(res, 0, norm.scale, layout, concept, sel, timings)


@functools.lru_cache(maxsize=64)
def _newton_opts_cached(tol: float, max_iter: int) -> np.ndarray:
    return options_array(NewtonOptions(tol=tol, max_iter=max_iter))


def _newton_opts(tol: float, max_iter: int) -> np.ndarray:
    return _newton_opts_cached(float(tol), int(max_iter))


#: Resolutions that do not depend on the game's payoffs, per selection and shape.
_RESOLVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Selection -> {shape: params} | None
#: ``solvers.game.normalise_batch``'s constant-player threshold: spread relative to
#: max |payoff| (``CONSTANT_ULPS`` machine epsilons).
_TINY_NORM = CONSTANT_ULPS * float(np.finfo(np.float64).eps)


def _normalise_fast(payoffs: np.ndarray) -> NormalisedGame:
    """``solvers.game.normalise`` of one validated game, compiled (one call, no temporaries)."""
    num_players = payoffs.shape[0]
    out, scale, offset = kn.normalise_one(payoffs.reshape(num_players, -1), _TINY_NORM)
    if not kn.all_finite(scale):
        return normalise(payoffs)  # raises the ValueError that says why
    return NormalisedGame(out.reshape(payoffs.shape), scale, offset)


def _as_game_fast(game: object) -> np.ndarray:
    """``as_game`` without the copy for a well-formed finite float64 tensor (the common
    case); anything else goes through ``as_game`` and its error messages."""
    if is_float64_game(game) and kn.all_finite(game.reshape(-1)):
        return game
    return as_game(game)


def _game_independent(selection: Selection) -> bool:
    """True when ``resolve_selection`` does not look at the payoffs or the scales."""
    return (
        (selection.mu == 0 or selection.welfare is not None)
        and not np.any(np.asarray(selection.eps_hat))
        and selection.eps_plus is None
        and not selection.strength
    )


def _resolve_cached(selection: Selection, norm: NormalisedGame) -> SelectionParams:
    """``resolve_selection``, memoised per shape for game-independent selections."""
    per_shape = _RESOLVED.get(selection)
    if per_shape is None:
        # None marks a selection that depends on the game (never cached).
        per_shape = {} if _game_independent(selection) else None
        _RESOLVED[selection] = per_shape
    if per_shape is None:
        return resolve_selection(selection, norm)
    shape = norm.payoffs.shape
    params = per_shape.get(shape)
    if params is None:
        params = resolve_selection(selection, norm)
        per_shape[shape] = params  # shared: never modified (solve_single only reads it)
    return params


def _resolve_batch(selection: Selection, norm: NormalisedGame) -> SelectionParams:
    """``resolve_selection`` for a batch ``norm`` (fields with a leading B axis), vectorised."""
    num_games, num_players = norm.payoffs.shape[:2]
    shape = norm.payoffs.shape[2:]
    num_joint = int(np.prod(shape))
    # Validates shapes (target, welfare) once and gives the game-independent part.
    first = resolve_selection(selection, NormalisedGame(norm.payoffs[0], norm.scale[0], norm.offset[0]))
    if selection.mu > 0 and selection.welfare is None:
        # Utilitarian welfare depends on each game's normalised payoffs.
        flat = norm.payoffs.reshape(num_games, num_players, -1)
        log_target = first.base_logits - selection.mu * flat[0].sum(axis=0)
        base = log_target[None] + selection.mu * flat.sum(axis=1)
    else:
        base = np.broadcast_to(first.base_logits, (num_games, num_joint))
    z2 = math.sqrt(num_joint)
    scale = norm.scale
    if selection.hard:
        eps_plus = np.full((num_games, num_players), math.inf)
    elif selection.eps_plus is None:
        eps_plus = np.full((num_games, num_players), 2.0 * z2)
    else:
        eps_plus = np.broadcast_to(np.asarray(selection.eps_plus, dtype=np.float64), (num_players,)) * scale
    if selection.strength:
        eps_hat = -eps_plus
    else:
        eps_hat = np.clip(np.broadcast_to(np.asarray(selection.eps_hat, dtype=np.float64), (num_players,)) * scale, -z2, z2)
    if not selection.hard and np.any(eps_plus <= eps_hat):
        raise ValueError("eps_plus must be > eps_hat for every player")
    return SelectionParams(base, eps_hat, eps_plus, float(selection.rho), selection.objective)


def _group_games(games: object) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Validated games as a list of ``[N, A1..AN]`` arrays, and the ``[B, N, A1..AN]``
    batch when given as one array (None for a list)."""
    if isinstance(games, np.ndarray):
        batch = as_game_batch(games)
        return list(batch), batch
    if not isinstance(games, Sequence) or isinstance(games, (str, bytes)):
        raise TypeError(f"games must be a [B, N, A1..AN] array or a list of games, got {type(games).__name__}")
    if len(games) == 0:
        raise ValueError("games is an empty list")
    return [as_game(g, name=f"games[{i}]") for i, g in enumerate(games)], None


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
    **selection_params: object,
) -> list[Solution]:
    """``solve`` for many games at once, in parallel over games of the same shape.

    Args:
      games: ``[B, N, A1..AN]`` array, or a list of games (payoff tensors or bimatrix
        pairs), mixed shapes allowed (solved in groups of equal shape).
      duals0: ``[B, K]`` array (one shape) or a list of ``[K]`` arrays / None / related
        ``Solution`` (as in ``solve``).
      other arguments: as ``solve``; one selection for every game. The memory budget
        covers the games Newton solves at once (one per core).

    Returns:
      A list of ``B`` ``Solution`` in input order. ``timings`` are per game (the group's
      stage times divided by its size).
    """
    if related.has_related(duals0):
        return related.solve_batch_related(solve_batch, games, concept, selection, duals0, tol=tol, max_iter=max_iter,
                                           method=method, face=face, polish=polish, memory_budget=memory_budget,
                                           **selection_params)
    t_start = time.perf_counter()
    game_list, whole = _group_games(games)
    as_array = whole is not None
    concept, sel, method, tol, max_iter, face = _check_options(
        concept, selection, selection_params, method, tol, max_iter, face
    )
    polish = _check_polish(polish)
    if memory_budget is not None:
        memory_budget = memory.parse_bytes(memory_budget)
    num_games = len(game_list)
    duals_list: list[np.ndarray | None] = [None] * num_games
    if duals0 is not None:
        if isinstance(duals0, np.ndarray) and duals0.ndim == 2:
            if not as_array and len({g.shape for g in game_list}) > 1:
                raise ValueError("duals0 as a [B, K] array needs games of one shape; pass a list")
            if duals0.shape[0] != num_games:
                raise ValueError(f"duals0 has {duals0.shape[0]} rows for {num_games} games")
            duals_list = list(duals0)
        elif isinstance(duals0, Sequence) and not isinstance(duals0, (str, bytes)):
            if len(duals0) != num_games:
                raise ValueError(f"duals0 has {len(duals0)} entries for {num_games} games")
            duals_list = list(duals0)
        else:
            raise TypeError("duals0 must be a [B, K] array or a list of [K] arrays (or None)")
    if sel.objective == "gini" or method in ("cvxpy", "newton-cg"):
        return [
            solve(g, concept, sel, duals0=d, tol=tol, max_iter=max_iter, method=method, face=face,
                  memory_budget=memory_budget)
            for g, d in zip(game_list, duals_list, strict=True)
        ]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, g in enumerate(game_list):
        groups.setdefault(g.shape, []).append(i)
    out: list[Solution | None] = [None] * num_games
    for gshape, idx in groups.items():
        t_group = time.perf_counter()
        if method == "newton":
            _check_newton_memory(method, tuple(gshape[1:]), concept, len(idx), len(idx) > 1, memory_budget)
        batch = whole if whole is not None else np.stack([game_list[i] for i in idx])
        layout = gain_layout(tuple(gshape[1:]), concept)
        norm = normalise_batch(batch)
        params = _resolve_batch(sel, norm)
        alpha0 = None
        if any(duals_list[i] is not None for i in idx):
            alpha0 = np.zeros((len(idx), layout.num_constraints))
            for j, i in enumerate(idx):
                if duals_list[i] is not None:
                    d = _check_duals(duals_list[i], (layout.num_constraints,), name=f"duals0[{i}]")
                    alpha0[j] = d / norm.scale[j][layout.player]
        prep = time.perf_counter() - t_group
        res = refine_batch(norm.payoffs, concept, params, alpha0, method, tol, max_iter, face=face, polish=polish,
                           memory_budget=memory_budget)
        size = float(len(idx))
        timings = {"validate": prep / size}
        timings.update({k: v / size for k, v in res.timings.items()})
        for i, sol in zip(idx, _batch_solutions(res, norm.scale, layout, concept, sel, timings), strict=True):
            out[i] = sol
    del t_start
    return out  # type: ignore[return-value]
