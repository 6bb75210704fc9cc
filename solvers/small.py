"""``solve``'s fast path for a small game: one compiled call, a cached plan.

A ``solve(game)`` of a few dozen joint actions costs microseconds of arithmetic, so the
per-call Python work (checking the options, the memory and route decisions, normalising,
converting units, building the ``Solution``) decides its speed. Here:

- ``plan`` caches, per (shape, options), the checked options and the decisions
  ``solve`` would take (route, memory checks, ``newton_plan``, Newton alone, the resolved
  selection). Only decisions that are pure functions of the key are cached: games whose
  layout or Newton buffers exceed ``solvers.memory.UNCHECKED_BYTES`` (where the available
  memory is read), an explicit memory budget (argument, or ``HYBRID_NES_MEMORY_BUDGET``,
  read on every call) and game-dependent selections take ``solve``'s general path.
- ``solve_compiled`` runs normalisation, gains, projected Newton, the certificate and the
  payoff-unit conversions in one Numba call (``_solve_small``: the game as given, the plan's
  ints and floats packed in two arrays, the buffer) writing into one buffer (Newton fused
  into one kernel on the identity (CCE) layout: ``solvers.newton_identity``), and returns
  the ``Solution``; the status honesty rule (``solvers.solution.defect_rule``) runs on the
  joint's sum and minimum and the finiteness of gaps and eps, taken by the same call as
  its last step, on the buffer as it leaves it (``solvers.small_screen.read_buffer``, with
  the largest gap and the statistics, returned as Python scalars). A certified result's
  array fields (views of the buffer), timings and info are built on first access
  (``solvers.solution.deferred_solution``); ``solve_game`` takes the plan of a call with
  the previous call's game shape and very option objects without a call to ``plan``, a
  key or hashing. A game Newton leaves short of ``tol`` goes on with the
  rest of ``refine_batch``'s plan from where Newton stopped (``solvers.single.after_newton``),
  as in ``solve_batch``.
- ``solve_batch_compiled`` runs the same plan over a batch (``solve_batch``,
  ``normalised_batch``): gains, Newton and certificate fused per game, in parallel over
  games; games short of ``tol`` after that pass go on with the rest of ``refine_batch``'s plan.

The results are bit-identical to ``solve``'s general path (the same kernels in the same
order), but for the marginals (summed in joint order here: equal to rounding). Measurements: benchmarks/results/solvers_suite_overhead.md.
"""

from __future__ import annotations

import math
import os
import time
from time import perf_counter
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
from numba import get_num_threads, njit, prange

from solvers import kernels as kn
from solvers import memory
from solvers import policy as pol
from solvers.checks import check_options, check_polish
from solvers.gains import GainLayout, gain_layout, layout_bytes, num_constraints
from solvers.game import _TINY_NORM, NormalisedGame, is_float64_game
from solvers.memory import env_budget_set
from solvers.newton import (
    CHUNKS_PER_THREAD,
    OPTIMAL,
    NewtonOptions,
    single_workspace,
    small_batch,
    solve_into,
)
from solvers.newton_identity import fits, scratch_size, solve_identity
from solvers.refine import DualResult, Stage, refine_batch
from solvers.selection import Selection, SelectionParams, game_independent, resolve_cached
from solvers.single import _newton_opts, after_newton, newton_result
from solvers.small_screen import read_buffer
from solvers.solution import (
    DEFERRED,
    JointScreen,
    Solution,
    Status,
    build_solution,
    defect_rule,
    deferred_solution,
)
from solvers.units import one_solution

__all__ = ["SmallPlan", "plan", "solve_batch_compiled", "solve_compiled", "solve_game"]

# OpenMP worker threads sleep at the end of a parallel region instead of spinning (GNU
# libgomp reads this when Numba's omp threading layer first loads it; a value the user set
# wins): on a busy machine spinning workers take the cores from the threads doing the work
# (measured: benchmarks/results/solvers_suite_overhead.md, section h-tput).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Entries of the kernel's statistics block (see ``_solve_small``).
_NUM_STATS = 7
#: Entries of a ``NewtonOptions`` array (``newton.options_array``).
_NUM_OPTS = len(NewtonOptions._fields)
#: Plans kept (a plan is a few arrays of the game's size; a new key past this clears them).
_MAX_PLANS = 256


