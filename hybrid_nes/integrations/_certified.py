"""The certified meta-distribution: a solve with its fallback, and JPSRO's clean-up.

``hybrid_nes.integrations.openspiel`` hands each meta-game to ``certified_solve`` (the
``solvers.solve`` pipeline, then the CVXPY reference when that is not certified),
certifies the distribution it will return (``certify``: the gaps of exactly that
distribution, from ``solvers``' gains and certificate kernels) and, for entropy
selections, re-solves on the support that survives JPSRO's 1e-8 clean-up
(``sparsified``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController

import solvers
from hybrid_nes.integrations import _meta_game as mg
from hybrid_nes.integrations._face_stage import FaceSolver
from solvers import Selection, Solution, Status
from solvers.face import Face
from solvers.gains import Gains

#: BLAS threads during a meta-solve. Its dense linear algebra is small (``lift_duals``'
#: pseudo-inverse of an at most ``[|A|, K]`` block, a few hundred rows): threads buy
#: nothing there, and on a loaded machine OpenBLAS's thread pool made that pseudo-inverse
#: take 0.3-1.3 s instead of 2-14 ms on the Kuhn 12x12x12 CE meta-game
#: (benchmarks/results/related_suite.md).
BLAS_THREADS = 1
#: ``solvers.solve``'s call signature (``_face_stage.FaceSolver`` has it too).
SolveFn = Callable[..., Solution]

if TYPE_CHECKING:
    from hybrid_nes.integrations.openspiel import MetaSolverOptions

__all__ = ["blas_threads", "reusable_duals"]

#: Factor on the target of joint actions dropped by ``sparsified`` (log: about -460).
SPARSE_FLOOR = 1e-200
#: ``Solution.method`` stages whose duals are reused as the next warm start.
WARM_START_STAGES: frozenset[str] = frozenset({"newton", "gd"})
#: What a failing solver may raise; the fallback catches these and nothing else.
SOLVER_ERRORS = (ArithmeticError, RuntimeError, np.linalg.LinAlgError)


_BLAS: list[ThreadpoolController] = []


def blas_threads() -> Any:
    """A context of ``BLAS_THREADS`` BLAS threads (threadpoolctl), for one meta-solve."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=BLAS_THREADS, user_api="blas")


def reusable_duals(method: str) -> bool:
    """True when a ``Solution.method`` ("gd+newton", "newton+face+newton", ...) used only
    plain dual stages, so its duals are a sensible warm start.

    After facial reduction the duals of the implicit equalities drift along flat
    directions (magnitudes ~1e4 on Kuhn poker meta-games); started there, Newton can
    stall on the next meta-game (its iteration cap, then face + CVXPY).
    """
    return set(method.split("+")) <= WARM_START_STAGES


def solve(options: MetaSolverOptions, game: np.ndarray, selection: Selection,
          duals0: np.ndarray | Solution | None, method: str, solver: SolveFn | None = None,
          face: str | None = None) -> Solution:
    """``solvers.solve`` (or ``solver``, e.g. a ``FaceSolver``) with the meta-solver's
    options; ``face`` overrides ``options.face``."""
    fn = solvers.solve if solver is None else solver
    return fn(
        game, options.concept, selection, duals0=duals0, tol=options.tol,
        max_iter=options.max_iter, method=method, face=options.face if face is None else face,
    )


def certified_solve(
    options: MetaSolverOptions,
    game: np.ndarray,
    selection: Selection,
    duals0: np.ndarray | Solution | None,
    solver: SolveFn | None = None,
) -> tuple[Solution, bool, str | None, str | None]:
    """The fast solve (``solver``, default ``solvers.solve``), and the CVXPY reference
    when it is not certified.

    ``solvers.solve`` already finishes a stalled dual solve with its CVXPY polish; this
    is the last resort (``MetaSolverOptions.fallback``) when even that is not optimal or
    the solve raises.

    Returns:
      the solution, whether the fallback ran, the fast solve's status, its error text.
    """
    error = None
    solution: Solution | None = None
    try:
        solution = solve(options, game, selection, duals0, options.method, solver)
    except SOLVER_ERRORS as err:
        if not options.fallback:
            raise
        error = f"{type(err).__name__}: {err}"
    fast_status = None if solution is None else solution.status.value
    fallback = False
    if options.fallback and (solution is None or solution.status is not Status.OPTIMAL) and options.method != "cvxpy":
        reference = solve(options, game, selection, None, "cvxpy")
        fallback = True
        if solution is None or reference.status is Status.OPTIMAL or reference.gap <= solution.gap:
            solution = reference
    return solution, fallback, fast_status, error


class Returned(NamedTuple):
    """A candidate meta-distribution and the certificate of exactly that distribution."""

    dist: np.ndarray  # [A1..AN]
    solution: Solution  # the solve it comes from (its eps is the approximation solved for)
    gaps: np.ndarray  # [N] payoff units, of ``dist``
    excess: float  # max_p (gaps_p - eps_p) * scale_p: <= tol for a certified distribution


