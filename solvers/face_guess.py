"""Faces of hard-constraint games guessed from Newton's iterate and certified without an LP.

A hard-constraint game with ``eps_hat = 0`` whose Newton pass stalls (its duals drift to
infinity: the maximiser sits on a face of ``P = {sigma in simplex: M sigma <= 0}``) gets
``refine_batch``'s facial-reduction LP (``solvers.face.support_face``, ~1.5 ms of HiGHS
per 8x8 CE). Most such faces are those of iterated dominance, which ``solvers.face_cert``
guesses from the iterate and proves with Newton's own duals (``face_cert.guess_kernel``,
``face_cert.certificate_kernel``): this module tries that first, for a whole batch in one
compiled call, and the LP decides only where it fails.

The guess ``S`` (support) and ``E0`` (rows touching no joint of ``S``) are tried for the
joint-mass thresholds ``GUESS_MASSES`` from the largest, and the first whose certificate
holds is kept. The certificate ``y >= 0`` (zero off ``E0``, ``(M^T y)_a >= 1`` off ``S``,
``= 0`` on ``S`` structurally) proves that every feasible joint lives on ``S``
(``face_cert`` module docstring), so the problem restricted to ``S`` has the same
maximiser; it says nothing about ``S`` being minimal, which the restricted Newton pass
shows by converging (a guess that is too large leaves it short: the caller falls back to
the LP). ``y`` is the ``Face.certificate`` that ``solvers.face.lift_duals`` needs, and the
face claims no implicit equalities (as ``support_face``'s), so ``face.face_certified``
accepts it. No perturbation margin is asked for (``eta = 0``): only the rounding margin
``face_cert.ROUNDING``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from solvers import face_cert
from solvers.newton import OPTIMAL

__all__ = ["GAP", "GROW", "GUESS_MASSES", "MIN_MASS", "ROUNDS", "GuessedFaces", "guess_batch", "guess_faces",
           "solve_on_guessed_faces", "thresholds"]

#: Joint-mass thresholds tried, largest first: joints below one are guessed off the face
#: (the first that certifies wins). Of the 125 of 2,048 random 8x8 ME-CE games (seed 0)
#: that stall at 60 iterations, this list alone certifies 75 faces, with ``GAP``'s 92
#: (benchmarks/results/solvers_suite_ce_face.md).
GUESS_MASSES = np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8, 1e-10, 1e-12])
#: ... and a threshold inside every gap of at least this ratio between consecutive sorted
#: joint masses below the first of them (where the face's masses and the rest separate).
GAP = 1.0
#: ``solve_on_guessed_faces`` keeps a face where Newton's joint on it has no joint action
#: below this mass (``hybrid_nes.diff.forward.FACE_MASS``); else the guess may be larger than
#: the minimal face, and Newton converges on it only as on the full problem, its joint within
#: tol yet up to ~1e-6 from the face's (8x8 ME-CE, benchmarks/results/solvers_suite_ce_face.md).
MIN_MASS = 1e-8
#: Guesses per game: a face that is not interior is guessed inside again from its optimum.
ROUNDS = 3
#: Weight of the previous face's certificate in the next round's candidate duals (relative
#: to the largest dual).
GROW = 1e3


@njit(cache=True)
def thresholds(joint, masses, gap):
    """``masses`` and the geometric midpoint of every gap of more than ``gap`` (a ratio)
    between consecutive sorted masses of ``joint`` (half the upper one above a zero),
    largest first."""
    srt = np.sort(joint)
    out = list(masses)
    for i in range(srt.shape[0] - 1):
        lo, hi = srt[i], srt[i + 1]
        if hi > gap * lo:
            out.append(math.sqrt(hi * lo) if lo > 0.0 else 0.5 * hi)
    found = np.array(out)
    return -np.sort(-found)


@njit(cache=True)
def _guess_one(rows, values, touch, touched_row, touched_joint, touch_count, slot_player, num_players, col_factor,
               joint, alpha, masses, gap, rounding, off, prev, support, equalities, cert):
    """The first threshold (``thresholds``) whose guessed face is certified by ``alpha``:
    writes ``support [|A|]``, ``equalities [K]`` (``E0``) and ``cert [K]``; True if found.
    ``off, prev: [|A|]`` scratch."""
    num_joint = joint.shape[0]
    prev[:] = False
    tried = False
    cuts = thresholds(joint, masses, gap)
    for m in range(cuts.shape[0]):
        if not face_cert.guess_kernel(rows, touch, touched_row, touched_joint, touch_count, joint, cuts[m], off,
                                      equalities):
            continue
        same = tried
        for a in range(num_joint):
            if off[a] != prev[a]:
                same = False
            prev[a] = off[a]
        if same:
            continue  # the same face as the threshold before: already refused
        tried = True
        for a in range(num_joint):
            support[a] = not off[a]
        if face_cert.certificate_kernel(rows, values, slot_player, num_players, col_factor, support, equalities,
                                        alpha, 0.0, face_cert.SAFETY, rounding, cert):
            return True
    return False


@njit(cache=True)
def guess_batch(rows, values, touch, touched_row, touched_joint, touch_count, slot_player, num_players, col_factor,
                joint, alpha, masses, gap, rounding, support, equalities, cert, found):
    """``_guess_one`` of each game: ``values [B, |A|, c]``, ``joint [B, |A|]``,
    ``alpha [B, K]``; writes ``support [B, |A|]``, ``equalities, cert [B, K]``,
    ``found [B]``."""
    num_joint = joint.shape[1]
    off = np.empty(num_joint, dtype=np.bool_)
    prev = np.empty(num_joint, dtype=np.bool_)
    for b in range(joint.shape[0]):
        found[b] = _guess_one(rows, values[b], touch, touched_row, touched_joint, touch_count, slot_player,
                              num_players, col_factor, joint[b], alpha[b], masses, gap, rounding, off, prev, support[b],
                              equalities[b], cert[b])


def guess_faces(rows: np.ndarray, values: np.ndarray, st: face_cert.Structure, joint: np.ndarray,
                alpha: np.ndarray, masses: np.ndarray = GUESS_MASSES
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Faces of a batch guessed from Newton's iterates and certified by its duals.

    Args:
      rows: ``[|A|, c]`` the ELL layout; values: ``[B, |A|, c]`` gains (normalised,
        ``eps_hat = 0``); st: ``face_cert.structure`` of the layout.
      joint: ``[B, |A|]`` Newton's joints; alpha: ``[B, K]`` its duals.
      masses: thresholds tried, largest first.

    Returns:
      ``(found [B], support [B, |A|], equalities [B, K], certificate [B, K])``: where
      ``found``, every joint of the polytope is zero off ``support`` (proved by
      ``certificate``: ``>= 0``, zero off ``equalities``, ``M^T y = 0`` on the support and
      ``>= 1`` off it); ``equalities`` are the rows that touch no joint of the support.
    """
    num_games, num_joint = joint.shape
    num = alpha.shape[1]
    support = np.zeros((num_games, num_joint), dtype=np.bool_)
    equalities = np.zeros((num_games, num), dtype=np.bool_)
    cert = np.zeros((num_games, num))
    found = np.zeros(num_games, dtype=np.bool_)
    guess_batch(rows, np.ascontiguousarray(values), st.touch, st.touched_row, st.touched_joint, st.touch_count,
                st.slot_player, st.num_players, st.col_factor, np.ascontiguousarray(joint),
                np.ascontiguousarray(alpha), np.asarray(masses, dtype=np.float64), GAP, face_cert.ROUNDING, support,
                equalities, cert, found)
    return found, support, equalities, cert