class SmallPlan(NamedTuple):
    """The checked options and cached decisions of ``solve`` on one (shape, options).

    Attributes:
      concept, selection, method, tol, max_iter, face, polish: as ``check_options``.
      shape: action counts; layout: the ``GainLayout``; params: the resolved selection
      (game-independent); opts: the ``NewtonOptions`` array of the first Newton pass;
      sizes: ``(N, |A|, K)``; actions: ``[N]`` int64 action counts; cuts: offsets of the
      parts of the kernel's buffer; policy: the ``SolverPolicy`` the decisions used;
      kernel_args: ``(rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts,
      actions)``, the solve's arrays (``pack`` makes ``_solve_small``'s of them); margin_cuts:
      each player's marginal's ``(start, stop)`` in the buffer; cut_array: ``cuts`` as an
      int64 array (for ``small_screen.read_buffer``); buf_size: ``cuts[-1]``, the buffer's
      length; packed_args: ``(ints, floats)``, ``_solve_small``'s arguments between the
      game and the buffer (``pack``).
    """

    concept: str
    selection: Selection
    method: str
    tol: float
    max_iter: int | None
    face: str
    polish: bool
    shape: tuple[int, ...]
    layout: GainLayout
    params: SelectionParams
    opts: np.ndarray
    sizes: tuple[int, int, int]
    actions: np.ndarray
    cuts: tuple[int, ...]
    policy: pol.SolverPolicy
    kernel_args: tuple
    margin_cuts: tuple[tuple[int, int], ...]
    cut_array: np.ndarray
    buf_size: int
    packed_args: tuple[np.ndarray, np.ndarray]


_PLANS: dict[object, object] = {}
#: ``_PLANS``'s entry for the last call's arguments and plan (cleared with it).
_LAST = object()
_NEWTON = Stage.NEWTON.value
_OPTIMAL = Status.OPTIMAL
_empty = np.empty
_NDARRAY = np.ndarray
_FLOAT64 = np.dtype(np.float64)


def _build(shape: tuple[int, ...], concept: object, selection: object, method: object, tol: object,
           max_iter: object, face: object, polish: object, policy: pol.SolverPolicy) -> SmallPlan | None:
    """The plan of ``solve`` on ``shape`` (None: not the fast path); raises as ``solve``."""
    concept, sel, method, tol, max_iter, face = check_options(concept, selection, {}, method, tol, max_iter, face)
    polish = check_polish(polish)
    if sel.objective == "gini" or method not in ("auto", "newton") or not game_independent(sel):
        return None
    num = num_constraints(shape, concept)
    num_joint = math.prod(shape)
    limit = min(memory.UNCHECKED_BYTES, policy.unchecked_bytes)
    # Sizes where every memory decision is taken without reading the available memory.
    if (layout_bytes(shape, concept) > min(limit, policy.matrix_free_layout_bytes)
            or pol.solve_bytes(shape, concept, "layout") > limit
            or memory.newton_bytes(num, num_joint, concept == "cce") > limit):
        return None
    if pol.auto_matrix_free(shape, concept, face, policy) or num > policy.newton_max_duals:
        return None
    layout = gain_layout(shape, concept)
    zeros = np.zeros((len(shape),) + shape)
    params = resolve_cached(sel, NormalisedGame(zeros, np.ones(len(shape)), np.zeros(len(shape))))
    hard = math.isinf(params.rho)
    if method == "auto" and pol.auto_first_pass(concept, len(shape), num, hard, policy):
        return None
    if hard and face == "always":
        return None
    cap = max_iter if max_iter is not None else policy.newton_max_iter
    first_cap = min(cap, policy.face_after) if hard and face == "auto" else cap
    players = len(shape)
    opts = _newton_opts(float(tol), int(first_cap))
    sizes = (players * num_joint, players, players, num, num_joint, num, players, players, players, players,
             sum(shape), _NUM_STATS)
    cuts = tuple(int(c) for c in np.cumsum((0,) + sizes))
    actions = np.array(shape, dtype=np.int64)
    ends = tuple(int(c) for c in np.cumsum((cuts[10],) + shape))
    kernel_args = (layout.rows, layout.slot_player, layout.dev, layout.player, params.base_logits, params.eps_hat,
                   params.eps_plus, float(params.rho), opts, actions)
    return SmallPlan(concept, sel, method, tol, max_iter, face, polish, shape, layout, params, opts,
                     (players, num_joint, num), actions, cuts, policy, kernel_args,
                     tuple(zip(ends[:-1], ends[1:], strict=True)), np.array(cuts, dtype=np.int64),
                     cuts[-1], pack(kernel_args, fits(layout.rows, num, opts), cuts))