def certify(gains: Gains, dist: np.ndarray, solution: Solution, scale: np.ndarray) -> Returned:
    """The certificate of ``dist`` itself (not of the solve's joint it was cleaned from).

    ``scale: [N]`` is the meta-game's normalisation (``solvers.normalise``): the
    tolerance is in those units, as in ``solvers.solve``.
    """
    gaps = mg.gains_gaps(gains, dist)
    excess = float(np.max((gaps - np.asarray(solution.eps, dtype=np.float64)) * scale))
    return Returned(dist, solution, gaps, excess)


def _restart_duals(solution: Solution, face: Face | None) -> np.ndarray | None:
    """Start of the next clean-up re-solve: the face duals (sign-free on its equalities)
    on a known face; else the duals of a plain dual solve (``reusable_duals``) or none."""
    restricted = solution.info.get("restricted_duals")
    if face is not None and restricted is not None and np.all(np.isfinite(restricted)):
        return np.asarray(restricted, dtype=np.float64)
    if reusable_duals(solution.method) and np.all(np.isfinite(solution.duals)):
        return np.maximum(solution.duals, 0.0)
    return None


def _count_dropped(dense: np.ndarray, dist: np.ndarray) -> int:
    return int(np.count_nonzero((dense > 0) & (dist == 0)))


def sparsified(
    options: MetaSolverOptions,
    game: np.ndarray,
    gains: Gains,
    selection: Selection,
    dense: Returned,
    scale: np.ndarray,
    rounds: int,
    face: Face | None = None,
) -> tuple[Returned, int] | None:
    """The entropy selection re-solved on the joints that survive JPSRO's clean-up.

    Entropy-selected joints spread exponentially small mass (down to 1e-80 on 3-player
    Kuhn poker meta-games) over many joint actions; JPSRO zeroes every entry below 1e-8,
    which costs up to ~4e-8 of (C)CE gap. Re-solving with the target scaled by
    ``SPARSE_FLOOR`` on those entries gives the selection restricted to the surviving
    support: a (C)CE that JPSRO's clean-up leaves exact. Skipped when the clean-up's gap
    is within ``tol``.

    The returned distribution keeps the promise of the dense one: its own gap is within
    ``tol`` (``Returned.excess``). A re-solve can leave new entries below the threshold
    (9.8e-9 on the Kuhn 10x10x10 CE meta-game: dropping it cost 7.7e-9); those are floored
    in the next round (at most ``rounds``). If no round's cleaned joint is within ``tol``,
    the last certified re-solve is returned with only the floored entries (mass ~1e-160)
    removed, when that is within ``tol`` and JPSRO's clean-up costs it less than the
    dense joint; otherwise nothing (the dense joint is returned).

    ``face``: the minimal face the dense solve found for ``game`` (same polytope: only
    the target changes). The re-solves then run on it straight away (``FaceSolver``),
    from the previous solve's face duals, without the ``FACE_AFTER`` Newton iterations
    and the LP that ``solvers.solve`` would take again.

    Returns:
      ``(candidate, number of the dense joint's positive entries it zeroes)`` or None.
    """
    threshold = options.sparsify
    dist = dense.dist
    floored = dist < threshold
    if threshold <= 0 or selection.objective != "entropy" or not np.any(floored & (dist > 0)):
        return None
    before = certify(gains, mg.drop_below(dist, threshold), dense.solution, scale)
    if before.excess <= options.tol:
        return None  # the clean-up costs nothing beyond the solve's own tolerance
    target = selection.target if selection.target is not None else np.full(dist.shape, 1.0 / dist.size)
    duals0 = _restart_duals(dense.solution, face)
    fallback: Returned | None = None
    for _ in range(rounds):
        sparse_target = np.where(floored, SPARSE_FLOOR * target, target)
        sparse_selection = replace(selection, target=sparse_target / sparse_target.sum())
        try:
            solver = None if face is None else FaceSolver(reuse=face)
            resolved = solve(options, game, sparse_selection, duals0, options.method, solver,
                             None if face is None else "always")
        except SOLVER_ERRORS:
            break
        if resolved.status is not Status.OPTIMAL:
            break
        joint = mg.clean_joint(resolved.joint)
        cleaned = certify(gains, mg.drop_below(joint, threshold), resolved, scale)
        if cleaned.excess <= options.tol:
            return cleaned, _count_dropped(dist, cleaned.dist)
        fallback = certify(gains, mg.zero_out(joint, floored), resolved, scale)
        newly = (joint < threshold) & (joint > 0) & ~floored
        if not np.any(newly):
            break
        floored = floored | newly
        duals0 = _restart_duals(resolved, face)
    if fallback is None or fallback.excess > options.tol:
        return None
    used = mg.gains_gaps(gains, mg.drop_below(fallback.dist, threshold)).max()
    if used >= before.gaps.max():
        return None
    return fallback, _count_dropped(dist, fallback.dist)
