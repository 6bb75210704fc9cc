"""``solvers.solve``'s facial-reduction path, keeping the face for the clean-up re-solves.

On a hard-constraint problem whose optimum lies on a face of the simplex (most CE
meta-games of 3-player Kuhn poker from 10x10x10 on), ``solvers.solve`` runs Newton for
``FACE_AFTER`` iterations, then the facial-reduction LP (``solvers.face.minimal_face``,
HiGHS), Newton on the face and ``lift_duals``, and forgets the face. JPSRO's clean-up
(``_certified.sparsified``) then re-solves the same game with another target: the
polytope ``{sigma in simplex: M sigma <= eps_hat}``, hence its minimal face, is the same,
yet the library would take the ``FACE_AFTER`` iterations and the LP again (about half
of the meta-solve time of those games, benchmarks/results/related_suite.md).

``FaceSolver`` is a drop-in for ``solvers.solve`` (also as the ``solve_fn`` of
``solvers.related.solve_related``) that runs the same stages on the Newton fast path and
records the ``Face`` it computed (``solvers.face.support_face``: the smaller LP, its
certificate checked; on the 10x10x10-12x12x12 Kuhn-3 CE meta-games it costs about what
``minimal_face_auto`` does and cuts the meta-solve time, benchmarks/results/related_suite.md).
``FaceSolver(reuse=face)`` solves another selection on the same game and eps_hat on that
face without the LP when its certificate checks out against this game
(``solvers.face.face_certified``: it proves every feasible joint zero off the face), else
with the LP. ``FaceSolver(grown=known)``, for a game that extends ``known``'s (JPSRO's
next meta-game), maps ``known``'s certificate onto it and runs the LP on the joints it
does not prove zero (``grown_face``). Only certified results come from here: a stage
that is not optimal hands the call to ``solvers.solve`` unchanged (its own LP, polish and
status).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import linprog

import solvers
from solvers import face as face_lib
from solvers import kernels as kn
from solvers import policy as solver_policy
from solvers import related
from solvers.dual import DualProblem
from solvers.face import Face, face_certified, lift_duals, support_face
from solvers.gains import check_concept, constraint_player, gain_layout, num_constraints
from solvers.newton import NewtonOptions, newton_batch
from solvers.selection import as_selection, resolve_selection
from solvers.solution import Solution, Status

__all__ = ["FaceSolver", "KnownFace", "grown_face"]

#: Fewest joint actions for which ``FaceSolver`` runs the stages itself; smaller games go
#: to ``solvers.solve`` (there the LP costs a few ms: on 3-player Kuhn poker JPSRO the
#: first CE meta-game that needs a face is 10x10x10, whose LP takes 0.15-0.25 s).
MIN_JOINTS = 512
#: ``grown_face`` runs its smaller LP when it keeps at most this fraction of the joint
#: actions (else the full LP: the saving would not pay for the mapping and the check).
GROWN_MAX_KEPT = 0.9
#: ``solvers.newton`` status code of a certified stop (violation, KKT and duality gap <= tol).
_NEWTON_OPTIMAL = 0


class KnownFace(NamedTuple):
    """A game's minimal face, with what maps it onto a grown game (actions appended).

    Attributes:
      face: the ``Face`` of the game's normalised problem.
      shape: ``(A1..AN)`` of that game.
      scale: ``[N]`` its normalisation (``solvers.normalise``): the certificate's units.
    """

    face: Face
    shape: tuple[int, ...]
    scale: np.ndarray


@dataclass
class FaceSolver:
    """``solvers.solve(game, concept, selection, *, duals0, tol, max_iter, method, face,
    polish, memory_budget, **selection_params)`` that keeps the facial-reduction LP's face.

    Attributes:
      reuse: a ``Face`` of this game's polytope (same payoffs, concept and ``eps_hat``):
        used instead of the LP when ``face_certified`` accepts it.
      face: the face of the last call that needed one (computed or reused), else None.
      known: ``face`` with its game's shape and scale (the next meta-game's ``grown``).
      grown: the ``KnownFace`` of a game this one extends (actions appended, old payoffs
        unchanged, e.g. JPSRO's previous meta-game): its certificate, mapped, proves
        joints zero on this game's polytope, and the LP then runs on the others only
        (``grown_face``).
      face_max_iter: cap of Newton on the face when ``face="always"`` (None: the
        library's default cap). A related warm start's watched run passes a smaller
        ``max_iter``; once the face is known, going on costs less than the cold restart
        that would follow (its ``FACE_AFTER`` iterations, the LP again, then this cap).
    """

    reuse: Face | None = None
    face: Face | None = None
    face_max_iter: int | None = None
    grown: KnownFace | None = None
    known: KnownFace | None = None

    def __call__(self, game: Any, concept: str = "cce", selection: Any = "me", *, duals0: Any = None,
                 tol: float = 1e-8, max_iter: int | None = None, method: str = "auto", face: str = "auto",
                 polish: bool = True, memory_budget: Any = None, **selection_params: Any) -> Solution:
        plain = duals0
        if isinstance(duals0, np.ndarray) and np.issubdtype(duals0.dtype, np.floating):
            # Restricted (face) duals are sign-free on the face's equalities; the library
            # takes the non-negative part (NaN and shape errors are its to report).
            plain = np.where(duals0 < 0, 0.0, duals0)
        library = dict(duals0=plain, tol=tol, max_iter=max_iter, method=method, face=face, polish=polish,
                       memory_budget=memory_budget, **selection_params)
        if related.is_related(duals0):
            return related.solve_related(self, game, concept, selection, duals0, tol=tol, max_iter=max_iter,
                                         method=method, face=face, polish=polish, memory_budget=memory_budget,
                                         **selection_params)
        run = _plan(game, concept, selection, selection_params, method, face, memory_budget)
        if run is None:
            return solvers.solve(game, concept, selection, **library)
        sol = _solve_stages(self, run, duals0, tol, max_iter, face)
        return sol if sol is not None else solvers.solve(game, concept, selection, **library)


@dataclass(frozen=True)
class _Run:
    """One game's normalised problem on the ELL layout (what ``refine_batch`` builds)."""

    norm: Any  # solvers.NormalisedGame
    concept: str
    selection: solvers.Selection
    layout: Any  # solvers.gains.GainLayout
    values: np.ndarray  # [1, |A|, c]
    base: np.ndarray  # [1, |A|]
    eps_hat: np.ndarray  # [1, N]
    eps_plus: np.ndarray  # [1, N]
    rho: np.ndarray  # [1]
    policy: solver_policy.SolverPolicy  # solvers.policy.DEFAULT_POLICY when planned

    def problem(self, base: np.ndarray, free: np.ndarray) -> DualProblem:
        return DualProblem(self.layout.rows, self.values[0], self.layout.player, base[0], self.eps_hat[0],
                           self.eps_plus[0], float(self.rho[0]), free[0])


def _plan(game: Any, concept: str, selection: Any, selection_params: dict, method: str, face: str,
          memory_budget: Any) -> _Run | None:
    """The problem when ``solvers.solve`` would take its Newton fast path with facial
    reduction (hard constraints, entropy, Newton alone, dense buffers within budget);
    None otherwise (then ``solvers.solve`` itself runs)."""
    if face == "never" or method not in ("auto", "newton"):
        return None
    sel = as_selection(selection, **selection_params)
    if sel.objective != "entropy":
        return None
    payoffs = solvers.as_game(game)
    concept = check_concept(concept)
    shape = tuple(int(n) for n in payoffs.shape[1:])
    if math.prod(shape) < MIN_JOINTS:
        return None
    norm = solvers.normalise(payoffs)
    params = resolve_selection(sel, norm)
    if not math.isinf(float(params.rho)):
        return None
    pol = solver_policy.DEFAULT_POLICY  # read when called (tests and callers may swap it)
    layout = gain_layout(shape, concept)
    num_players = payoffs.shape[0]
    if (layout.num_constraints > pol.newton_max_duals
            or (method == "auto" and (solver_policy.auto_first_pass(concept, num_players, layout.num_constraints, True)
                                      or solver_policy.auto_matrix_free(shape, concept, face)))
            or not solver_policy.newton_plan(shape, concept, budget=memory_budget).fits):
        return None
    flat = np.ascontiguousarray(norm.payoffs.reshape(1, num_players, -1))
    values = kn.gain_values_serial(flat, layout.slot_player, layout.dev)

    def one(value: Any, shape: tuple[int, ...]) -> np.ndarray:
        # Fresh writable C arrays (Numba compiles read-only or broadcast views separately).
        return np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), shape), order="C")

    base = one(params.base_logits, (1, layout.rows.shape[0]))
    eps_hat, eps_plus = one(params.eps_hat, (1, num_players)), one(params.eps_plus, (1, num_players))
    return _Run(norm, concept, sel, layout, values, base, eps_hat, eps_plus, one(params.rho, (1,)), pol)