def plan(shape: tuple[int, ...], concept: object, selection: object, method: object, tol: object,
         max_iter: object, face: object, polish: object) -> SmallPlan | None:
    """The cached ``SmallPlan`` of ``solve`` on ``shape`` (of a game ``is_float64_game``
    accepts) with these unchecked options, or None where ``solve`` takes its general path
    (which also raises for bad options). Options are cached only with exact types (``str``,
    ``float``, ``int`` or None, ``bool``, a preset name or a ``Selection``) and only once
    checked, so a value ``check_options`` refuses is refused on every call."""
    plans = _PLANS
    last = plans.get(_LAST)
    # The previous call's exact argument objects (held here, so no id is reused): no
    # type checks, key or hashing (the bulk of this function's cost on a repeated call).
    if (last is not None and concept is last[1] and selection is last[2] and method is last[3] and tol is last[4]
            and max_iter is last[5] and face is last[6] and polish is last[7] and shape == last[0]
            and pol.DEFAULT_POLICY is last[8] and memory.UNCHECKED_BYTES == last[9]):
        return last[10]
    if not (type(concept) is str and type(method) is str and type(face) is str and type(tol) is float
            and (max_iter is None or type(max_iter) is int) and type(polish) is bool
            and (type(selection) is str or isinstance(selection, Selection))):
        return None
    policy = pol.DEFAULT_POLICY
    unchecked = memory.UNCHECKED_BYTES
    key = (shape, concept, selection, method, tol, max_iter, face, polish, id(policy), unchecked)
    try:
        found = plans[key]
    except KeyError:
        try:
            found = _build(shape, concept, selection, method, tol, max_iter, face, polish, policy)
        except (TypeError, ValueError):
            return None  # the general path raises, in its order of checks
        if len(plans) >= _MAX_PLANS:
            plans.clear()
        plans[key] = found
    plans[_LAST] = (shape, concept, selection, method, tol, max_iter, face, polish, policy, unchecked, found,
                    (len(shape),) + shape)
    return found


def pack(kernel_args: tuple, identity: bool, cuts: tuple[int, ...], tiny_rel: float = _TINY_NORM) -> tuple:
    """``SmallPlan.packed_args`` of ``kernel_args`` (``(rows, slot_player, dev, player, base,
    eps_hat, eps_plus, rho, opts, actions)``): ``(ints, floats)``, ``_solve_small``'s
    arguments after the game (Numba types and unboxes each argument of a call: 2 cost less
    than 7). ``ints = [identity, N, |A|, K, width] + cuts + slot_player + actions + player +
    rows + dev`` (int64; ``rows``, ``dev``: ``[|A|, width]`` flattened) and ``floats =
    [tiny_rel] + base + eps_hat + eps_plus + opts + [rho, lse] + start`` (``lse, start``: the
    log-partition and softmax of ``base``, Newton's game-independent start)."""
    rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, actions = kernel_args
    if len(cuts) != _NUM_CUTS or rows.shape != dev.shape:
        raise ValueError(f"pack: {len(cuts)} cuts (expected {_NUM_CUTS}), rows {rows.shape}, dev {dev.shape}")
    head = [int(identity), actions.shape[0], dev.shape[0], player.shape[0], dev.shape[1]]
    ints = np.concatenate((head, cuts, slot_player, actions, player, rows.ravel(), dev.ravel())).astype(np.int64)
    start = np.empty(base.shape[0])
    lse = kn.softmax_one(base, start)  # Newton's start at alpha = 0 (newton_identity.solve_identity)
    floats = np.concatenate(([tiny_rel], base, eps_hat, eps_plus, opts, [rho, lse], start)).astype(np.float64)
    return ints, floats


#: ``ints`` entries before the cuts (``pack``).
_HEAD = 5
#: Entries of ``SmallPlan.cuts``.
_NUM_CUTS = 13
#: ``_solve_small``'s result where the general path must decide (``code`` < 0).
_NO_RESULT = ((math.nan, math.nan, False, False), math.nan, 0, math.nan, math.nan, math.nan, math.nan, math.nan, False)


