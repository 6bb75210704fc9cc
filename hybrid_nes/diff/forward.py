"""The forward solve of ``hybrid_nes.diff``: the exact solver in NumPy, run inside
``jax.pure_callback``, and the classification the implicit step needs.

Per game (normalised units, DESIGN §5):

1. The solver of ``solvers.solve``: its compiled single-game Newton (``solve_single``:
   gains, Newton, certificate in one call) where ``solvers.solve`` takes it, else, or when
   that is short of ``tol``, ``solvers.refine.refine_batch`` (first-order pass, facial
   reduction, CVXPY polish).
2. Hard constraints with a joint action below ``FACE_MASS`` and ``eps_hat = 0``: the face
   guessed from Newton's iterate and certified without an LP (``solvers.face_cert``: a
   certificate that the joints off it carry no mass, Newton on the face from Newton's own
   duals, and a Slater point of the face; both with margins against every payoff
   perturbation of relative size ``face_tol``, so no face-change LPs either). Newton may
   certify a face optimum without facial reduction, its duals drifting towards infinity;
   the implicit step needs the face.
3. Where that does not apply or a test fails (a face with implicit equalities among the
   rows that touch it, ``eps_hat != 0``, a margin below ``face_tol``): the
   facial-reduction LP (``hybrid_nes.diff.face``), projected Newton on a proper face (its
   implicit equalities sign-free, exact zeros off its support; ``refine_batch`` with
   ``face="always"`` where Newton is short of ``tol``), and the face-change check: the LP
   again for the payoffs moved by +/- a fixed random direction of relative size
   ``face_tol``, warm-started from the first LP's basis.
4. The duals must reproduce the joint (``INCONSISTENT`` otherwise), and the free rows
   ``F`` (implicit equalities, duals above ``degenerate_tol``) are those held at equality;
   a row with dual and slack both within ``degenerate_tol`` is ``DEGENERATE_ACTIVE_SET``.

5. Up to ``DENSE_ADJOINT_MAX`` duals, where the free block ``H_FF`` of the dual Hessian
   is well conditioned: ``-H_FF^{-1}``, so that the derivative is a product in JAX and
   needs no second callback (a singular block is solved in the derivative's own
   callback, ``implicit``). Free rows that touch no joint of the face (zero rows of
   ``H``) are left out of the block: their derivative is 0, the minimum-norm solution.

Steps 2, 4 and 5 run as compiled kernels (``_guess_face``, ``_finish_kernel``): on the
loaded CPU their NumPy versions cost about the solve itself on 8x8 CE face games. The
solver's answer (step 1) is computed once per game and shared by both tries (guessed
face, then the LPs).

The result of a batch is one packed float array ``[..., packed_size]`` (joint, duals,
free, support, [flag, -H_FF^{-1} as ``[K, K]``], status): ``pure_callback`` converts each
input and output array separately (``benchmarks/results/diff_suite.md``).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numba
import numpy as np

from hybrid_nes.diff.face import face_lp, face_moves
from hybrid_nes.diff.linalg import CHOLESKY_MIN_PIVOT, inverse_kernel
from hybrid_nes.diff.numba_cache import key_on_sources
from hybrid_nes.diff.status import (
    DEGENERATE_ACTIVE_SET,
    FACE_CHANGE,
    INCONSISTENT,
    INFEASIBLE,
    NOT_OPTIMAL,
    OK,
    Config,
)
from solvers import face_cert
from solvers import kernels as kn
from solvers import policy as solver_policy
from solvers.face import Face
from solvers.gains import gain_layout
from solvers.game import CONSTANT_ULPS
from solvers.newton import OPTIMAL, NewtonOptions, newton_one, options_array, solve_single
from solvers.policy import auto_first_pass, newton_plan
from solvers.refine import refine_batch
from solvers.selection import SelectionParams
from solvers.solution import Status

__all__ = ["DENSE_ADJOINT_MAX", "FACE_MASS", "dense_adjoint", "forward", "packed_size", "packed_sizes"]

#: Hard constraints: a certified joint with an action below this mass gets the face LP.
FACE_MASS = 1e-8
#: The forward returns ``-H_FF^{-1}`` as a ``[K, K]`` block up to this many duals ``K``.
DENSE_ADJOINT_MAX = 128
#: ``solvers.game.normalise``'s constant-player threshold (relative spread).
_TINY = CONSTANT_ULPS * float(np.finfo(np.float64).eps)


class _Plan(NamedTuple):
    """What a configuration needs on every call, computed once (``plan``)."""

    layout: object  # solvers.gains.GainLayout
    fast: bool  # solvers.solve's compiled single-game path applies
    first_opts: np.ndarray  # Newton options of that path's first pass
    face_options: NewtonOptions  # Newton on a face
    face_opts: np.ndarray  # the same as an options array (solvers.newton.options_array)
    noise: np.ndarray  # [N, |A|] the face-change direction (unit norm)
    structure: face_cert.Structure
    sizes: tuple[int, ...]  # packed_sizes
    dense: bool  # dense_adjoint
    everything: tuple[np.ndarray, np.ndarray]  # (support, equalities) of no face: all joints, no rows


@functools.lru_cache(maxsize=64)
def plan(cfg: Config) -> _Plan:
    layout = gain_layout(cfg.shape, cfg.concept)
    num = layout.num_constraints
    num_players = len(cfg.shape)
    pol = solver_policy.DEFAULT_POLICY
    fast = (auto_first_pass(cfg.concept, num_players, num, cfg.hard) == 0 and num <= pol.newton_max_duals
            and newton_plan(cfg.shape, cfg.concept).fits)
    cap = cfg.max_iter if cfg.max_iter is not None else NewtonOptions().max_iter
    first_cap = min(cap, pol.face_after) if cfg.hard else cap
    noise = np.random.default_rng(0).standard_normal((num_players,) + cfg.shape).reshape(num_players, -1)
    noise /= max(float(np.linalg.norm(noise)), 1e-300)
    face_options = NewtonOptions(tol=cfg.tol, max_iter=cap)
    return _Plan(layout, fast, options_array(NewtonOptions(tol=cfg.tol, max_iter=first_cap)), face_options,
                 options_array(face_options), noise, face_cert.structure(layout.rows, layout.dev, layout.slot_player, num),
                 packed_sizes(cfg), dense_adjoint(cfg),
                 (np.ones(layout.rows.shape[0], dtype=bool), np.zeros(num, dtype=bool)))


def dense_adjoint(cfg: Config) -> bool:
    """Whether the forward returns ``-H_FF^{-1}`` (``DENSE_ADJOINT_MAX``)."""
    return gain_layout(cfg.shape, cfg.concept).num_constraints <= DENSE_ADJOINT_MAX


def packed_sizes(cfg: Config) -> tuple[int, ...]:
    """Sizes of the packed fields: joint, alpha, free, support, flag, adjoint, status."""
    num_joint = int(np.prod(cfg.shape))
    num = gain_layout(cfg.shape, cfg.concept).num_constraints
    dense = dense_adjoint(cfg)
    return (num_joint, num, num, num_joint, int(dense), num * num if dense else 0, 1)


def packed_size(cfg: Config) -> int:
    return sum(packed_sizes(cfg))


class _Found(NamedTuple):
    status: int  # OK, or NOT_OPTIMAL / INFEASIBLE
    joint: np.ndarray
    alpha: np.ndarray
    face: object  # solvers.face.Face or None (interior)
    basis: object  # HiGHS basis of the face LP, or None
    guessed: bool = False  # face from face_cert.guess: _finish must certify it (slater_ok)


class _First(NamedTuple):
    """The solver's answer before any face work (``_first``), shared by both tries."""

    status: Status
    joint: np.ndarray
    alpha: np.ndarray
    on_face: bool