def _newton(run: _Run, base: np.ndarray, free: np.ndarray, alpha: np.ndarray, tol: float, cap: int):
    return newton_batch(run.layout.rows, run.values, run.layout.player, base, run.eps_hat, run.eps_plus,
                        run.rho, free, alpha, NewtonOptions(tol=tol, max_iter=cap), parallel=False)


def _solve_stages(owner: FaceSolver, run: _Run, duals0: Any, tol: float, max_iter: int | None,
                  face_mode: str) -> Solution | None:
    """Newton (``face="auto"``: at most ``FACE_AFTER`` iterations), then the face (reused
    or the LP) and Newton on it, as ``solvers.solve``; None when a stage is not certified."""
    t_start = time.perf_counter()
    num = run.layout.num_constraints
    scale_rows = run.norm.scale[run.layout.player]
    alpha = np.zeros((1, num))
    if duals0 is not None:
        duals = np.asarray(duals0, dtype=np.float64).reshape(-1)
        if duals.shape != (num,) or not np.all(np.isfinite(duals)):
            return None  # the library reports the bad duals0
        alpha[0] = duals / scale_rows
    cap = max_iter if max_iter is not None else run.policy.newton_max_iter
    timings = {"gains": time.perf_counter() - t_start, "face": 0.0, "refine": 0.0}
    no_free = np.zeros((1, num), dtype=bool)
    iterations = 0
    tokens: list[str] = []
    if face_mode == "auto":
        t0 = time.perf_counter()
        res = _newton(run, run.base, no_free, alpha, tol, min(cap, run.policy.face_after))
        timings["refine"] += time.perf_counter() - t0
        iterations += int(res.iterations[0])
        alpha = res.alpha
        tokens.append("newton")
        if int(res.status[0]) == _NEWTON_OPTIMAL:
            return _solution(run, run.base, no_free, alpha, None, iterations, "newton", timings, t_start, tol)
    t0 = time.perf_counter()
    problem = run.problem(run.base, no_free)
    fc, source = owner.reuse, "reused"
    if fc is not None and not face_certified(problem, fc):
        fc = None  # not this polytope's face: the LP
    try:
        if fc is None and owner.grown is not None:
            fc, source = grown_face(problem, run.concept, run.norm.payoffs.shape[1:], run.norm.scale,
                                          owner.grown), "grown"
        if fc is None:
            fc, source = support_face(problem), "lp"
    except RuntimeError:
        return None
    timings["face"] = time.perf_counter() - t0
    if not fc.feasible:
        return None
    owner.face = fc
    owner.known = KnownFace(fc, tuple(int(n) for n in run.norm.payoffs.shape[1:]), run.norm.scale)
    base = np.where(fc.support, run.base[0], -np.inf)[None]
    free = fc.equalities[None].copy()
    t0 = time.perf_counter()
    if face_mode == "always":
        cap = max(cap, owner.face_max_iter if owner.face_max_iter is not None else run.policy.newton_max_iter)
    res = _newton(run, base, free, alpha, tol, cap)
    timings["refine"] += time.perf_counter() - t0
    iterations += int(res.iterations[0])
    if int(res.status[0]) != _NEWTON_OPTIMAL:
        return None
    sol = _solution(run, base, free, res.alpha, fc, iterations, "+".join(tokens + ["face", "newton"]), timings,
                    t_start, tol)
    return None if sol is None else dataclasses.replace(sol, info={**sol.info, "face_source": source})