@njit(cache=True)
def _solve_small(game, ints, floats, buf):
    """Normalisation (``kernels.normalise_one``), ``newton.solve_single``, the payoff-unit
    conversions and the honesty rule's reductions of one game ``game: [N, A1..AN]`` (C
    order) into ``buf`` (parts as ``SmallPlan.cuts``: normalised payoffs, scale, offset,
    alpha, joint, duals, gaps, eps (payoff units), normalised gaps and eps, marginals,
    stats), on the arguments of ``pack`` (Newton: ``newton_identity.solve_identity``
    where ``ints[0]`` says it fits, else ``newton.solve_into``).

    Returns ``(code, screen, gap, iterations, status, violation, kkt, duality_gap, loss,
    duals_finite)``: ``code`` 0, or -1 where ``game`` has a NaN or inf, -2 where the
    normalisation overflows (the caller's general path raises; the rest is then
    meaningless); the rest is ``small_screen.read_buffer`` of the buffer as this call
    leaves it (its last step), iterations as an int and duals_finite (the payoff-unit
    duals are all finite) as a bool. stats = (iterations, status, violation, kkt, duality
    gap, loss, 1.0 where the payoff-unit duals are all finite).
    """
    return _solve_flat(np.ascontiguousarray(game).reshape((ints[1], ints[2])), ints, floats, buf)


@njit(cache=True)
def _solve_flat(raw, ints, floats, buf):
    """``_solve_small`` on the game as ``raw: [N, |A|]`` (compiled once for every number of
    players; ``_solve_small`` itself, compiled per game dimension, is this call)."""
    identity = ints[0] != 0
    num_players = ints[1]
    num_joint = ints[2]
    num = ints[3]
    width = ints[4]
    o = _HEAD
    cuts = ints[o:o + _NUM_CUTS]
    o += _NUM_CUTS
    slot_player = ints[o:o + width]
    o += width
    actions = ints[o:o + num_players]
    o += num_players
    player = ints[o:o + num]
    o += num
    rows = ints[o:o + num_joint * width].reshape((num_joint, width))
    o += num_joint * width
    dev = ints[o:o + num_joint * width].reshape((num_joint, width))
    tiny_rel = floats[0]
    o = 1
    base = floats[o:o + num_joint]
    o += num_joint
    eps_hat = floats[o:o + num_players]
    o += num_players
    eps_plus = floats[o:o + num_players]
    o += num_players
    opts = floats[o:o + _NUM_OPTS]
    o += _NUM_OPTS
    rho = floats[o]
    start_lse = floats[o + 1]
    start = floats[o + 2:o + 2 + num_joint]
    for p in range(num_players):
        for a in range(num_joint):
            if not math.isfinite(raw[p, a]):
                return -1, _NO_RESULT
    flat, scale, offset = kn.normalise_one(raw, tiny_rel)
    for p in range(num_players):
        if not math.isfinite(scale[p]):
            return -2, _NO_RESULT
    o = 0
    norm = buf[o:o + num_players * num_joint].reshape((num_players, num_joint))
    o += num_players * num_joint
    norm[:, :] = flat
    buf[o:o + num_players] = scale
    o += num_players
    buf[o:o + num_players] = offset
    o += num_players
    alpha = buf[o:o + num]
    o += num
    alpha[:] = 0.0
    joint = buf[o:o + num_joint]
    o += num_joint
    o_duals = o
    o += num
    gaps = buf[o + 2 * num_players:o + 3 * num_players]
    epsp = buf[o + 3 * num_players:o + 4 * num_players]
    o += 4 * num_players
    o_marg = o
    o += actions.sum()
    stats = buf[o:o + 6]
    if identity:
        # Scratch of its own, not the buffer's: a Solution's arrays are views of the buffer.
        scratch = np.empty(scratch_size(num, num_joint, num_players))
        joint[:] = start
        solve_identity(slot_player, dev, player, norm, base, eps_hat, eps_plus, rho, alpha, opts, scratch, joint,
                       gaps, epsp, stats, start_lse)
    else:
        dense = kn.rows_are_identity(rows, num)
        sws = single_workspace(num, num_joint, dev.shape[1], num_players, opts, dense)
        solve_into(rows, slot_player, dev, player, norm, base, eps_hat, eps_plus, rho, alpha, opts, dense, sws, joint,
                   gaps, epsp, stats)
    o = o_duals
    finite = 1.0
    for k in range(num):
        d = alpha[k] * scale[player[k]]
        buf[o + k] = d
        if not math.isfinite(d):
            finite = 0.0
    o += num
    for p in range(num_players):
        buf[o + p] = gaps[p] / scale[p]
        buf[o + num_players + p] = epsp[p] / scale[p]
        buf[o + 2 * num_players + p] = gaps[p]
        buf[o + 3 * num_players + p] = epsp[p]
    o += 4 * num_players
    marg = buf[o_marg:o_marg + actions.sum()]
    marg[:] = 0.0
    # Joint order (last player fastest), with an odometer of action indices (no division).
    digit = np.zeros(num_players, dtype=np.int64)
    for a in range(num_joint):
        v = joint[a]
        start = 0
        for p in range(num_players):
            marg[start + digit[p]] += v
            start += actions[p]
        p = num_players - 1
        digit[p] += 1
        while p > 0 and digit[p] == actions[p]:
            digit[p] = 0
            p -= 1
            digit[p] += 1
    buf[o_marg + marg.shape[0] + 6] = finite
    # Last: the honesty rule's reductions of the buffer as the Solution will hold it.
    screen, gap, its, status, viol, kkt, dgap, loss, duals_finite = read_buffer(buf, cuts)
    return 0, (screen, gap, int(its), status, viol, kkt, dgap, loss, duals_finite != 0.0)