def _refine(cfg: Config, flat, base, eps_hat, eps_plus, alpha0, method: str, face: str):
    num_players = flat.shape[0]
    params = SelectionParams(base[None], eps_hat[None], eps_plus[None], float(cfg.rho), "entropy")
    # Serial kernels: Numba's parallel layer, entered from XLA's callback thread, crashed
    # (segfault) in jax.vmap(jax.grad(...)) of a 3-game batch.
    res = refine_batch(flat.reshape((1, num_players) + cfg.shape), cfg.concept, params, alpha0, method,
                       cfg.tol, cfg.max_iter, face=face, polish=True, parallel=False)
    alpha = res.restricted_alpha[0] if res.face[0] else res.alpha[0]
    return res.status[0], res.joint[0].reshape(-1), alpha.copy(), bool(res.face[0])


@numba.njit(cache=True)
def _face_newton(rows, values, player, base, eps_hat, eps_plus, rho, support, equalities, start, opts, joint, alpha):
    """Projected Newton restricted to ``support`` (zero elsewhere), ``equalities``
    sign-free, from ``start``: writes ``joint [|A|]``, ``alpha [K]``; True when optimal.
    ``opts``: ``solvers.newton.options_array``."""
    restricted = np.empty(base.shape[0])
    for a in range(base.shape[0]):
        restricted[a] = base[a] if support[a] else -np.inf
    alpha[:] = start
    out = newton_one(rows, values, player, restricted, eps_hat, eps_plus, rho, equalities, alpha, opts[0],
                     int(opts[1]), opts[2], opts[3], opts[4], opts[5], opts[6], opts[7], opts[8], opts[9], opts[10],
                     opts[11], int(opts[12]), joint)
    return int(out[1]) == OPTIMAL