def _push(problem: DualProblem, y: np.ndarray) -> np.ndarray:
    """``M'^T y: [|A|]`` (``M' = M - eps_hat 1^T`` from the ELL layout)."""
    num_joint, width = problem.rows.shape
    push = np.bincount(np.repeat(np.arange(num_joint), width), weights=(problem.values * y[problem.rows]).reshape(-1),
                       minlength=num_joint)
    return push - float(problem.eps_hat[problem.player] @ y)


def grown_face(problem: DualProblem, concept: str, shape: tuple[int, ...], scale: np.ndarray, known: KnownFace,
               max_kept: float = GROWN_MAX_KEPT) -> Face | None:
    """The minimal face of ``problem`` (a game that extends ``known``'s: actions appended,
    old payoffs unchanged) from an LP on fewer joint actions; None when the mapped
    certificate proves too little (then the full LP).

    ``known.face.certificate`` on the rows that carry over (re-expressed in this game's
    normalisation ``scale: [N]``, new rows 0) is ``y_c >= 0`` with ``(M'^T y_c)_a = 0`` on
    the old support and, off it, ``> 0`` (old joints; new joints where the new payoffs
    make it so). If no joint has ``M'^T y_c < 0``, every feasible joint is zero where it
    is ``> 0`` (``0 >= y_c^T M' sigma``), so the polytope is that of the problem on the
    other joints ``R``. The face LP of that smaller problem gives the support and the
    equalities, and a certificate ``y_r``; ``y_r + t y_c`` with ``t`` large enough is one
    of the full problem (``y_c`` adds nothing on ``R``). The result is returned only when
    ``face_certified`` accepts it on ``problem``.

    Args:
      problem: the grown game's hard-constraint problem (normalised units).
      concept: "cce" or "ce"; shape: the grown game's ``(A1..AN)``.
      scale: ``[N]`` its normalisation scale.
      known: the face of the game it extends.
      max_kept: largest fraction of the joint actions in ``R`` for which the smaller LP runs.

    Raises:
      RuntimeError: HiGHS did not solve the LP.
    """
    old_y = np.asarray(known.face.certificate, dtype=np.float64)
    if (len(shape) != len(known.shape) or any(n < o for n, o in zip(shape, known.shape, strict=True))
            or old_y.shape != (num_constraints(known.shape, concept),)):
        return None
    maps = related.resolve_action_map(known.shape, shape)
    new_rows, old_rows = related.row_maps(maps, known.shape, concept)
    old_player = constraint_player(known.shape, concept)
    ratio = np.asarray(scale, dtype=np.float64)[problem.player[new_rows]] / np.asarray(
        known.scale, dtype=np.float64)[old_player[old_rows]]
    y_c = np.zeros(problem.num_constraints)
    y_c[new_rows] = old_y[old_rows] * ratio
    if not np.all(np.isfinite(y_c)) or np.any(y_c < 0) or not np.any(y_c > 0):
        return None
    push = _push(problem, y_c)
    slack = face_lib.CERTIFICATE_SLACK * max(1.0, float(np.max(y_c)))
    if np.any(push < -slack):
        y_c = _repaired(problem, y_c, push, _new_rows(known.shape, shape, concept), slack)
        if y_c is None:
            return None
        push = _push(problem, y_c)
        slack = face_lib.CERTIFICATE_SLACK * max(1.0, float(np.max(y_c)))
    cut = push > slack
    if np.any(push < -slack) or not np.any(cut) or np.count_nonzero(~cut) > max_kept * push.shape[0]:
        return None
    keep = np.flatnonzero(~cut)
    sub = problem._replace(rows=np.ascontiguousarray(problem.rows[keep]),
                           values=np.ascontiguousarray(problem.values[keep]),
                           base_logits=np.ascontiguousarray(problem.base_logits[keep]))
    small = support_face(sub)
    if not small.feasible:
        return None  # an empty polytope: the full LP says so
    y_r = np.asarray(small.certificate, dtype=np.float64)
    push_r = _push(problem, y_r)
    t = max(1.0, float(np.max((1.0 + slack - push_r[cut]) / push[cut]))) * (1.0 + 1e-9)
    support = np.zeros(push.shape[0], dtype=bool)
    support[keep] = small.support
    fc = Face(support, small.equalities, y_r + t * y_c, True, small.lp_status, small.lp_time)
    return fc if face_certified(problem, fc) else None