#: The fields of a fast-path ``Solution`` built on first access (``_deferred_fields``).
_DEFERRED_FIELDS = frozenset(("joint", "marginals", "duals", "eps", "gaps", "scale", "timings", "info"))


def _deferred_fields(buf: np.ndarray, small: SmallPlan, start: float, t0: float, t1: float, end: float, viol: float,
                     kkt: float) -> dict[str, object]:
    """The array and mapping fields of ``solve_compiled``'s ``Solution``: views of ``buf``
    (parts as ``small.cuts``), the stage timings from ``start``, the kernel's start and end
    ``t0, t1`` and ``end``, and the info of a Newton solve."""
    c = small.cuts
    return {
        "joint": buf[c[4]:c[5]].reshape(small.shape),
        "marginals": tuple([buf[lo:hi] for lo, hi in small.margin_cuts]),
        "duals": buf[c[5]:c[6]], "eps": buf[c[7]:c[8]], "gaps": buf[c[6]:c[7]], "scale": buf[c[1]:c[2]],
        "timings": MappingProxyType({"validate": t0 - start, "refine": t1 - t0, "total": end - start}),
        "info": {"violation": viol, "kkt": kkt, "face": False},
    }


def solve_game(game: object, concept: object, selection: object, method: object, tol: object, max_iter: object,
               face: object, polish: object, t_start: float) -> Solution | None:
    """``solve(game, ...)`` through the cached plan (``plan``) and ``solve_compiled``, or None
    where ``solve`` takes its general path (a game ``is_float64_game`` refuses, no plan, or
    ``solve_compiled``'s None). A float64 array of the previous plan's game shape, with the
    previous call's very option objects, takes that plan without a call to ``plan``."""
    last = _PLANS.get(_LAST)
    # The memo is plan's: where ``plan`` is replaced (a test forcing the general path),
    # the replacement decides.
    if (last is not None and type(game) is _NDARRAY and game.dtype is _FLOAT64 and concept is last[1]
            and selection is last[2] and method is last[3] and tol is last[4] and max_iter is last[5]
            and face is last[6] and polish is last[7] and game.shape == last[11] and pol.DEFAULT_POLICY is last[8]
            and memory.UNCHECKED_BYTES == last[9] and plan is _PLAN):
        small = last[10]
    elif is_float64_game(game):
        small = plan(game.shape[1:], concept, selection, method, tol, max_iter, face, polish)
    else:
        return None
    return None if small is None else solve_compiled(game, small, t_start)