def _newton_on(cfg: Config, pl: _Plan, values, base, eps_hat, eps_plus, support, equalities, start):
    """``(optimal, joint, alpha)`` of ``_face_newton`` on one game."""
    layout = pl.layout
    joint = np.empty(layout.rows.shape[0])
    alpha = np.empty(layout.num_constraints)
    optimal = _face_newton(layout.rows, values, layout.player, base, eps_hat, eps_plus, float(cfg.rho), support,
                           equalities, start, pl.face_opts, joint, alpha)
    return optimal, joint, alpha


def _on_face(cfg: Config, pl: _Plan, flat, values, base, eps_hat, eps_plus, face) -> tuple[object, np.ndarray,
                                                                                           np.ndarray]:
    """Projected Newton restricted to ``face`` from zero duals; ``refine_batch`` if short."""
    optimal, joint, alpha = _newton_on(cfg, pl, values, base, eps_hat, eps_plus, face.support, face.equalities,
                                       np.zeros(pl.layout.num_constraints))
    if optimal:
        return Status.OPTIMAL, joint, alpha
    status, joint, alpha, _ = _refine(cfg, flat, base, eps_hat, eps_plus, None, "auto", "always")
    return status, joint, alpha


def _first(cfg: Config, pl: _Plan, flat, base, eps_hat, eps_plus) -> _First:
    """The solver of ``solvers.solve``: its compiled Newton, ``refine_batch`` where short."""
    layout = pl.layout
    if pl.fast:
        alpha = np.zeros(layout.num_constraints)
        joint, _, _, stats = solve_single(layout.rows, layout.slot_player, layout.dev, layout.player, flat, base,
                                          eps_hat, eps_plus, float(cfg.rho), alpha, pl.first_opts)
        if int(stats[1]) == OPTIMAL:
            return _First(Status.OPTIMAL, joint, alpha, False)
        # as solvers.solve: Newton on, with facial reduction first for hard constraints,
        # and from zero where the duals the first pass drifted to fall short on the face
        # (solvers.refine's face restart).
        face = "always" if cfg.hard else "never"
        first = _First(*_refine(cfg, flat, base, eps_hat, eps_plus, alpha[None], "newton", face))
        if first.status is Status.OPTIMAL or not cfg.hard:
            return first
        return _First(*_refine(cfg, flat, base, eps_hat, eps_plus, None, "newton", face))
    return _First(*_refine(cfg, flat, base, eps_hat, eps_plus, None, "auto", "auto"))