class GuessedFaces(NamedTuple):
    """``solve_on_guessed_faces``' outcome for ``B`` games.

    Attributes:
      solved: ``[B]`` bool, Newton optimal on a certified face and interior to it.
      support: ``[B, |A|]``; certificate: ``[B, K]`` (the ``Face`` fields, valid where
        ``solved``); alpha: ``[B, K]`` the face's duals (where ``solved``);
      iterations: ``[B]`` Newton iterations spent on guessed faces (every game).
    """

    solved: np.ndarray
    support: np.ndarray
    certificate: np.ndarray
    alpha: np.ndarray
    iterations: np.ndarray


def solve_on_guessed_faces(rows: np.ndarray, values: np.ndarray, st: face_cert.Structure, base: np.ndarray,
                           joint: np.ndarray, alpha: np.ndarray, newton, rounds: int = ROUNDS,
                           min_mass: float = MIN_MASS) -> GuessedFaces:
    """Guess, certify and solve the face of each game, LP-free (``B`` games, ``eps_hat = 0``).

    Each round guesses a face (``guess_faces``) from the joint and duals, and runs
    ``newton(games, face_base, alpha0)`` (a Newton pass on the games ``games`` with base
    logits ``face_base [n, |A|]``, ``-inf`` off the face, returning a
    ``solvers.newton.DualSolveResult``) from the duals less the guessed equality rows. A
    game is solved where Newton is optimal and its joint has no action below ``min_mass``
    on the face. Where Newton is optimal on a face that is not interior, the guess was a
    face larger than the minimal one: the next round guesses inside it from Newton's joint
    and duals plus ``GROW`` times the face's certificate (which keeps the joints off the
    face covered; ``face_cert.certificate_kernel`` checks the sum, it does not trust it).

    Args:
      rows: ``[|A|, c]``; values: ``[B, |A|, c]``; st: ``face_cert.structure``;
      base: ``[B, |A|]`` the full problem's base logits; joint: ``[B, |A|]``, alpha:
        ``[B, K]`` the stalled Newton iterate.
    """
    num_games, num_joint = joint.shape
    out = GuessedFaces(np.zeros(num_games, dtype=bool), np.zeros((num_games, num_joint), dtype=bool),
                       np.zeros(alpha.shape), np.zeros(alpha.shape), np.zeros(num_games, dtype=np.int64))
    todo = np.arange(num_games)
    joint, alpha = np.array(joint, dtype=np.float64), np.array(alpha, dtype=np.float64)
    for _ in range(rounds):
        found, support, equalities, cert = guess_faces(rows, values[todo], st, joint[todo], alpha[todo])
        todo, support, equalities, cert = todo[found], support[found], equalities[found], cert[found]
        if todo.size == 0:
            break
        face_base = np.where(support, base[todo], -np.inf)
        res = newton(todo, face_base, np.where(equalities, 0.0, alpha[todo]))
        out.iterations[todo] += res.iterations
        optimal = res.status == OPTIMAL
        interior = np.min(np.where(support, res.joint, np.inf), axis=1) >= min_mass
        done = optimal & interior
        out.solved[todo[done]] = True
        out.support[todo[done]] = support[done]
        out.certificate[todo[done]] = cert[done]
        out.alpha[todo[done]] = res.alpha[done]
        again = optimal & ~interior
        todo, cert = todo[again], cert[again]
        joint[todo] = res.joint[again]
        scale = GROW * np.maximum(np.max(np.abs(res.alpha[again]), axis=1, keepdims=True), 1.0)
        alpha[todo] = np.maximum(res.alpha[again], 0.0) + scale * cert
    return out