def solve_compiled(game: np.ndarray, small: SmallPlan, t_start: float) -> Solution | None:
    """``solve(game)`` on the plan ``small`` (``game``: a float64 array of its shape); None
    where the game needs the general path (a NaN or inf, normalisation overflow: that path
    raises; an explicit memory budget in the environment, read here on every call).

    The honesty rule runs on the reductions ``_solve_small`` takes of the buffer as its last
    step (``small_screen.read_buffer``); a certified result's array fields are built on
    first access (``solution.deferred_solution``), any other through ``build_solution``."""
    if env_budget_set():
        return None
    if not game.flags.c_contiguous:  # one compiled signature per plan: no F- or A-order variants
        game = np.ascontiguousarray(game)
    buf = _empty(small.buf_size)
    ints, floats = small.packed_args
    t0 = perf_counter()
    code, (screen, gap, its, status, viol, kkt, dgap, loss, finite) = _solve_small(game, ints, floats, buf)
    t1 = perf_counter()
    if code:
        return None
    if status != OPTIMAL or not finite:
        return _not_certified(buf, small, t_start, t0, t1)
    objective = loss - dgap
    if dgap >= 0.0 and defect_rule(screen, gap, None, None, dgap, objective) is None:
        # Nothing to downgrade or round (the arrays are read only for a defect's message).
        return deferred_solution({
            "gap": gap, "duality_gap": dgap, "objective": objective, "iterations": its, "status": _OPTIMAL,
            "concept": small.concept, "selection": small.selection, "method": _NEWTON,
            DEFERRED: (_DEFERRED_FIELDS, _deferred_fields, (buf, small, t_start, t0, t1, perf_counter(), viol, kkt)),
        })
    fields = {"gap": gap, "duality_gap": dgap, "objective": objective, "iterations": its, "status": _OPTIMAL,
              "concept": small.concept, "selection": small.selection, "method": _NEWTON}
    fields.update(_deferred_fields(buf, small, t_start, t0, t1, perf_counter(), viol, kkt))
    return build_solution(fields, JointScreen(*screen))


def _not_certified(buf: np.ndarray, small: SmallPlan, t_start: float, t0: float, t1: float) -> Solution:
    """``solve_compiled``'s result where Newton stopped short of ``tol`` (the rest of the
    batch path's plan) or its duals overflow payoff units (the general converter says so)."""
    players = small.sizes[0]
    c = small.cuts
    status = buf[c[11] + 1]
    timings = {"validate": t0 - t_start, "refine": t1 - t0}
    scale = buf[c[1]:c[2]]
    alpha, joint = buf[c[3]:c[4]], buf[c[4]:c[5]]
    norm = NormalisedGame(buf[:c[1]].reshape((players,) + small.shape), scale, buf[c[2]:c[3]])
    if status == OPTIMAL:
        timings["total"] = time.perf_counter() - t_start
        res = newton_result(joint.reshape((1,) + small.shape), alpha, buf[c[9]:c[10]], buf[c[8]:c[9]],
                            buf[c[11]:], timings)
    else:
        res = after_newton(norm, small.concept, small.params, alpha.copy(), buf[c[11]:], small.method,
                           small.tol, small.max_iter, small.face, small.polish, None, small.policy, timings, t_start)
    return one_solution(res, scale, small.layout.player, small.concept, small.selection, res.timings)


@njit(cache=True)
def _batch_range(lo, hi, flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, alpha, joint,
                 gaps, eps, stats):
    """Games ``lo..hi-1`` of ``_batch_serial`` (one workspace)."""
    num = player.shape[0]
    num_joint, width = dev.shape
    if fits(rows, num, opts):
        scratch = np.empty(scratch_size(num, num_joint, eps_hat.shape[0]))
        for b in range(lo, hi):
            solve_identity(slot_player, dev, player, flat[b], base, eps_hat, eps_plus, rho, alpha[b], opts, scratch,
                           joint[b], gaps[b], eps[b], stats[b], np.nan)
        return
    dense = kn.rows_are_identity(rows, num)
    sws = single_workspace(num, num_joint, width, eps_hat.shape[0], opts, dense)
    for b in range(lo, hi):
        solve_into(rows, slot_player, dev, player, flat[b], base, eps_hat, eps_plus, rho, alpha[b], opts, dense, sws,
                   joint[b], gaps[b], eps[b], stats[b])


@njit(cache=True)
def _batch_serial(flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, alpha, joint, gaps, eps,
                  stats):
    """``newton.solve_single`` of each game ``flat[b]: [N, |A|]`` (normalised), ``alpha[b]``
    the start, overwritten; outputs ``joint [B, |A|]``, ``gaps, eps [B, N]``, ``stats [B, 6]``."""
    _batch_range(0, flat.shape[0], flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, alpha,
                 joint, gaps, eps, stats)


@njit(cache=True, parallel=True)
def _batch_parallel(flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, alpha, joint, gaps,
                    eps, stats, chunks):
    """``_batch_serial`` over ``chunks`` chunks of games on all threads."""
    num_games = flat.shape[0]
    for c in prange(chunks):
        _batch_range(c * num_games // chunks, (c + 1) * num_games // chunks, flat, rows, slot_player, dev, player,
                     base, eps_hat, eps_plus, rho, opts, alpha, joint, gaps, eps, stats)