def _solve_one(cfg: Config, pl: _Plan, flat, values, base, eps_hat, eps_plus, first: _First | None = None, *,
               guess: str | None) -> _Found:
    """The forward's solve of one game: ``first`` (``_first``, computed here if None),
    then on a face the guessed face (``guess``: ``"warm"``) or the LPs (None)."""
    layout = pl.layout
    if first is None:
        first = _first(cfg, pl, flat, base, eps_hat, eps_plus)
    status, joint, alpha, on_face = first
    if status is Status.INFEASIBLE:
        return _Found(INFEASIBLE, joint, alpha, None, None)
    if status is not Status.OPTIMAL:
        return _Found(NOT_OPTIMAL, joint, alpha, None, None)
    if not cfg.hard or (not on_face and joint.min() >= FACE_MASS):
        return _Found(OK, joint, alpha, None, None)
    if guess is not None and not on_face and not np.any(eps_hat):
        found = _guessed(cfg, pl, values, base, eps_hat, eps_plus, joint, alpha, _eta(cfg, flat), guess == "warm")
        if found is not None:
            return found
    try:
        face, basis = face_lp(layout.rows, values, eps_hat[layout.player])
    except RuntimeError:
        return _Found(NOT_OPTIMAL, joint, alpha, None, None)
    if not face.feasible:
        return _Found(INFEASIBLE, joint, alpha, None, None)
    if on_face:
        return _Found(OK, joint, alpha, face, basis)
    if np.all(face.support):
        return _Found(OK, joint, alpha, None, None)
    status, joint, alpha = _on_face(cfg, pl, flat, values, base, eps_hat, eps_plus, face)
    if status is Status.INFEASIBLE:
        return _Found(INFEASIBLE, joint, alpha, None, None)
    if status is not Status.OPTIMAL:
        return _Found(NOT_OPTIMAL, joint, alpha, None, None)
    return _Found(OK, joint, alpha, face, basis)


#: ``_guess_face`` outcomes.
_NO_FACE, _CERTIFIED, _COVER, _NOT_OPTIMAL = range(4)


@numba.njit(cache=True)
def _guess_face(rows, values, player, base, eps_hat, eps_plus, rho, joint, alpha, touch, touched_row, touched_joint,
                touch_count, slot_player, num_players, col_factor, mass, eta, safety, rounding, warm, opts, support,
                equalities, cert, face_joint, face_alpha):
    """``face_cert``'s guess and certificate from Newton's iterate, then Newton on the face,
    compiled: writes ``support``, ``equalities``, ``cert`` and the face optimum; returns
    ``_NO_FACE`` (no joint left off), ``_COVER`` (Newton's duals are not a certificate),
    ``_NOT_OPTIMAL`` (Newton on the face fell short) or ``_CERTIFIED``."""
    if not face_cert.guess_kernel(rows, touch, touched_row, touched_joint, touch_count, joint, mass, support,
                                  equalities):
        return _NO_FACE
    for a in range(support.shape[0]):
        support[a] = not support[a]
    if not face_cert.certificate_kernel(rows, values, slot_player, num_players, col_factor, support, equalities,
                                        alpha, eta, safety, rounding, cert):
        return _COVER
    # From Newton's duals less the equality rows (which touch no joint of the face): on
    # the face they are the face optimum up to the mass Newton left off it.
    start = np.zeros(alpha.shape[0])
    if warm:
        for k in range(alpha.shape[0]):
            start[k] = 0.0 if equalities[k] else alpha[k]
    if not _face_newton(rows, values, player, base, eps_hat, eps_plus, rho, support, equalities, start, opts,
                        face_joint, face_alpha):
        return _NOT_OPTIMAL
    return _CERTIFIED


