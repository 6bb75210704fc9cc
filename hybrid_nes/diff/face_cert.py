"""A face of the hard-constraint polytope certified without an LP, and its stability.

With ``eps_hat = 0`` the (C)CE polytope is ``P = {sigma in simplex: M sigma <= 0}`` and
its minimal face is ``(S, E)``: the joints some point of ``P`` plays and the rows tight on
all of ``P`` (``solvers.face``). On random games the faces Newton runs into are those of
iterated dominance: ``S`` excludes whole actions and ``E`` is the rows whose joints all lie
off ``S`` (``E0``: the row touches no joint of ``S``). Such a face needs no LP:

1. **Guess** it from Newton's iterate: the joints below ``FACE_MASS``, closed so that every
   guessed-off joint is touched by a guessed equality row (``guess``).
2. **Support within S** (``certificate_ok``): ``y >= 0`` on ``E0`` (Newton's own duals on
   those rows, which diverge along such a direction) with ``(M^T y)_a >= 1`` off ``S``;
   ``(M^T y)_a = 0`` on ``S`` holds structurally (``E0`` rows do not touch ``S``). Every
   ``sigma`` in ``P`` has ``0 >= y^T M sigma = sum_a (M^T y)_a sigma_a``: zero off ``S``.
3. **Support S, equalities E0** (``slater_ok``): a point ``x >= 0`` zero off ``S``, ``x > 0``
   on ``S`` and ``(M x)_k < 0`` on every row touching ``S``, built from the face optimum
   ``sigma`` as ``x = sigma + tau diag(sigma) M_A^T w`` with ``H_AA w = -1`` (``A`` the active
   rows, ``H_AA`` the dual Hessian block the forward inverts anyway): the step makes the
   active rows strictly slack. ``x`` is exact to rounding: ``M x`` is evaluated, not assumed.

Both conditions are checked with margins against every payoff perturbation of 2-norm
``eta`` (``face_tol`` relative, as the LP face-change check): a row or joint whose margin
beats the largest change ``eta * (coefficient norm)`` keeps its sign, so ``y`` stays a
certificate and ``x`` a Slater point, and the face of every such perturbed game is ``(S,
E0)``: a uniform version of the LP check's two random directions, with no LP. Where a
test does not pass, the forward falls back to the LPs (``face.face_lp``, ``face_moves``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from solvers import kernels as kn

__all__ = ["Structure", "certificate_ok", "guess", "off_block", "slater_ok", "structure", "touched"]

#: A margin must beat the perturbation bound (itself an upper bound) by this factor.
SAFETY = 1.0
#: Step sizes tried for the Slater point, as fractions of the largest that keeps ``x > 0``.
TAU_FRACTIONS = np.array([1.0, 0.5, 0.25, 0.125, 0.0625])
#: ... and exceed this absolute amount (rounding of ``M x`` and ``M^T y``, normalised units).
ROUNDING = 1e-12


class Structure(NamedTuple):
    """Payoff-independent arrays of one ELL layout (``structure``)."""

    touch: np.ndarray  # [|A|, c] bool: the slot's gain is not identically 0 (dev != a)
    touch_count: np.ndarray  # [K] slots of each row that touch a joint
    touched_row: np.ndarray  # [T] the row of each touching slot (row-major over [|A|, c])
    touched_joint: np.ndarray  # [T] its joint
    row_factor: np.ndarray  # [K] sqrt(m_dev) + sqrt(m_src): row coefficient bound factor
    col_factor: np.ndarray  # [|A|] sqrt(m_dev) of each joint's slots


def _max_multiplicity(keys: np.ndarray, groups: np.ndarray, num_groups: int) -> np.ndarray:
    """Per group, the largest number of times one key occurs."""
    pairs = np.stack([groups, keys], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    out = np.ones(num_groups)
    np.maximum.at(out, uniq[:, 0], counts)
    return out


@functools.lru_cache(maxsize=32)
def _structure(rows_key: bytes, dev_key: bytes, sp_key: bytes, num_joint: int, width: int, num: int) -> Structure:
    rows = np.frombuffer(rows_key, dtype=np.int64).reshape(num_joint, width)
    dev = np.frombuffer(dev_key, dtype=np.int64).reshape(num_joint, width)
    sp = np.frombuffer(sp_key, dtype=np.int64)
    touch = dev != np.arange(num_joint)[:, None]
    r, a = rows[touch], np.broadcast_to(np.arange(num_joint)[:, None], rows.shape)[touch]
    target = (np.broadcast_to(sp[None, :], rows.shape) * num_joint + dev)[touch]
    touch_count = np.bincount(r, minlength=num).astype(np.int64)
    m_dev = _max_multiplicity(target, r, num)
    m_src = _max_multiplicity(a, r, num)
    col = _max_multiplicity(target, a, num_joint)
    return Structure(touch, touch_count, r, a.copy(), np.sqrt(m_dev) + np.sqrt(m_src), np.sqrt(col))


def structure(rows: np.ndarray, dev: np.ndarray, slot_player: np.ndarray, num: int) -> Structure:
    """``Structure`` of a ``GainLayout`` (cached)."""
    as_key = functools.partial(np.ascontiguousarray, dtype=np.int64)
    return _structure(as_key(rows).tobytes(), as_key(dev).tobytes(), as_key(slot_player).tobytes(),
                      rows.shape[0], rows.shape[1], num)


def _equalities(rows: np.ndarray, st: Structure, off: np.ndarray) -> np.ndarray:
    """``[K]`` the rows all of whose touching slots lie on joints in ``off``."""
    inside = np.bincount(st.touched_row, weights=off[st.touched_joint], minlength=st.touch_count.shape[0])
    return inside == st.touch_count  # rows touching nothing (identically 0) included


def guess(rows: np.ndarray, st: Structure, joint: np.ndarray, mass: float) -> tuple[np.ndarray, np.ndarray] | None:
    """``(support [|A|], equalities [K])`` guessed from a joint: off the support the joints
    below ``mass`` that some guessed equality row touches; None when no joint is left off."""
    off = joint < mass
    while True:
        eq = _equalities(rows, st, off)
        covered = np.zeros_like(off)
        covered[np.any(st.touch & eq[rows], axis=1)] = True
        covered &= off
        if np.array_equal(covered, off):
            break
        off = covered
    if not off.any():
        return None
    return ~off, eq


def touched(st: Structure, mask: np.ndarray) -> np.ndarray:
    """``[K]`` the rows with a touching slot on a joint in ``mask [|A|]``."""
    return np.bincount(st.touched_row, weights=mask[st.touched_joint], minlength=st.touch_count.shape[0]) > 0


def off_block(rows: np.ndarray, values: np.ndarray, support: np.ndarray, equalities: np.ndarray) -> np.ndarray:
    """``M[equalities, ~support]`` dense ``[|E|, |off|]`` (the covering LP's data)."""
    off = ~support
    num = equalities.shape[0]
    dense = np.zeros((num, int(off.sum())))
    cols = np.broadcast_to(np.arange(dense.shape[1])[:, None], (dense.shape[1], rows.shape[1]))
    np.add.at(dense, (rows[off], cols), values[off])
    return dense[equalities]


def certificate_ok(rows: np.ndarray, values: np.ndarray, slot_player: np.ndarray, num_players: int,
                   st: Structure, support: np.ndarray, equalities: np.ndarray, alpha: np.ndarray,
                   eta: float) -> np.ndarray | None:
    """``y [K]`` (``>= 0``, zero off ``equalities``, ``(M^T y)_a >= 1`` off ``support``)
    from ``alpha``, valid for every perturbation of 2-norm ``eta``; None if it is not.

    The change of ``(M^T y)_a`` under a perturbation ``delta`` of the normalised payoffs is
    ``sum_j y_{rows[a, j]} (delta[p_j, dev[a, j]] - delta[p_j, a])``, at most ``eta`` times
    ``col_factor_a ||y_slots||_2 + ||(sum_{j of p} y_j)_p||_2``.
    """
    y = np.where(equalities, np.maximum(alpha, 0.0), 0.0)
    push = np.empty(rows.shape[0])
    kn.logits_one(rows, values, np.zeros(rows.shape[0]), y, push)  # -(M^T y)
    push = -push
    off = ~support
    low = float(push[off].min())
    if not low > 0.0:
        return None
    y /= low
    push /= low
    ys = y[rows[off]]  # [|off|, c]
    per_player = np.zeros((ys.shape[0], num_players))
    np.add.at(per_player, (slice(None), slot_player), ys)
    bound = eta * (st.col_factor[off] * np.sqrt(np.sum(ys * ys, axis=1)) + np.sqrt(np.sum(per_player ** 2, axis=1)))
    size = max(1.0, float(y.sum()) * float(np.abs(values).max(initial=0.0)))
    if not np.all(push[off] > SAFETY * bound + ROUNDING * size):
        return None
    return y


def slater_ok(rows: np.ndarray, values: np.ndarray, st: Structure, support: np.ndarray, equalities: np.ndarray,
              sigma: np.ndarray, active: np.ndarray, neg_inverse: np.ndarray, eta: float) -> bool:
    """True when a Slater point of the face (``x > 0`` on ``support``, ``(M x)_k < 0`` on every
    row not in ``equalities``) exists with margins that survive every perturbation of
    2-norm ``eta``.

    Args:
      sigma: ``[|A|]`` the face optimum (zero off ``support``).
      active: ``[K]`` the rows the implicit step holds at equality (not ``equalities``).
      neg_inverse: ``[|active|, |active|]`` ``-H_AA^{-1}``.
    """
    num_joint, num = rows.shape[0], active.shape[0]
    w = np.zeros(num)
    w[active] = neg_inverse.sum(axis=1)  # w_A = -H_AA^{-1} 1
    mw = np.empty(num_joint)
    kn.logits_one(rows, values, np.zeros(num_joint), w, mw)  # -(M^T w)
    step = -sigma * mw  # d = diag(sigma) M^T w, zero off the support
    mx = np.empty(num)
    rest = ~equalities
    shrink = mw > 0  # d_a < 0: x_a > 0 needs tau < 1 / max(mw)
    cap = 0.95 / float(mw[shrink].max()) if shrink.any() else 1.0
    size = ROUNDING * max(1.0, float(sigma.max()))
    for tau in cap * TAU_FRACTIONS:  # the active rows' margin grows with tau, the others' shrinks
        x = sigma + tau * step
        if np.any(x[support] <= 0.0) or np.any(x[~support] != 0.0):
            continue
        kn.expected_gains_one(rows, values, x, mx)  # M x, evaluated
        x_sq = np.bincount(st.touched_row, weights=(x * x)[st.touched_joint], minlength=num)
        bound = eta * st.row_factor[rest] * np.sqrt(x_sq[rest])
        if np.all(-mx[rest] > SAFETY * bound + size):
            return True
    return False
