"""A face of the hard-constraint polytope certified without the facial-reduction LP.

With ``eps_hat = 0`` the (C)CE polytope is ``P = {sigma in simplex: M sigma <= 0}`` and
its minimal face is ``(S, E)``: the joints some point of ``P`` plays and the rows tight on
all of ``P`` (``solvers.face``). On random games the faces Newton runs into are those of
iterated dominance: ``S`` excludes whole actions and ``E`` is the rows whose joints all lie
off ``S`` (``E0``: the row touches no joint of ``S``). Such a face needs no facial-reduction
LP:

1. **Guess** it from Newton's iterate: the joints below a mass, closed so that every
   guessed-off joint is touched by a guessed equality row (``guess``).
2. **Support within S** (``certificate_ok``): ``y >= 0`` on ``E0`` (Newton's own duals on
   those rows, which diverge along such a direction, or the small covering LP
   ``cover_lp``) with ``(M^T y)_a >= 1`` off ``S``; ``(M^T y)_a = 0`` on ``S`` holds
   structurally (``E0`` rows do not touch ``S``). Every ``sigma`` in ``P`` has
   ``0 >= y^T M sigma = sum_a (M^T y)_a sigma_a``: zero off ``S``.
3. **Support S, equalities E0** (``slater_ok``): a point ``x >= 0`` zero off ``S``, ``x > 0``
   on ``S`` and ``(M x)_k < 0`` on every row touching ``S``, built from the face optimum
   ``sigma`` as ``x = sigma + tau diag(sigma) M_A^T w`` with ``H_AA w = -1`` (``A`` the active
   rows, ``H_AA`` the dual Hessian block the caller inverts anyway): the step makes the
   active rows strictly slack. ``x`` is exact to rounding: ``M x`` is evaluated, not assumed.

Both conditions are checked with margins against every payoff perturbation of 2-norm
``eta`` (relative ``face_tol`` in ``hybrid_nes.diff``, as its LP face-change check): a row
or joint whose margin beats the largest change ``eta * (coefficient norm)`` keeps its sign,
so ``y`` stays a certificate and ``x`` a Slater point, and the face of every such perturbed
game is ``(S, E0)``: a uniform version of the LP check's two random directions, with no LP.
Where a test does not pass, the caller falls back to the facial-reduction LP.

The checks are single-threaded Numba loops over the ELL layout of ``solvers.gains``
(``rows, values: [|A|, c]``, normalised units); nothing here imports JAX.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import highspy
import numpy as np
from numba import njit

from solvers import kernels as kn
from solvers.face import highs_instance, run_with_limit

__all__ = [
    "ROUNDING", "SAFETY", "TAU_FRACTIONS", "TAU_MULTIPLES", "Structure", "certificate_kernel", "certificate_ok", "cover_lp", "guess",
    "guess_kernel", "off_block", "slater_kernel", "slater_ok", "structure", "touched",
]

#: A margin must beat the perturbation bound (itself an upper bound) by this factor.
SAFETY = 1.0
#: Step sizes tried for the Slater point, as fractions of the largest that keeps ``x > 0``.
TAU_FRACTIONS = np.array([1.0, 0.5, 0.25, 0.125, 0.0625])
#: Then multiplicative steps ``x = sigma exp(tau M^T w)``, ``tau`` these multiples of that
#: largest additive step (8x8 CE seeds 13 and 1003 need 4x).
TAU_MULTIPLES = np.array([2.0, 4.0, 8.0, 16.0])
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
    slot_player: np.ndarray  # [c] the player of each slot
    num_players: int


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
    return Structure(touch, touch_count, r, a.copy(), np.sqrt(m_dev) + np.sqrt(m_src), np.sqrt(col), sp.copy(),
                     int(sp.max(initial=-1)) + 1)


def structure(rows: np.ndarray, dev: np.ndarray, slot_player: np.ndarray, num: int) -> Structure:
    """``Structure`` of a ``GainLayout`` (cached)."""
    as_key = functools.partial(np.ascontiguousarray, dtype=np.int64)
    return _structure(as_key(rows).tobytes(), as_key(dev).tobytes(), as_key(slot_player).tobytes(),
                      rows.shape[0], rows.shape[1], num)


@njit(cache=True)
def guess_kernel(rows, touch, touched_row, touched_joint, touch_count, joint, mass, off, eq):
    """``guess`` compiled: writes ``off [|A|]`` (``~support``) and ``eq [K]``; True when some
    joint is left off."""
    num_joint, width = rows.shape
    inside = np.empty(touch_count.shape[0], dtype=np.int64)
    for a in range(num_joint):
        off[a] = joint[a] < mass
    while True:
        _equalities(touched_row, touched_joint, touch_count, off, inside, eq)
        changed = False
        for a in range(num_joint):
            if not off[a]:
                continue
            covered = False
            for j in range(width):
                if touch[a, j] and eq[rows[a, j]]:
                    covered = True
                    break
            if not covered:
                off[a] = False
                changed = True
        if not changed:
            break
    for a in range(num_joint):
        if off[a]:
            return True
    return False


@njit(cache=True)
def _equalities(touched_row, touched_joint, touch_count, off, inside, eq):
    """``eq[k]``: every touching slot of row ``k`` lies on a joint in ``off`` (rows touching
    nothing, identically 0, included); ``inside: [K]`` scratch."""
    inside[:] = 0
    for t in range(touched_row.shape[0]):
        if off[touched_joint[t]]:
            inside[touched_row[t]] += 1
    for k in range(eq.shape[0]):
        eq[k] = inside[k] == touch_count[k]


def guess(rows: np.ndarray, st: Structure, joint: np.ndarray, mass: float) -> tuple[np.ndarray, np.ndarray] | None:
    """``(support [|A|], equalities [K])`` guessed from a joint: off the support the joints
    below ``mass`` that some guessed equality row touches; None when no joint is left off."""
    off = np.empty(rows.shape[0], dtype=np.bool_)
    eq = np.empty(st.touch_count.shape[0], dtype=np.bool_)
    if not guess_kernel(rows, st.touch, st.touched_row, st.touched_joint, st.touch_count, joint, mass, off, eq):
        return None
    return ~off, eq


@njit(cache=True)
def _touched_kernel(touched_row, touched_joint, mask, out):
    out[:] = False
    for t in range(touched_row.shape[0]):
        if mask[touched_joint[t]]:
            out[touched_row[t]] = True


def touched(st: Structure, mask: np.ndarray) -> np.ndarray:
    """``[K]`` the rows with a touching slot on a joint in ``mask [|A|]``."""
    out = np.empty(st.touch_count.shape[0], dtype=np.bool_)
    _touched_kernel(st.touched_row, st.touched_joint, mask, out)
    return out


def off_block(rows: np.ndarray, values: np.ndarray, support: np.ndarray, equalities: np.ndarray) -> np.ndarray:
    """``M[equalities, ~support]`` dense ``[|E|, |off|]`` (the covering LP's data)."""
    off = ~support
    num = equalities.shape[0]
    dense = np.zeros((num, int(off.sum())))
    cols = np.broadcast_to(np.arange(dense.shape[1])[:, None], (dense.shape[1], rows.shape[1]))
    np.add.at(dense, (rows[off], cols), values[off])
    return dense[equalities]


@njit(cache=True)
def certificate_kernel(rows, values, slot_player, num_players, col_factor, support, equalities, alpha, eta,
                        safety, rounding, y):
    """``certificate_ok`` compiled: writes ``y [K]``; True when it is a certificate."""
    num_joint, width = rows.shape
    num = alpha.shape[0]
    total = 0.0
    for k in range(num):
        y[k] = max(alpha[k], 0.0) if equalities[k] else 0.0
    push = np.empty(num_joint)
    low = np.inf
    for a in range(num_joint):
        acc = 0.0
        for j in range(width):
            acc += y[rows[a, j]] * values[a, j]
        push[a] = acc
        if not support[a] and acc < low:
            low = acc
    if not low > 0.0:
        return False
    big = 0.0
    for a in range(num_joint):
        for j in range(width):
            big = max(big, abs(values[a, j]))
    for k in range(num):
        y[k] /= low
        total += y[k]
    size = max(1.0, total * big)
    per_player = np.empty(num_players)
    for a in range(num_joint):
        if support[a]:
            continue
        sq = 0.0
        per_player[:] = 0.0
        for j in range(width):
            v = y[rows[a, j]]
            sq += v * v
            per_player[slot_player[j]] += v
        pp = 0.0
        for p in range(num_players):
            pp += per_player[p] * per_player[p]
        bound = eta * (col_factor[a] * math.sqrt(sq) + math.sqrt(pp))
        if not push[a] / low > safety * bound + rounding * size:
            return False
    return True


def certificate_ok(rows: np.ndarray, values: np.ndarray, st: Structure, support: np.ndarray,
                   equalities: np.ndarray, alpha: np.ndarray, eta: float) -> np.ndarray | None:
    """``y [K]`` (``>= 0``, zero off ``equalities``, ``(M^T y)_a >= 1`` off ``support``)
    from ``alpha``, valid for every perturbation of 2-norm ``eta``; None if it is not.

    The change of ``(M^T y)_a`` under a perturbation ``delta`` of the normalised payoffs is
    ``sum_j y_{rows[a, j]} (delta[p_j, dev[a, j]] - delta[p_j, a])``, at most ``eta`` times
    ``col_factor_a ||y_slots||_2 + ||(sum_{j of p} y_j)_p||_2``.
    """
    y = np.empty(alpha.shape[0])
    if not certificate_kernel(rows, values, st.slot_player, st.num_players, st.col_factor, support, equalities,
                               alpha, float(eta), SAFETY, ROUNDING, y):
        return None
    return y


@njit(cache=True)
def slater_kernel(rows, values, touched_row, touched_joint, row_factor, support, equalities, sigma, active,
                  neg_inverse, eta, safety, rounding, fractions, multiples):
    """``slater_ok`` compiled."""
    num_joint, width = rows.shape
    num = active.shape[0]
    w = np.zeros(num)
    i = 0
    for k in range(num):
        if active[k]:
            s = 0.0
            for j in range(neg_inverse.shape[1]):
                s += neg_inverse[i, j]
            w[k] = s  # w_A = -H_AA^{-1} 1
            i += 1
    mw = np.empty(num_joint)  # -(M^T w)
    top = -np.inf
    smax = 1.0
    for a in range(num_joint):
        acc = 0.0
        for j in range(width):
            acc -= w[rows[a, j]] * values[a, j]
        mw[a] = acc
        if acc > 0.0 and acc > top:
            top = acc
        smax = max(smax, sigma[a])
    cap = 0.95 / top if top > 0.0 else 1.0
    size = rounding * smax
    x = np.empty(num_joint)
    mx = np.empty(num)
    x_sq = np.empty(num)
    for f in range(fractions.shape[0]):
        tau = cap * fractions[f]  # the active rows' margin grows with tau, the others' shrink
        for a in range(num_joint):
            x[a] = sigma[a] + tau * (-sigma[a] * mw[a])  # d = diag(sigma) M^T w, zero off the support
        if _slater_margins(rows, values, touched_row, touched_joint, row_factor, support, equalities, x, eta, safety,
                           size, mx, x_sq):
            return True
    # The same direction as a multiplicative step, x = sigma exp(tau M^T w) (the ME joint at
    # the duals alpha - tau w, up to scale): positive on the support for every tau, so the
    # active rows' margins may grow past the cap of the additive step.
    for f in range(multiples.shape[0]):
        tau = cap * multiples[f]
        top = 1.0
        for a in range(num_joint):
            x[a] = sigma[a] * math.exp(-tau * mw[a])
            top = max(top, x[a])
        if _slater_margins(rows, values, touched_row, touched_joint, row_factor, support, equalities, x, eta, safety,
                           rounding * top, mx, x_sq):
            return True
    return False


@njit(cache=True)
def _slater_margins(rows, values, touched_row, touched_joint, row_factor, support, equalities, x, eta, safety, size,
                    mx, x_sq):
    """True when ``x`` is a Slater point of the face with margins beyond every perturbation
    of 2-norm ``eta`` (and ``size``); ``mx, x_sq: [K]`` scratch."""
    for a in range(x.shape[0]):
        if (support[a] and not x[a] > 0.0) or (not support[a] and x[a] != 0.0):
            return False
    kn.expected_gains_one(rows, values, x, mx)  # M x, evaluated
    x_sq[:] = 0.0
    for t in range(touched_row.shape[0]):
        xa = x[touched_joint[t]]
        x_sq[touched_row[t]] += xa * xa
    for k in range(mx.shape[0]):
        if not equalities[k] and not -mx[k] > safety * eta * row_factor[k] * math.sqrt(x_sq[k]) + size:
            return False
    return True


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
    return bool(slater_kernel(rows, values, st.touched_row, st.touched_joint, st.row_factor, support, equalities,
                               sigma, active, neg_inverse, float(eta), SAFETY, ROUNDING, TAU_FRACTIONS,
                               TAU_MULTIPLES))


def cover_lp(block: np.ndarray, time_limit: float = 1.0) -> np.ndarray | None:
    """``y >= 0`` of least sum with ``block^T y >= 1`` (``block: [R, J]`` dense), or None.

    The certificate LP where Newton's duals are not one: ``R`` rows that touch no joint of
    a guessed face, ``J`` the joints off it (a few dozen each at 8x8).
    """
    num_rows, num_joints = block.shape
    lp = highspy.HighsLp()
    lp.num_col_ = num_rows
    lp.num_row_ = num_joints
    lp.col_cost_ = np.ones(num_rows)
    lp.col_lower_ = np.zeros(num_rows)
    lp.col_upper_ = np.full(num_rows, highspy.kHighsInf)
    lp.row_lower_ = np.ones(num_joints)
    lp.row_upper_ = np.full(num_joints, highspy.kHighsInf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise  # column r of the LP matrix is row r of block
    lp.a_matrix_.start_ = np.arange(0, num_rows * num_joints + 1, num_joints, dtype=np.int32)
    lp.a_matrix_.index_ = np.tile(np.arange(num_joints, dtype=np.int32), num_rows)
    lp.a_matrix_.value_ = np.ascontiguousarray(block).reshape(-1)
    highs = highs_instance()
    highs.clearSolver()
    highs.setOptionValue("presolve", "off")
    highs.passModel(lp)
    run_with_limit(highs, time_limit)
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return np.maximum(np.asarray(highs.getSolution().col_value), 0.0)