def _guessed(cfg: Config, pl: _Plan, values, base, eps_hat, eps_plus, joint, alpha, eta: float, warm: bool
             ) -> _Found | None:
    """The face guessed from Newton's iterate (``face_cert``), its support certified and
    Newton run on it (from Newton's duals if ``warm``, else from 0); None where the guess or
    its certificate fails (the LP decides)."""
    layout = pl.layout
    num_joint, num = layout.rows.shape[0], layout.num_constraints
    st = pl.structure
    support = np.empty(num_joint, dtype=bool)
    equalities = np.empty(num, dtype=bool)
    cert = np.empty(num)
    face_joint = np.empty(num_joint)
    face_alpha = np.empty(num)
    code = _guess_face(layout.rows, values, layout.player, base, eps_hat, eps_plus, float(cfg.rho), joint, alpha,
                       st.touch, st.touched_row, st.touched_joint, st.touch_count, st.slot_player, st.num_players,
                       st.col_factor, FACE_MASS, eta, face_cert.SAFETY, face_cert.ROUNDING, warm, pl.face_opts,
                       support, equalities, cert, face_joint, face_alpha)
    if code == _NO_FACE:  # no face in sight: _finish's Slater point must show it
        everything = Face(np.ones(num_joint, dtype=bool), np.zeros(num, dtype=bool), np.zeros(num), True,
                          "guessed", 0.0)
        return _Found(OK, joint, alpha, everything, None, True)
    if code == _COVER:  # Newton's duals are not a certificate: the small covering LP
        cover = face_cert.cover_lp(face_cert.off_block(layout.rows, values, support, equalities))
        if cover is None:
            return None
        full = np.zeros(num)
        full[equalities] = cover
        cert = face_cert.certificate_ok(layout.rows, values, st, support, equalities, full, eta)
        if cert is None:
            return None
        start = np.where(equalities, 0.0, alpha) if warm else np.zeros(num)
        optimal, face_joint, face_alpha = _newton_on(cfg, pl, values, base, eps_hat, eps_plus, support, equalities,
                                                     start)
        code = _CERTIFIED if optimal else _NOT_OPTIMAL
    if code == _NOT_OPTIMAL:
        return None
    return _Found(OK, face_joint, face_alpha, Face(support, equalities, cert, True, "guessed", 0.0), None, True)


@numba.njit(cache=True)
def _eta_kernel(flat, face_tol):
    """``face_tol`` times the 2-norm of ``flat [N, |A|]`` (one loop: the FFI kernel computes
    the same bits)."""
    total = 0.0
    for p in range(flat.shape[0]):
        for a in range(flat.shape[1]):
            total += flat[p, a] * flat[p, a]
    return face_tol * math.sqrt(total)


def _eta(cfg: Config, flat: np.ndarray) -> float:
    """2-norm of the face-change check's payoff perturbation (normalised units)."""
    return _eta_kernel(flat, float(cfg.face_tol))


@numba.njit(cache=True)
def _classify(rows, values, player, base, support, equalities, alpha, joint, eps_hat, eps_plus, rho, dtol,
              consistency, touched_row, touched_joint, on_face, with_hessian, free, solved):
    """The forward's checks on one game, compiled: writes the free rows ``free [K]`` and the
    rows of the block to invert ``solved [K]`` (``free``, on a face less the rows that touch
    no joint of ``support``); returns ``(consistent, degenerate, H_solved)``.

    ``consistent``: ``sigma(alpha)`` (restricted to ``support``) reproduces ``joint`` within
    ``consistency``; ``degenerate``: some row is neither free nor strictly slack
    (``DEGENERATE_ACTIVE_SET``); ``H_solved``: the dual Hessian block on ``solved`` (as
    ``linalg.free_hessian``; ``[0, 0]`` unless ``with_hessian``).
    """
    num_joint, width = rows.shape
    num = alpha.shape[0]
    num_players = eps_hat.shape[0]
    restricted = np.empty(num_joint)
    for a in range(num_joint):
        restricted[a] = base[a] if support[a] else -np.inf
    lg = np.empty(num_joint)
    kn.logits_one(rows, values, restricted, alpha, lg)
    recomputed = np.empty(num_joint)
    kn.softmax_one(lg, recomputed)
    for a in range(num_joint):
        if abs(recomputed[a] - joint[a]) > consistency:
            return False, False, np.zeros((0, 0))
    ssum = np.zeros(num_players)
    for k in range(num):
        ssum[player[k]] += alpha[k]
    expected = np.empty(num)
    kn.expected_gains_one(rows, values, joint, expected)
    degenerate = False
    for k in range(num):
        p = player[k]
        eps_now = eps_hat[p] if rho == np.inf else eps_plus[p] - (eps_plus[p] - eps_hat[p]) * math.exp(-ssum[p] / rho)
        slack = eps_now - expected[k]
        active = not equalities[k] and alpha[k] > dtol
        inactive = not equalities[k] and alpha[k] <= dtol and slack > dtol
        free[k] = equalities[k] or active
        if not free[k] and not inactive:
            degenerate = True
    # Rows that touch no joint of the face have a zero block in H: their duals are
    # unidentified and their derivative is 0 (the minimum-norm solution).
    reach = np.full(num, not on_face)
    for t in range(touched_row.shape[0]):
        if on_face and support[touched_joint[t]]:
            reach[touched_row[t]] = True
    pos = np.full(num, -1, dtype=np.int64)
    count = 0
    for k in range(num):
        solved[k] = free[k] and reach[k]
        if solved[k]:
            pos[k] = count
            count += 1
    if not with_hessian or count == 0:
        return True, degenerate, np.zeros((0, 0))
    curv = np.empty(num_players)
    kn.curvature_one(ssum, eps_hat, eps_plus, rho, curv)
    hess = np.empty((count, count))
    kn.hessian_one(rows, values, player, joint, expected, curv, pos, hess, np.empty(count, dtype=np.int64),
                   np.empty(width, dtype=np.int64), np.empty(width))
    return True, degenerate, hess


