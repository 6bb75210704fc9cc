"""The tuning of ``method="auto"``: one frozen ``SolverPolicy`` and the rules that read it.

Every constant that decides which stage runs, and for how long, is a field of
``SolverPolicy``; the measurements behind the defaults are in
``benchmarks/results/policy_constants.md``. The rules are pure functions of a policy and
a problem's shape (plus the memory budget, ``solvers.memory``, for Newton's dense
buffers): ``auto_first_pass``, ``auto_matrix_free``, ``newton_plan``,
``auto_first_order``. ``refine_batch`` and ``solve`` read ``DEFAULT_POLICY`` when called.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

from solvers import memory
from solvers.gains import layout_bytes, num_constraints
from solvers.gradient import GradientOptions
from solvers.newton import NewtonOptions

__all__ = [
    "DEFAULT_POLICY",
    "NewtonPlan",
    "SolverPolicy",
    "auto_first_order",
    "auto_first_pass",
    "auto_matrix_free",
    "check_game_memory",
    "check_newton_memory",
    "layout_fits",
    "newton_plan",
    "solve_bytes",
    "solve_route",
]

#: Joint-sized float64 arrays newton-cg holds at its peak besides the ``2 N`` payoff
#: copies (normalised game, ``MatrixFreeGame``'s player-first copies): base, logits,
#: joint, weighted gains and their per-player term, ``sigma * u``, trial logits and
#: temporaries; the tracemalloc figures are in benchmarks/results/game_memory.md.
NEWTON_CG_JOINT_COPIES = 12
#: ``[K]`` vectors newton-cg and the certificate hold (duals, gradient, CG vectors, masks).
NEWTON_CG_VECTORS = 24
#: Joint-sized arrays of the gain-layout paths besides the layout and ``N`` payoff copies.
LAYOUT_JOINT_COPIES = 8
#: Peak of the ELL layout's construction in layouts (``deviated - own`` temporaries of the
#: values' size; benchmarks/results/game_memory.md).
LAYOUT_PEAK = 2
#: CVXPY's model of a game over its gain layout: the sparse ``[K, |A|]`` constraint matrix
#: and its canonicalised copies, taken as this many layouts (a rough bound).
CVXPY_LAYOUTS = 4


@dataclasses.dataclass(frozen=True)
class SolverPolicy:
    """The constants of ``method="auto"`` and ``face="auto"`` (benchmarks/results/policy_constants.md).

    Attributes:
      newton_max_duals: Newton alone up to this many duals (its Cholesky of the free
        block costs ``K^3 / 3`` per iteration); a first-order pass first above.
      matrix_free_layout_bytes: ``solve`` takes the matrix-free "newton-cg" for games
        whose ELL gain layout (``24 |A| c`` bytes) exceeds this or a quarter of the
        available memory (and for 3+ player games above ``newton_max_duals``).
      face_after: hard-constraint games not optimal after this many Newton iterations get
        the facial-reduction LP (a dual without minimiser converges only linearly). Most
        8x8 ME-CE games still short at 60 converge by 100 for less than the face stage's
        serial LP (policy_constants.md).
      face_after_gd: the same for the first-order method.
      face_guess: before that LP, guess the face from Newton's iterate and certify it
        with its duals, LP-free (``solvers.face_guess``; ``eps_hat = 0`` games only); the
        LP runs where the guess fails or Newton on it falls short.
      auto_gd_iter: first-order iterations before Newton above ``newton_max_duals``,
        hard constraints.
      auto_gd_iter_soft: the same for soft constraints (finite ``rho``): to convergence.
      auto_prepass_iter: the short first-order pass before Newton on 2-player
        hard-constraint CEs with ``auto_prepass_min_duals`` duals or more.
      auto_prepass_min_duals: see ``auto_prepass_iter``.
      newton_max_iter: default Newton iteration cap per pass.
      gd_max_iter: default first-order iteration cap per pass.
      unchecked_bytes: layouts and Newton buffers up to this size are taken to fit
        without reading the available memory (``solvers.memory.UNCHECKED_BYTES``).
    """

    newton_max_duals: int = 600
    matrix_free_layout_bytes: int = 256 * 2**20
    face_after: int = 100
    face_after_gd: int = 3000
    face_guess: bool = True
    auto_gd_iter: int = 500
    auto_gd_iter_soft: int = GradientOptions().max_iter
    auto_prepass_iter: int = 30
    auto_prepass_min_duals: int = 150
    newton_max_iter: int = NewtonOptions().max_iter
    gd_max_iter: int = GradientOptions().max_iter
    unchecked_bytes: int = memory.UNCHECKED_BYTES

    def max_iter(self, solver: str) -> int:
        """Default iteration cap of ``solver`` ("newton" or "gd")."""
        return self.newton_max_iter if solver == "newton" else self.gd_max_iter


#: The policy ``solve``, ``solve_batch`` and ``refine_batch`` use (read at call time).
DEFAULT_POLICY = SolverPolicy()


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


def auto_first_pass(concept: str, num_players: int, num_duals: int, hard: bool,
                    policy: SolverPolicy | None = None) -> int:
    """First-order iterations ``method="auto"`` runs before Newton (0: Newton alone).

    ``auto_prepass_iter`` on 2-player hard-constraint CEs with ``auto_prepass_min_duals``
    duals or more; above ``newton_max_duals`` duals, ``auto_gd_iter`` on other
    hard-constraint problems and ``auto_gd_iter_soft`` (to convergence) on soft ones.
    """
    policy = policy or DEFAULT_POLICY
    if concept == "ce" and num_players == 2 and hard and num_duals >= policy.auto_prepass_min_duals:
        return policy.auto_prepass_iter
    if num_duals <= policy.newton_max_duals:
        return 0
    return policy.auto_gd_iter if hard else policy.auto_gd_iter_soft


def layout_fits(shape: tuple[int, ...], concept: str, policy: SolverPolicy | None = None) -> bool:
    """The ELL layout within ``matrix_free_layout_bytes`` and a quarter of the available memory.

    Layouts up to ``unchecked_bytes`` fit without reading the available memory (the rule
    ``memory.newton_fits`` applies to Newton's buffers): reading ``/proc/meminfo`` on every
    ``solve`` cost more than a small game's whole solve.
    """
    policy = policy or DEFAULT_POLICY
    need = layout_bytes(shape, concept)
    if need <= min(policy.matrix_free_layout_bytes, policy.unchecked_bytes):
        return True
    return need <= min(policy.matrix_free_layout_bytes, memory.available_memory() // 4)


def auto_matrix_free(shape: tuple[int, ...], concept: str, face: str = "auto",
                     policy: SolverPolicy | None = None) -> bool:
    """True when ``method="auto"`` in ``solve`` runs "newton-cg" (``matrix_free_layout_bytes``).
    Needs only the shape; ``face="always"`` keeps the ELL path (which has facial reduction)."""
    if face == "always":
        return False
    policy = policy or DEFAULT_POLICY
    if not layout_fits(tuple(shape), concept, policy):
        return True
    return len(shape) >= 3 and num_constraints(tuple(shape), concept) > policy.newton_max_duals


@functools.lru_cache(maxsize=256)
def _newton_sizes(shape: tuple[int, ...], concept: str) -> tuple[int, int, bool]:
    """``(K, |A|, identity)``; the CCE layout is the identity one (``kernels.rows_are_identity``),
    where Newton also keeps ``[n, |A|]`` column buffers."""
    return num_constraints(shape, concept), math.prod(int(n) for n in shape), concept == "cce"


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


@functools.lru_cache(maxsize=256)
def solve_bytes(shape: tuple[int, ...], concept: str, route: str) -> int:
    """Estimated peak bytes of one game of ``shape`` (action counts) on ``route``:
    "newton-cg" (a few joint copies, ``O(K)`` vectors and the block-Jacobi blocks),
    "layout" (the ELL gain layout and a few joint copies; Newton's dense buffers are
    ``newton_plan``'s) or "cvxpy"."""
    from solvers.matrix_free import BLOCK_FLOPS, BLOCK_MAX_ACTIONS

    shape = tuple(int(n) for n in shape)
    num_joint = math.prod(shape)
    num = num_constraints(shape, concept)
    players = len(shape)
    if route == "newton-cg":
        blocks = 0
        for n in shape:  # solvers.matrix_free.MatrixFreeGame.use_blocks; raw and inverted
            if concept == "cce":
                blocks += 2 * n * n
            elif n <= BLOCK_MAX_ACTIONS and n * n * num_joint + n ** 4 / 3.0 <= BLOCK_FLOPS:
                blocks += 2 * n ** 3
        return 8 * ((2 * players + NEWTON_CG_JOINT_COPIES) * num_joint + NEWTON_CG_VECTORS * num + blocks)
    layout = LAYOUT_PEAK * layout_bytes(shape, concept) + 8 * ((players + LAYOUT_JOINT_COPIES) * num_joint + NEWTON_CG_VECTORS * num)
    if route == "cvxpy":
        return CVXPY_LAYOUTS * layout
    if route != "layout":
        raise ValueError(f"route must be 'newton-cg', 'layout' or 'cvxpy', got {route!r}")
    return layout


def solve_route(objective: str, method: str, matrix_free: bool) -> str:
    """The ``solve_bytes`` route of a solve: "cvxpy" (Max Gini, ``method="cvxpy"``),
    "newton-cg" (the matrix-free route) or "layout"."""
    if objective == "gini" or method == "cvxpy":
        return "cvxpy"
    return "newton-cg" if matrix_free else "layout"


def check_game_memory(route: str, shape: tuple[int, ...], concept: str, num_games: int = 1,
                      budget: object = None) -> None:
    """``GameTooLargeError`` (a ``MemoryError``) when ``num_games`` games of ``shape`` held at
    once on ``route`` (``solve_bytes``) exceed the available memory (or a larger explicit
    ``budget``), before anything of their size is allocated. Reads the available memory
    only for solves above ``memory.UNCHECKED_BYTES``."""
    need = solve_bytes(shape if type(shape) is tuple else tuple(shape), concept, route) * max(1, num_games)
    if need <= memory.UNCHECKED_BYTES and budget is None and not memory.env_budget_set():
        return  # the common small solve: no budget to parse, no /proc/meminfo to read
    limit = memory.game_limit(need, budget)
    if limit is None or need <= limit:
        return
    shape = tuple(int(n) for n in shape)
    what = f"game {[len(shape), *shape]} {concept.upper()}" + (f" (x{num_games} at once)" if num_games > 1 else "")
    detail = f"joint {math.prod(shape):,} entries, {num_constraints(shape, concept):,} duals"
    if route != "newton-cg":
        detail += f", gain layout {memory.format_bytes(layout_bytes(shape, concept))}"
    name = {"layout": "the gain-layout solvers", "cvxpy": "method='cvxpy'"}.get(route, route)
    raise memory.game_too_large_error(what, name, need, limit, detail)


def check_newton_memory(method: str, shape: tuple[int, ...], concept: str, num_games: int, parallel: bool,
                        budget: object) -> NewtonPlan | None:
    """The ``NewtonPlan`` (None for ``method="gd"``); ``MemoryError`` for ``method="newton"``
    beyond the budget, before anything of the problem's size is allocated."""
    if method == "gd":
        return None
    plan = newton_plan(shape, concept, num_games, parallel, budget)
    if method == "newton" and not plan.fits:
        num, num_joint, identity = _newton_sizes(tuple(shape), concept)
        raise memory.newton_memory_error(num, num_joint, identity, memory.memory_budget(budget))
    return plan