def _new_rows(old_shape: tuple[int, ...], shape: tuple[int, ...], concept: str) -> np.ndarray:
    """CE rows that deviate from a new action (``[K]`` bool): they only touch new joints."""
    new = np.zeros(num_constraints(shape, concept), dtype=bool)
    if concept != "ce":
        return new
    offset = 0
    for n_old, n in zip(old_shape, shape, strict=True):
        new[offset + n_old * (n - 1): offset + n * (n - 1)] = True
        offset += n * (n - 1)
    return new


def _repaired(problem: DualProblem, y_c: np.ndarray, push: np.ndarray, free_rows: np.ndarray,
              slack: float) -> np.ndarray | None:
    """``y_c + z`` with ``z >= 0`` on ``free_rows`` and ``M'^T (y_c + z) >= 0`` on every
    joint (a small LP, HiGHS through SciPy), or None when there is none.

    A mapped certificate can push some new joints below zero (their payoffs are new);
    rows that deviate from a new action touch new joints only (``eps_hat = 0``, as for
    exact CEs) and can lift them."""
    cols = np.flatnonzero(free_rows)
    if cols.size == 0 or np.any(problem.eps_hat):
        return None
    slot = np.isin(problem.rows, cols)  # [|A|, c]
    joints = np.flatnonzero(slot.any(axis=1))
    if np.any(push[np.setdiff1d(np.arange(push.shape[0]), joints)] < -slack):
        return None  # negative where no free row reaches
    position = np.full(problem.num_constraints, -1)
    position[cols] = np.arange(cols.size)
    gain = np.zeros((joints.size, cols.size))  # M'[free rows, joints]^T
    j_idx, s_idx = np.nonzero(slot[joints])
    np.add.at(gain, (j_idx, position[problem.rows[joints][j_idx, s_idx]]), problem.values[joints][j_idx, s_idx])
    res = linprog(np.ones(cols.size), A_ub=-gain, b_ub=push[joints], bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    out = y_c.copy()
    out[cols] += res.x
    return out


def _solution(run: _Run, base: np.ndarray, free: np.ndarray, alpha: np.ndarray, fc: Face | None,
              iterations: int, method: str, timings: dict, t_start: float, tol: float) -> Solution | None:
    """The certified ``Solution`` of ``alpha`` (lifted off ``fc``), in payoff units as
    ``solvers.solve`` builds it; None when the certificate misses ``tol`` or the payoff
    units overflow (the library reports those)."""
    t0 = time.perf_counter()
    layout = run.layout
    joint, gaps, eps, stats = kn.certify_serial(layout.rows, run.values, layout.player, base, run.eps_hat,
                                                run.eps_plus, run.rho, free, alpha)
    timings["certificate"] = time.perf_counter() - t0
    violation, kkt, dgap, loss = (float(v) for v in stats[0])
    if not (violation <= tol and abs(dgap) <= tol):
        return None
    restricted = alpha[0].copy()
    duals = restricted
    if fc is not None:
        duals = lift_duals(run.problem(run.base, np.zeros_like(free)), fc, restricted)
    scale = run.norm.scale
    row_scale = scale[layout.player]
    info: dict[str, Any] = {"violation": violation, "kkt": kkt, "face": fc is not None}
    with np.errstate(over="ignore", invalid="ignore"):
        payoff_duals = np.maximum(duals, 0.0) * row_scale
        if fc is not None:
            info["restricted_duals"] = restricted * row_scale
        gaps_payoff, eps_payoff = gaps[0] / scale, eps[0] / scale
    if not (np.all(np.isfinite(payoff_duals)) and np.all(np.isfinite(gaps_payoff))):
        return None
    joint = joint[0].reshape(tuple(run.norm.payoffs.shape[1:]))
    timings["total"] = time.perf_counter() - t_start
    return Solution(
        joint=joint, marginals=tuple(solvers.marginals(joint)), duals=payoff_duals, eps=eps_payoff,
        gap=float(gaps_payoff.max()), gaps=gaps_payoff, scale=scale, duality_gap=dgap, objective=loss - dgap,
        iterations=int(iterations), timings=timings, status=Status.OPTIMAL, concept=run.concept,
        selection=run.selection, method=method, info=info,
    )
