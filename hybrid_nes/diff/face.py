"""The facial-reduction LP of ``solvers.face`` with its model skeleton cached per layout
and warm starts, for the face-change check of ``hybrid_nes.diff``.

The LP is ``solvers.face``'s (its module docstring): variables ``[x (|A|), t (|A|),
s (K)]``, rows ``[t - x <= 0 (|A|), s + M' x <= 0 (K)]``, ``M' = M - eps_hat 1^T``. Only
the values of ``M'`` change between games of one (shape, concept), so the sparsity
pattern, costs and bounds are built once per layout. The perturbed LPs of the face-change
check start from the optimal basis of the unperturbed one: where the face does not move
that basis stays optimal and HiGHS only refactorises it. A warm start changes the path
HiGHS takes, not the optimum it certifies. (The LP-free certificate that usually makes
these LPs unnecessary is ``solvers.face_cert``.)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import highspy
import numpy as np

from solvers.face import FACE_THRESHOLD, Face, highs_instance, run_highs

__all__ = ["face_lp", "face_moves"]


class _Skeleton(NamedTuple):
    start: np.ndarray  # [2|A| + K + 1] int32 column starts
    index: np.ndarray  # [nnz] int32 row indices
    value: np.ndarray  # [nnz] the constant entries (M' slots to be filled)
    slots: np.ndarray  # [|A| * width] positions of the M' entries in ``value``
    order: np.ndarray | None  # [|A|, c] row order within each column (sparse); None: dense
    cost: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray


@functools.lru_cache(maxsize=32)
def _skeleton(rows_key: bytes, num_joint: int, width: int, num: int, dense: bool) -> _Skeleton:
    rows = np.frombuffer(rows_key, dtype=np.int64).reshape(num_joint, width)
    per_col = num if dense else width
    x_count = np.full(num_joint, 1 + per_col, dtype=np.int64)
    counts = np.concatenate([x_count, np.ones(num_joint + num, dtype=np.int64)])
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    x_first = start[:num_joint].astype(np.int64)
    slots = (x_first[:, None] + 1 + np.arange(per_col)[None, :]).reshape(-1)
    x_index = np.empty(num_joint * (1 + per_col), dtype=np.int64)
    x_value = np.empty(x_index.shape[0])
    x_index[x_first] = np.arange(num_joint)
    x_value[x_first] = -1.0
    order = None
    if dense:
        m_index = np.tile(np.arange(num, dtype=np.int64), num_joint)
    else:
        order = np.argsort(rows, axis=1, kind="stable")
        m_index = np.take_along_axis(rows, order, axis=1).reshape(-1)
    x_index[slots] = num_joint + m_index
    index = np.concatenate([x_index, np.arange(num_joint), num_joint + np.arange(num)]).astype(np.int32)
    value = np.concatenate([x_value, np.ones(num_joint + num)])
    num_rows = num_joint + num
    return _Skeleton(
        start, index, value, slots, order,
        np.concatenate([np.zeros(num_joint), -np.ones(num_joint + num)]),
        np.zeros(2 * num_joint + num),
        np.concatenate([np.full(num_joint, highspy.kHighsInf), np.ones(num_joint + num)]),
        np.full(num_rows, -highspy.kHighsInf), np.zeros(num_rows),
    )


def _model(rows: np.ndarray, values: np.ndarray, eps_rows: np.ndarray) -> highspy.HighsLp:
    num_joint, width = rows.shape
    num = eps_rows.shape[0]
    dense = bool(np.any(eps_rows))
    sk = _skeleton(np.ascontiguousarray(rows, dtype=np.int64).tobytes(), num_joint, width, num, dense)
    value = sk.value.copy()
    if dense:
        block = np.broadcast_to(-eps_rows[None, :], (num_joint, num)).copy()
        np.add.at(block, (np.arange(num_joint)[:, None], rows), values)
        value[sk.slots] = block.reshape(-1)
    else:
        value[sk.slots] = np.take_along_axis(values, sk.order, axis=1).reshape(-1)
    lp = highspy.HighsLp()
    lp.num_col_ = 2 * num_joint + num
    lp.num_row_ = num_joint + num
    lp.col_cost_ = sk.cost
    lp.col_lower_ = sk.lower
    lp.col_upper_ = sk.upper
    lp.row_lower_ = sk.row_lower
    lp.row_upper_ = sk.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = sk.start
    lp.a_matrix_.index_ = sk.index
    lp.a_matrix_.value_ = value
    return lp


def _run(lp: highspy.HighsLp, num_joint: int, num: int, basis, time_limit: float):
    highs = highs_instance("diff")  # its own: the basis carries between calls
    highs.clearSolver()
    highs.passModel(lp)
    if basis is not None:
        highs.setBasis(basis)
    name, sol, lp_time = run_highs(highs, "the facial-reduction LP", time_limit)
    col = np.asarray(sol.col_value)
    cert = np.maximum(-np.asarray(sol.row_dual)[num_joint:], 0.0)
    support = col[num_joint:2 * num_joint] > FACE_THRESHOLD
    if not support.any():
        face = Face(support, np.ones(num, dtype=bool), cert, False, name, lp_time)
    else:
        face = Face(support, col[2 * num_joint:] < FACE_THRESHOLD, cert, True, name, lp_time)
    return face, highs.getBasis()


def face_lp(rows: np.ndarray, values: np.ndarray, eps_rows: np.ndarray, basis=None,
            time_limit: float = 60.0):
    """``(Face, basis)``: ``solvers.face.minimal_face`` of the hard-constraint polytope.

    Args:
      rows, values: ``[|A|, c]`` the ELL layout and gains of one game (normalised units).
      eps_rows: ``[K]`` ``eps_hat`` of each row's player.
      basis: a HiGHS basis of this layout's LP to start from (None: cold start).
      time_limit: HiGHS time limit in seconds.

    Raises:
      RuntimeError: HiGHS did not solve the LP.
    """
    return _run(_model(rows, values, eps_rows), rows.shape[0], eps_rows.shape[0], basis, time_limit)


def face_moves(rows: np.ndarray, values_of, eps_rows: np.ndarray, face: Face, basis) -> bool:
    """True when the minimal face differs for the gains ``values_of(sign)``, ``sign = +1, -1``
    (the gains of the perturbed games), or the LP fails there."""
    for sign in (1.0, -1.0):
        try:
            moved, _ = face_lp(rows, values_of(sign), eps_rows, basis)
        except RuntimeError:
            return True
        if (not moved.feasible or np.any(moved.support != face.support)
                or np.any(moved.equalities != face.equalities)):
            return True
    return False