def solve_batch_compiled(norm: NormalisedGame, small: SmallPlan, alpha0: np.ndarray | None,
                         memory_budget: object) -> DualResult | None:
    """``refine_batch``'s result for games ``norm: [B, N, A1..AN]`` (normalised, of the plan's
    shape) where the plan is Newton alone: each game as ``solve`` runs it (gains, Newton and
    certificate in one compiled pass per game, in parallel over games, no ``[B, |A|, c]``
    gains array); the few games that first Newton pass leaves short of ``tol`` go on from
    where it stopped with the rest of ``refine_batch``'s pass plan (``resume=``: the face,
    its restart, polish), so every game's result is the general path's, bit for bit. None
    where the general path decides (an explicit memory budget; Newton's buffers for the
    games held at once beyond ``UNCHECKED_BYTES``)."""
    if memory_budget is not None or memory.env_budget_set():
        return None
    t_start = time.perf_counter()
    num_games = norm.payoffs.shape[0]
    players, num_joint, num = small.sizes
    threads = num_games > 1 and not small_batch((num_games, num_joint, small.layout.rows.shape[1]), num)
    concurrent = memory.concurrent_games(num_games, threads)
    if memory.newton_bytes(num, num_joint, small.concept == "cce") * concurrent > memory.UNCHECKED_BYTES:
        return None
    layout, params = small.layout, small.params
    flat = np.ascontiguousarray(norm.payoffs, dtype=np.float64).reshape(num_games, players, num_joint)
    alpha = np.zeros((num_games, num)) if alpha0 is None else np.array(alpha0, dtype=np.float64)
    if alpha.shape != (num_games, num) or not np.all(np.isfinite(alpha)):
        return None  # refine_batch says what is wrong
    joint = np.empty((num_games, num_joint))
    gaps = np.empty((num_games, players))
    eps = np.empty((num_games, players))
    stats = np.empty((num_games, 6))
    args = (flat, layout.rows, layout.slot_player, layout.dev, layout.player, params.base_logits, params.eps_hat,
            params.eps_plus, float(params.rho), small.opts, alpha, joint, gaps, eps, stats)
    t0 = time.perf_counter()
    if threads:
        _batch_parallel(*args, min(num_games, CHUNKS_PER_THREAD * get_num_threads()))
    else:
        _batch_serial(*args)
    timings = {"gains": t0 - t_start, "refine": time.perf_counter() - t0}
    iterations = stats[:, 0].astype(np.int64)
    optimal = stats[:, 1] == OPTIMAL
    statuses = [Status.OPTIMAL] * num_games
    stages = [(Stage.NEWTON,)] * num_games
    face = np.zeros(num_games, dtype=bool)
    dgap = stats[:, 4].copy()
    result = DualResult(joint.reshape((num_games,) + small.shape), alpha, eps, gaps, stats[:, 2].copy(),
                        stats[:, 3].copy(), dgap, stats[:, 5] - dgap, iterations, (), (), face, timings, None)
    rest = np.flatnonzero(~optimal)
    if rest.size:
        # The rest of the general path's pass plan (the face, its restart, polish) from
        # where that Newton pass stopped, so that every game's result is the general path's.
        sub = refine_batch(norm.payoffs[rest], small.concept, params, alpha[rest], small.method, small.tol,
                           small.max_iter, face=small.face, polish=small.polish, parallel=threads,
                           policy=small.policy, resume=stats[rest, :2].astype(np.int64))
        for name in ("joint", "alpha", "eps", "gaps", "violation", "kkt", "duality_gap", "objective", "face",
                     "iterations"):
            getattr(result, name)[rest] = getattr(sub, name)
        for j, b in enumerate(rest.tolist()):
            statuses[b] = sub.status[j]
            stages[b] = sub.stages[j]
        for key, value in sub.timings.items():
            if key != "total":
                timings[key] = timings.get(key, 0.0) + value
        restricted = alpha.copy()
        restricted[rest] = sub.restricted_alpha
    else:
        restricted = alpha
    timings["total"] = time.perf_counter() - t_start
    return result._replace(status=tuple(statuses), stages=tuple(stages), restricted_alpha=restricted)


_PLAN = plan