@numba.njit(cache=True)
def _finish_kernel(rows, values, player, base, eps_hat, eps_plus, rho, joint, alpha, support, equalities, on_face,
                   guessed, status, dense, dtol, consistency, min_pivot, touched_row, touched_joint, row_factor, eta,
                   safety, rounding, fractions, multiples, out):
    """``_finish`` from the classification on, compiled (``out`` holds joint and duals)."""
    num_joint, num = rows.shape[0], alpha.shape[0]
    out[:] = 0.0
    out[:num_joint] = joint
    out[num_joint:num_joint + num] = alpha
    for a in range(num_joint):
        out[2 * num + num_joint + a] = 1.0 if support[a] else 0.0
    free = np.empty(num, dtype=np.bool_)
    solved = np.empty(num, dtype=np.bool_)
    consistent, degenerate, hess = _classify(rows, values, player, base, support, equalities, alpha, joint, eps_hat,
                                             eps_plus, rho, dtol, consistency, touched_row, touched_joint, on_face,
                                             dense or guessed, free, solved)
    if not consistent:
        out[-1] = INCONSISTENT
        return not guessed
    for k in range(num):
        out[num_joint + num + k] = 1.0 if free[k] else 0.0
    if status == OK and degenerate:
        status = DEGENERATE_ACTIVE_SET
    if guessed and status != OK:
        return False
    out[-1] = status
    n = hess.shape[0]
    inv = np.empty((n, n))
    inverted = n > 0 and inverse_kernel(hess, min_pivot, inv)
    if guessed:
        if n > 0 and not inverted:
            return False
        if not face_cert.slater_kernel(rows, values, touched_row, touched_joint, row_factor, support, equalities,
                                       joint, solved, -inv, eta, safety, rounding, fractions, multiples):
            return False
    start = 2 * num_joint + 2 * num
    if dense and (n == 0 or inverted):
        out[start] = 1.0  # with nothing free the adjoint is 0
        idx = np.flatnonzero(solved)
        for i in range(n):
            for j in range(n):
                out[start + 1 + idx[i] * num + idx[j]] = -inv[i, j]
    return True


