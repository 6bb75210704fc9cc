"""Facial reduction for hard constraints (DESIGN §4b): one HiGHS LP.

With ``eps = eps_hat`` the selection problem lives on the polytope
``{sigma in simplex: M sigma <= eps_hat}``. Homogenised (``M' = M - eps_hat 1^T``) it is
the cone ``K = {x >= 0: M' x <= 0}``. The LP

    max  sum_a t_a + sum_k s_k
    s.t. t_a - x_a <= 0,   s_k + (M' x)_k <= 0,   0 <= t, s <= 1,   x >= 0

has ``t_a = 1`` exactly on the support ``S`` of a relative-interior point of ``K`` and
``s_k = 0`` exactly on the implicit equalities ``E``. Its row duals ``y >= 0`` of the
``s + M' x <= 0`` rows are a facial-reduction certificate: any dual-feasible ``y`` has
``M'^T y >= 0`` and ``y^T M' x = 0`` on ``K``, so ``y`` vanishes off ``E`` and
``M'^T y`` vanishes on ``S``; optimality gives ``y_k >= 1`` on ``E`` and
``(M'^T y)_a >= 1`` off ``S``. ``lift_duals`` uses it to turn duals of the restricted
problem (sign-free on ``E``) into non-negative duals of the full problem with the same
joint.

HiGHS is called through ``highspy`` with the model built straight from the ELL layout
(``scipy.optimize.linprog`` costs ~2 ms more per call on 8x8 CE).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from typing import Any, NamedTuple

import highspy
import numpy as np
import scipy.sparse as sps

from solvers.dual import DualProblem, restrict

__all__ = [
    "Face", "FACE_THRESHOLD", "LIFT_MARGIN", "PRESOLVE_MIN_JOINTS", "minimal_face", "minimal_face_auto",
    "support_face",
    "face_certified", "polytope_face", "restrict_to_face", "lift_duals", "run_highs", "run_with_limit", "highs_instance",
]

#: ``t_a`` / ``s_k`` are 0 or 1 at a vertex optimum; the midpoint separates them.
FACE_THRESHOLD = 0.5
#: Logit margin (nats) that ``lift_duals`` puts between the support and the rest:
#: off-support mass ``<= |A| exp(-LIFT_MARGIN)``, about the double-precision epsilon per
#: joint. (Larger margins only inflate the duals: ``t`` scales with it.)
LIFT_MARGIN = 36.0
#: Slack of ``face_certified`` on the certificate's conditions (HiGHS's dual feasibility
#: tolerance is 1e-7; the conditions are ``= 0`` on the support and ``>= 1`` off it).
CERTIFICATE_SLACK = 1e-6
#: Joint actions from which ``minimal_face_auto`` runs HiGHS's presolve. Measured on the
#: ME-CE face LPs of 3-player Kuhn poker JPSRO meta-games (2-core CPU, ms, off -> on):
#: 5x5x5 3.2 -> 15, 8x8x8 85 -> 100, 9x9x9 184 -> 154, 10x10x10 296 -> 184, 11x11x11
#: 572 -> 279, 12x12x12 777 -> 460; 2-player 16x16 53 -> 95, 24x24 744 -> 689. The face
#: is the same (the LP's optimal ``t`` and ``s`` are unique).
PRESOLVE_MIN_JOINTS = 700


class Face(NamedTuple):
    """The minimal face of ``{sigma in simplex: M sigma <= eps_hat}``.

    Attributes:
      support: ``[|A|]`` bool, joints that some feasible sigma puts mass on.
      equalities: ``[K]`` bool, rows tight on the whole polytope (implicit equalities).
      certificate: ``[K]`` ``y >= 0`` with ``M'^T y = 0`` on the support, ``>= 1`` off it.
      feasible: False when the polytope is empty (``eps_hat`` too small).
      lp_status: HiGHS's model status string.
      lp_time: seconds inside HiGHS.
    """

    support: np.ndarray
    equalities: np.ndarray
    certificate: np.ndarray
    feasible: bool
    lp_status: str
    lp_time: float


_HIGHS_LOCAL = threading.local()


@contextlib.contextmanager
def _quiet_stdout():
    """Silences file descriptor 1 (HiGHS prints a banner from C++ on construction)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def highs_instance(slot: str = "solvers") -> highspy.Highs:
    """One quiet HiGHS instance per thread and ``slot``, reused across LPs (construction is
    not free); presolve off. Callers that keep a basis between LPs use their own ``slot``."""
    instances = _HIGHS_LOCAL.__dict__.setdefault("instances", {})
    highs = instances.get(slot)
    if highs is None:
        with _quiet_stdout():
            highs = highspy.Highs()
        highs.setOptionValue("output_flag", False)
        # Presolve costs more than it saves on these small, dense-ish LPs (measured).
        highs.setOptionValue("presolve", "off")
        instances[slot] = highs
    return highs