def _finish(cfg: Config, pl: _Plan, flat, values, base, eps_hat, eps_plus, found: _Found, out: np.ndarray,
            eta: float | None = None) -> bool:
    """Writes the packed result of one game into ``out: [packed_size]``; False (``out``
    unspecified) where a guessed face fails its certificate (``face_cert.slater_ok``)."""
    layout = pl.layout
    num_joint, num = layout.rows.shape[0], layout.num_constraints
    status = found.status
    if status != OK:
        out[:] = 0.0
        out[:num_joint] = found.joint
        out[num_joint:num_joint + num] = found.alpha
        out[num_joint + 2 * num:2 * num_joint + 2 * num] = 1.0  # support
        out[-1] = status
        return not found.guessed
    if eta is None:
        eta = _eta(cfg, flat)
    if found.face is None:
        support, equalities = pl.everything
    else:
        support, equalities = found.face.support, found.face.equalities
        if cfg.face_tol > 0 and not found.guessed:
            step = eta * pl.noise
            moved = np.empty_like(values)

            def values_of(sign: float) -> np.ndarray:
                kn.gain_values_one(flat + sign * step, layout.slot_player, layout.dev, moved)
                return moved

            if face_moves(layout.rows, values_of, eps_hat[layout.player], found.face, found.basis):
                status = FACE_CHANGE
    st = pl.structure
    # The duals must reproduce the joint (the KKT point the implicit step linearises), and
    # the free rows F are those held at equality.
    return _finish_kernel(layout.rows, values, layout.player, base, eps_hat, eps_plus, float(cfg.rho), found.joint,
                          found.alpha, support, equalities, found.face is not None, found.guessed, status, pl.dense,
                          float(cfg.degenerate_tol), max(1e3 * cfg.tol, 1e-8), CHOLESKY_MIN_PIVOT, st.touched_row,
                          st.touched_joint, st.row_factor, eta, face_cert.SAFETY, face_cert.ROUNDING,
                          face_cert.TAU_FRACTIONS, face_cert.TAU_MULTIPLES, out)


def forward(cfg: Config, dtype, inputs) -> np.ndarray:
    """The packed forward result of a batch (any leading dims: ``vmap_method="broadcast_all"``).

    Args:
      inputs: ``[..., N |A| + |A| + 2N]`` the raw payoffs ``[N, A1..AN]`` (normalised here
        as ``solvers.solve`` does), then the resolved selection (normalised units):
        ``base [|A|]``, ``eps_hat [N]``, ``eps_plus [N]``.

    Returns:
      ``[..., packed_size]`` of ``dtype`` (fields: ``packed_sizes``).
    """
    pl = plan(cfg)
    num_players = len(cfg.shape)
    num_joint = pl.layout.rows.shape[0]
    inputs = np.asarray(inputs, dtype=np.float64)
    batch_shape = inputs.shape[:-1]
    num_games = int(np.prod(batch_shape)) if batch_shape else 1
    inputs = inputs.reshape(num_games, -1)
    cut = num_players * num_joint
    if not np.isfinite(inputs[:, :cut + num_joint + num_players]).all():
        if not np.isfinite(inputs[:, :cut]).all():
            raise ValueError("hybrid_nes.diff.solve: payoffs contain NaN or inf")
        raise ValueError("hybrid_nes.diff.solve: selection parameters (target, welfare, mu, eps_hat) "
                         "contain NaN or inf")
    flats = inputs[:, :cut].reshape(num_games, num_players, num_joint)
    bases = np.ascontiguousarray(inputs[:, cut:cut + num_joint])
    eps_hats = np.ascontiguousarray(inputs[:, cut + num_joint:cut + num_joint + num_players])
    eps_pluses = np.ascontiguousarray(inputs[:, cut + num_joint + num_players:])
    out = np.zeros((num_games, sum(pl.sizes)))
    values = np.empty(pl.layout.rows.shape)
    for b in range(num_games):
        flat, scale, _ = kn.normalise_one(np.ascontiguousarray(flats[b]), _TINY)
        if not kn.all_finite(scale):
            raise ValueError("hybrid_nes.diff.solve: payoffs overflow float64 when normalised")
        kn.gain_values_one(flat, pl.layout.slot_player, pl.layout.dev, values)
        args = (cfg, pl, flat, values, bases[b], eps_hats[b], eps_pluses[b])
        first = _first(cfg, pl, flat, bases[b], eps_hats[b], eps_pluses[b])
        eta = _eta(cfg, flat)
        # A guessed face (face_cert), else the LPs: a face with implicit equalities among
        # the rows that touch it (a singular H_FF there, or a tight row with zero dual).
        for guess in ("warm", None):
            if _finish(*args, _solve_one(*args, first, guess=guess), out[b], eta):
                break
    return out.reshape(batch_shape + (out.shape[1],)).astype(dtype, copy=False)


key_on_sources(globals())  # numba_cache: cached kernels follow every source they compile in