def run_with_limit(highs: highspy.Highs, time_limit: float = math.inf) -> float:
    """``highs.run()`` with ``time_limit`` seconds for this run; the run's seconds.

    HiGHS's clock and ``time_limit`` count over the instance's whole life, not per run
    (ERGO-Code/HiGHS#1331; highspy has no ``zeroAllClocks``), so a reused instance would
    hit any fixed limit once its LPs had added up to it, and fail every LP after that.
    """
    start = float(highs.getRunTime())
    highs.setOptionValue("time_limit", start + float(time_limit))
    highs.run()
    return float(highs.getRunTime()) - start


def run_highs(highs: highspy.Highs, what: str, time_limit: float = math.inf) -> tuple[str, Any, float]:
    """Run the model passed to ``highs`` within ``time_limit`` seconds: ``(status name,
    solution, run time in s)``; RuntimeError naming ``what`` unless optimal."""
    lp_time = run_with_limit(highs, time_limit)
    status = highs.getModelStatus()
    name = highs.modelStatusToString(status)
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS failed on {what}: {name}")
    return name, highs.getSolution(), lp_time


def _homogenised_columns(problem: DualProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC ``(start, index, value)`` of ``M' = M - eps_hat 1^T`` ``[K, |A|]`` from the ELL."""
    num_joint, width = problem.rows.shape
    num = problem.num_constraints
    eps_rows = problem.eps_hat[problem.player]
    if not np.any(eps_rows):
        order = np.argsort(problem.rows, axis=1, kind="stable")
        index = np.take_along_axis(problem.rows, order, axis=1)
        value = np.take_along_axis(problem.values, order, axis=1)
        start = np.arange(0, num_joint * width + 1, width, dtype=np.int64)
        return start, index.reshape(-1), value.reshape(-1)
    dense = np.broadcast_to(-eps_rows[None, :], (num_joint, num)).copy()  # column-major [|A|, K]
    np.add.at(dense, (np.arange(num_joint)[:, None], problem.rows), problem.values)
    start = np.arange(0, num_joint * num + 1, num, dtype=np.int64)
    index = np.tile(np.arange(num, dtype=np.int64), num_joint)
    return start, index, dense.reshape(-1)


def minimal_face(problem: DualProblem, time_limit: float = 60.0) -> Face:
    """Finds the minimal face of the hard-constraint polytope of ``problem`` (one LP).

    Args:
      problem: a hard-constraint dual problem (``eps_hat`` per player, normalised units);
        its ``base_logits`` are ignored.
      time_limit: HiGHS time limit in seconds.

    Returns:
      A ``Face``; ``feasible`` is False (empty support) when no joint satisfies the
      constraints, e.g. ``eps_hat`` below the smallest achievable approximation.

    Raises:
      RuntimeError: HiGHS did not solve the LP.
    """
    columns = _homogenised_columns(problem)
    return _face_lp(columns, problem.rows.shape[0], problem.num_constraints, time_limit)


def minimal_face_auto(problem: DualProblem, time_limit: float = 60.0) -> Face:
    """``minimal_face`` with HiGHS's presolve on from ``PRESOLVE_MIN_JOINTS`` joint
    actions (where it halves the LP time), off below (where it costs more than it saves)."""
    columns = _homogenised_columns(problem)
    num_joint = problem.rows.shape[0]
    return _face_lp(columns, num_joint, problem.num_constraints, time_limit,
                    presolve=num_joint >= PRESOLVE_MIN_JOINTS)


def support_face(problem: DualProblem, time_limit: float = 60.0) -> Face:
    """The minimal face's support with a checked certificate, from a smaller LP than
    ``minimal_face``'s (``_support_lp``: ``K`` rows and ``2 |A|`` columns against
    ``|A| + K`` and ``2 |A| + K``; benchmarks/results/solvers_suite_ce_face.md).

    The LP has ``t_a = 1`` exactly on the support ``S`` of a relative-interior point, and
    its row duals are a certificate ``y``: ``(M'^T y)_a = 0`` on ``S``, ``>= 1`` off it.
    No implicit equalities are claimed (``equalities`` all False): the problem restricted
    to ``S`` with every dual ``>= 0`` still has a minimiser (``alpha* + t y`` for large
    ``t``, ``y`` of ``minimal_face``), and ``lift_duals`` then only adds ``t y``. The
    answer is returned only when ``face_certified`` accepts it; otherwise (and for an
    empty polytope) ``minimal_face``'s LP decides.

    Raises:
      RuntimeError: HiGHS did not solve ``minimal_face``'s LP.
    """
    columns = _homogenised_columns(problem)
    num_joint, num = problem.rows.shape[0], problem.num_constraints
    try:
        found = _support_lp(columns, num_joint, num, time_limit)
    except RuntimeError:
        found = None
    if found is not None and found.feasible and face_certified(problem, found):
        return found
    return _face_lp(columns, num_joint, num, time_limit)


def polytope_face(matrix: sps.csr_array | np.ndarray, rhs: np.ndarray, time_limit: float = 60.0) -> Face:
    """``minimal_face`` of ``{x in simplex: M x <= rhs}`` given the rows themselves.

    The same LP, for callers that build their own constraint rows (the independent
    CVXPY reference, ``solvers.lp.constraint_matrix``) rather than a ``DualProblem``.

    Args:
      matrix: ``[K, |A|]``; rhs: ``[K]``.
      time_limit: HiGHS time limit in seconds.

    Returns:
      A ``Face``; ``feasible`` is False (and the support empty) when the polytope is empty.

    Raises:
      RuntimeError: HiGHS did not solve the LP.
    """
    matrix = sps.csr_array(matrix)
    num, num_joint = matrix.shape
    rhs = np.asarray(rhs, dtype=np.float64).reshape(num)
    if not np.any(rhs):
        csc = sps.csc_array(matrix)
        csc.sort_indices()
        columns = (csc.indptr.astype(np.int64), csc.indices.astype(np.int64), csc.data.astype(np.float64))
    else:
        dense = matrix.toarray().T - rhs[None, :]  # [|A|, K]: column-major M'
        start = np.arange(num_joint + 1, dtype=np.int64) * num
        columns = (start, np.tile(np.arange(num, dtype=np.int64), num_joint), dense.reshape(-1))
    return _face_lp(columns, num_joint, num, time_limit)


def _face_lp(
    columns: tuple[np.ndarray, np.ndarray, np.ndarray], num_joint: int, num: int, time_limit: float,
    *, presolve: bool = False,
) -> Face:
    """Solves the face LP of the module docstring for ``M'`` given as CSC ``columns``
    (``presolve``: HiGHS's presolve on)."""
    m_start, m_index, m_value = columns
    m_count = np.diff(m_start)
    # Variables [x (|A|), t (|A|), s (K)]; rows [t - x <= 0 (|A|), s + M' x <= 0 (K)].
    x_count = 1 + m_count
    counts = np.concatenate([x_count, np.ones(num_joint + num, dtype=np.int64)])
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    x_index = np.empty(int(x_count.sum()), dtype=np.int64)
    x_value = np.empty(x_index.shape[0])
    x_first = start[:num_joint]
    x_index[x_first] = np.arange(num_joint)
    x_value[x_first] = -1.0
    offs = np.repeat(x_first + 1 - m_start[:-1], m_count) + np.arange(m_index.shape[0])
    x_index[offs] = num_joint + m_index
    x_value[offs] = m_value
    index = np.concatenate([x_index, np.arange(num_joint), num_joint + np.arange(num)]).astype(np.int32)
    value = np.concatenate([x_value, np.ones(num_joint + num)])

    num_cols = 2 * num_joint + num
    num_rows = num_joint + num
    cost = np.concatenate([np.zeros(num_joint), -np.ones(num_joint + num)])
    upper = np.concatenate([np.full(num_joint, highspy.kHighsInf), np.ones(num_joint + num)])
    highs = highs_instance()
    highs.clearSolver()
    highs.setOptionValue("presolve", "on" if presolve else "off")
    # The array overload of passModel: the HighsLp attribute setters convert element by
    # element (~0.5 ms of the 8x8 CE LP's Python time).
    highs.passModel(num_cols, num_rows, int(index.shape[0]), int(highspy.MatrixFormat.kColwise),
                    int(highspy.ObjSense.kMinimize), 0.0, cost, np.zeros(num_cols), upper,
                    np.full(num_rows, -highspy.kHighsInf), np.zeros(num_rows), start[:-1], index, value,
                    np.zeros(num_cols, dtype=np.int32))
    status_name, solution, lp_time = run_highs(highs, "the facial-reduction LP", time_limit)
    col = np.asarray(solution.col_value)
    row_dual = np.asarray(solution.row_dual)
    t = col[num_joint : 2 * num_joint]
    s = col[2 * num_joint :]
    support = t > FACE_THRESHOLD
    # HiGHS reports row duals of a minimisation with <= rows as <= 0.
    cert = np.maximum(-row_dual[num_joint:], 0.0)
    if not support.any():
        return Face(support, np.ones(num, dtype=bool), cert, False, status_name, lp_time)
    return Face(support, s < FACE_THRESHOLD, cert, True, status_name, lp_time)


def _support_lp(columns: tuple[np.ndarray, np.ndarray, np.ndarray], num_joint: int, num: int,
                time_limit: float) -> Face:
    """``support_face``'s LP with ``x = t + z``: ``max sum_a t_a`` s.t. ``M'(t + z) <= 0``,
    ``0 <= t <= 1``, ``z >= 0``; ``K`` rows instead of ``|A| + K``. Its row duals ``y``
    have ``M'^T y >= 0`` (the ``z`` columns), ``>= 1`` where ``t_a = 0``, and
    ``= 0`` on the support (complementary slackness: ``y^T M' x = 0``, ``x > 0`` there)."""
    m_start, m_index, m_value = columns
    start = np.concatenate([m_start, m_start[-1] + m_start[1:]]).astype(np.int32)
    index = np.concatenate([m_index, m_index]).astype(np.int32)
    value = np.concatenate([m_value, m_value])
    num_cols = 2 * num_joint
    highs = highs_instance()
    highs.clearSolver()
    highs.setOptionValue("presolve", "off")
    highs.passModel(num_cols, num, int(index.shape[0]), int(highspy.MatrixFormat.kColwise),
                    int(highspy.ObjSense.kMinimize), 0.0,
                    np.concatenate([-np.ones(num_joint), np.zeros(num_joint)]), np.zeros(num_cols),
                    np.concatenate([np.ones(num_joint), np.full(num_joint, highspy.kHighsInf)]),
                    np.full(num, -highspy.kHighsInf), np.zeros(num), start[:-1], index, value,
                    np.zeros(num_cols, dtype=np.int32))
    status_name, solution, lp_time = run_highs(highs, "the support LP", time_limit)
    support = np.asarray(solution.col_value)[:num_joint] > FACE_THRESHOLD
    cert = np.maximum(-np.asarray(solution.row_dual), 0.0)
    return Face(support, np.zeros(num, dtype=bool), cert, bool(support.any()), status_name, lp_time)


def face_certified(problem: DualProblem, face: Face, slack: float = CERTIFICATE_SLACK) -> bool:
    """True when ``face.certificate`` proves ``face`` a face of ``problem``'s polytope
    holding all of it: ``y >= 0``, ``(M'^T y)_a = 0`` on the support and ``>= 1`` off it,
    ``y_k >= 1`` on the equalities (within ``slack``). Then every feasible ``sigma`` has
    ``0 >= y^T M' sigma = sum_a (M'^T y)_a sigma_a >= 0``: it is zero off the support
    and tight on the equalities, so the problem restricted to the face has the same
    optimum. Checks a face found for another problem (a reused or mapped one) without the
    LP; says nothing about the support being minimal (a restricted solve that is not
    optimal does). O(nnz)."""
    y = np.asarray(face.certificate, dtype=np.float64)
    num_joint = problem.rows.shape[0]
    if (not face.feasible or y.shape != (problem.num_constraints,) or face.support.shape != (num_joint,)
            or face.equalities.shape != y.shape or not np.all(np.isfinite(y)) or np.any(y < 0)):
        return False
    push = np.bincount(np.repeat(np.arange(num_joint), problem.rows.shape[1]),
                       weights=(problem.values * y[problem.rows]).reshape(-1), minlength=num_joint)
    push -= float(problem.eps_hat[problem.player] @ y)
    size = max(1.0, float(np.max(y)))
    on, off = push[face.support], push[~face.support]
    return bool(np.all(np.abs(on) <= slack * size) and np.all(off >= 1.0 - slack * size)
                and np.all(y[face.equalities] >= 1.0 - slack * size))


def restrict_to_face(problem: DualProblem, face: Face) -> DualProblem:
    """``dual.restrict`` to the face: no mass off its support, its equalities sign-free."""
    return restrict(problem, face.support, face.equalities)


def _homogenised_block(problem: DualProblem, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``M'[rows, cols]^T`` dense ``[#cols, #rows]`` from the ELL (``M' = M - eps_hat 1^T``)."""
    num_joint = problem.rows.shape[0]
    dense = np.zeros((num_joint, problem.num_constraints))
    np.add.at(dense, (np.repeat(np.arange(num_joint), problem.rows.shape[1]), problem.rows.reshape(-1)),
              problem.values.reshape(-1))
    dense -= problem.eps_hat[problem.player][None, :]
    return dense[np.ix_(cols, rows)]


def lift_duals(problem: DualProblem, face: Face, alpha: np.ndarray, margin: float = LIFT_MARGIN) -> np.ndarray:
    """Non-negative duals of the full problem from duals ``alpha: [K]`` on the face.

    First replaces the sign-free part by its minimum-norm equivalent (same restricted
    joint and loss); then adds ``t y`` (``y`` the face certificate), which leaves the restricted loss and joint
    unchanged (``M'^T y = 0`` on the support), with ``t`` large enough that every row is
    ``>= 0`` and the off-support logits sit ``margin`` nats below the support's, so that
    ``sigma(lifted)`` in the full problem equals the face's joint to double precision.
    """
    alpha = np.array(alpha, dtype=np.float64)
    y = face.certificate
    free = face.equalities
    support = face.support
    if np.any(free):
        # The restricted loss is flat along d on E with M'^T d = 0 on the support, and the
        # damped Newton steps may wander far along it (|alpha_E| ~ 1e4 seen on poker
        # meta-games). Keep the minimum-norm representative: the projection of alpha_E
        # onto the row space of A = M'[E, S]^T (same joint, same loss).
        a_mat = _homogenised_block(problem, free, support)
        alpha[free] = np.linalg.pinv(a_mat) @ (a_mat @ alpha[free])
    t_sign = 0.0
    neg = free & (alpha < 0) & (y > 0)
    if np.any(neg):
        t_sign = float(np.max(-alpha[neg] / y[neg]))
    if np.all(support):
        return np.where(free, np.maximum(alpha + t_sign * y, 0.0), np.maximum(alpha, 0.0))
    # Full-problem logits at the start of the lift (base as in the unrestricted problem).
    num_joint = problem.rows.shape[0]
    push = np.zeros(num_joint)
    eps_rows = problem.eps_hat[problem.player]
    np.add.at(push, np.repeat(np.arange(num_joint), problem.rows.shape[1]),
              (problem.values * y[problem.rows]).reshape(-1))
    push -= float(eps_rows @ y)  # (M'^T y)_a: 0 on the support, >= 1 off it
    base = problem.base_logits
    lg = base - np.bincount(
        np.repeat(np.arange(num_joint), problem.rows.shape[1]),
        weights=(problem.values * alpha[problem.rows]).reshape(-1),
        minlength=num_joint,
    )
    on = lg[support]
    top = float(np.max(on))
    off = ~support
    # Need lg_off - t * push_off <= top - margin for every off-support joint.
    finite = np.isfinite(lg[off])
    need = 0.0
    if np.any(finite):
        pushes = np.maximum(push[off][finite], 1e-12)
        need = float(np.max((lg[off][finite] - top + margin) / pushes))
    t = max(t_sign, need, 0.0)
    if not math.isfinite(t):
        t = t_sign
    lifted = alpha + t * y
    return np.where(free, np.maximum(lifted, 0.0), np.maximum(lifted, 0.0))
