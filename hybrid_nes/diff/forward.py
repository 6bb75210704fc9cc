"""The forward solve of ``hybrid_nes.diff``: the exact solver in NumPy, run inside
``jax.pure_callback``, and the classification the implicit step needs.

Per game (normalised units, DESIGN §5):

1. The solver of ``solvers.solve``: its compiled single-game Newton (``solve_single``:
   gains, Newton, certificate in one call) where ``solvers.solve`` takes it, else, or when
   that is short of ``tol``, ``solvers.refine.refine_batch`` (first-order pass, facial
   reduction, CVXPY polish).
2. Hard constraints with a joint action below ``FACE_MASS`` and ``eps_hat = 0``: the face
   guessed from Newton's iterate and certified without an LP (``face_cert``: a
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

The result of a batch is one packed float array ``[..., packed_size]`` (joint, duals,
free, support, [flag, -H_FF^{-1} as ``[K, K]``], status): ``pure_callback`` converts each
input and output array separately (``benchmarks/results/diff_suite.md``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from hybrid_nes.diff import face_cert
from hybrid_nes.diff.face import cover_lp, face_lp, face_moves
from hybrid_nes.diff.linalg import free_hessian, psd_inverse
from hybrid_nes.diff.status import (
    DEGENERATE_ACTIVE_SET,
    FACE_CHANGE,
    INCONSISTENT,
    INFEASIBLE,
    NOT_OPTIMAL,
    OK,
    Config,
)
from solvers import kernels as kn
from solvers import policy as solver_policy
from solvers.face import Face
from solvers.gains import gain_layout
from solvers.game import CONSTANT_ULPS
from solvers.newton import OPTIMAL, NewtonOptions, newton_batch, options_array, solve_single
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
    noise: np.ndarray  # [N, |A|] the face-change direction (unit norm)
    structure: face_cert.Structure


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
    return _Plan(layout, fast, options_array(NewtonOptions(tol=cfg.tol, max_iter=first_cap)),
                 NewtonOptions(tol=cfg.tol, max_iter=cap), noise,
                 face_cert.structure(layout.rows, layout.dev, layout.slot_player, num))


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


def _refine(cfg: Config, flat, base, eps_hat, eps_plus, alpha0, method: str, face: str):
    num_players = flat.shape[0]
    params = SelectionParams(base[None], eps_hat[None], eps_plus[None], float(cfg.rho), "entropy")
    # Serial kernels: Numba's parallel layer, entered from XLA's callback thread, crashed
    # (segfault) in jax.vmap(jax.grad(...)) of a 3-game batch.
    res = refine_batch(flat.reshape((1, num_players) + cfg.shape), cfg.concept, params, alpha0, method,
                       cfg.tol, cfg.max_iter, face=face, polish=True, parallel=False)
    alpha = res.restricted_alpha[0] if res.face[0] else res.alpha[0]
    return res.status[0], res.joint[0].reshape(-1), alpha.copy(), bool(res.face[0])


def _on_face(cfg: Config, pl: _Plan, flat, values, base, eps_hat, eps_plus, face) -> tuple[object, np.ndarray,
                                                                                           np.ndarray]:
    """Projected Newton restricted to ``face`` from zero duals; ``refine_batch`` if short."""
    layout = pl.layout
    num = layout.num_constraints
    restricted = np.where(face.support, base, -np.inf)
    res = newton_batch(layout.rows, values[None], layout.player, restricted[None], eps_hat[None], eps_plus[None],
                       np.array([cfg.rho]), face.equalities[None], np.zeros((1, num)), pl.face_options,
                       parallel=False)
    if int(res.status[0]) == OPTIMAL:
        return Status.OPTIMAL, res.joint[0].reshape(-1), res.alpha[0].copy()
    status, joint, alpha, _ = _refine(cfg, flat, base, eps_hat, eps_plus, None, "auto", "always")
    return status, joint, alpha


def _solve_one(cfg: Config, pl: _Plan, flat, values, base, eps_hat, eps_plus, guess: str | None) -> _Found:
    layout = pl.layout
    eps_rows = eps_hat[layout.player]
    status = None
    on_face = False
    if pl.fast:
        alpha = np.zeros(layout.num_constraints)
        joint, _, _, stats = solve_single(layout.rows, layout.slot_player, layout.dev, layout.player, flat, base,
                                          eps_hat, eps_plus, float(cfg.rho), alpha, pl.first_opts)
        if int(stats[1]) == OPTIMAL:
            status = Status.OPTIMAL
        else:  # as solvers.solve: Newton on, with facial reduction first for hard constraints
            status, joint, alpha, on_face = _refine(cfg, flat, base, eps_hat, eps_plus, alpha[None], "newton",
                                                    "always" if cfg.hard else "never")
    else:
        status, joint, alpha, on_face = _refine(cfg, flat, base, eps_hat, eps_plus, None, "auto", "auto")
    if status is Status.INFEASIBLE:
        return _Found(INFEASIBLE, joint, alpha, None, None)
    if status is not Status.OPTIMAL:
        return _Found(NOT_OPTIMAL, joint, alpha, None, None)
    if not cfg.hard or (not on_face and joint.min() >= FACE_MASS):
        return _Found(OK, joint, alpha, None, None)
    if guess is not None and not on_face and not np.any(eps_hat):
        found = _guessed(cfg, pl, flat, values, base, eps_hat, eps_plus, joint, alpha, guess == "warm")
        if found is not None:
            return found
    try:
        face, basis = face_lp(layout.rows, values, eps_rows)
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


def _guessed(cfg: Config, pl: _Plan, flat, values, base, eps_hat, eps_plus, joint, alpha, warm: bool
             ) -> _Found | None:
    """The face guessed from Newton's iterate (``face_cert``), its support certified and
    Newton run on it (from Newton's duals if ``warm``, else from 0); None where the guess or
    its certificate fails (the LP decides)."""
    layout = pl.layout
    num = layout.num_constraints
    st = pl.structure
    guessed = face_cert.guess(layout.rows, st, joint, FACE_MASS)
    if guessed is None:  # no face in sight: _finish's Slater point must show it
        everything = Face(np.ones(joint.shape[0], dtype=bool), np.zeros(num, dtype=bool), np.zeros(num), True,
                          "guessed", 0.0)
        return _Found(OK, joint, alpha, everything, None, True)
    support, equalities = guessed
    eta = _eta(cfg, flat)
    cert = face_cert.certificate_ok(layout.rows, values, layout.slot_player, len(cfg.shape), st, support, equalities,
                                    alpha, eta)
    if cert is None:  # Newton's duals are not a certificate: the small covering LP
        cover = cover_lp(face_cert.off_block(layout.rows, values, support, equalities))
        if cover is None:
            return None
        full = np.zeros(num)
        full[equalities] = cover
        cert = face_cert.certificate_ok(layout.rows, values, layout.slot_player, len(cfg.shape), st, support,
                                        equalities, full, eta)
        if cert is None:
            return None
    face = Face(support, equalities, cert, True, "guessed", 0.0)
    restricted = np.where(support, base, -np.inf)
    # From Newton's duals less the equality rows (which touch no joint of the face): on
    # the face they are the face optimum up to the mass Newton left off it.
    start = np.where(equalities, 0.0, alpha)[None] if warm else np.zeros((1, num))
    res = newton_batch(layout.rows, values[None], layout.player, restricted[None], eps_hat[None], eps_plus[None],
                       np.array([cfg.rho]), equalities[None], start, pl.face_options, parallel=False)
    if int(res.status[0]) != OPTIMAL:
        return None
    return _Found(OK, res.joint[0].reshape(-1), res.alpha[0].copy(), face, None, True)


def _eta(cfg: Config, flat: np.ndarray) -> float:
    """2-norm of the face-change check's payoff perturbation (normalised units)."""
    return cfg.face_tol * float(np.linalg.norm(flat))


def _finish(cfg: Config, pl: _Plan, flat, values, base, eps_hat, eps_plus, found: _Found, out: np.ndarray) -> bool:
    """Writes the packed result of one game into ``out: [packed_size]``; False (``out``
    unspecified) where a guessed face fails its certificate (``face_cert.slater_ok``)."""
    layout = pl.layout
    num_joint, num = layout.rows.shape[0], layout.num_constraints
    out[:] = 0.0
    out[:num_joint] = found.joint
    out[num_joint:num_joint + num] = found.alpha
    out[num_joint + 2 * num:2 * num_joint + 2 * num] = 1.0  # support
    status = found.status
    if status != OK:
        out[-1] = status
        return not found.guessed
    equalities = np.zeros(num, dtype=bool)
    support = None
    if found.face is not None:
        support, equalities = found.face.support, found.face.equalities
        out[num_joint + 2 * num:2 * num_joint + 2 * num] = support
        if cfg.face_tol > 0 and not found.guessed:
            step = _eta(cfg, flat) * pl.noise
            moved = np.empty_like(values)

            def values_of(sign: float) -> np.ndarray:
                kn.gain_values_one(flat + sign * step, layout.slot_player, layout.dev, moved)
                return moved

            if face_moves(layout.rows, values_of, eps_hat[layout.player], found.face, found.basis):
                status = FACE_CHANGE
    # The duals must reproduce the joint (the KKT point the implicit step linearises).
    lg = np.empty(num_joint)
    kn.logits_one(layout.rows, values, base if support is None else np.where(support, base, -np.inf), found.alpha,
                  lg)
    recomputed = np.empty(num_joint)
    kn.softmax_one(lg, recomputed)
    if np.max(np.abs(recomputed - found.joint)) > max(1e3 * cfg.tol, 1e-8):
        out[-1] = INCONSISTENT
        return not found.guessed
    if cfg.hard:
        eps_now = eps_hat
    else:
        s = np.bincount(layout.player, weights=found.alpha, minlength=eps_hat.shape[0])
        eps_now = eps_plus - (eps_plus - eps_hat) * np.exp(-s / cfg.rho)
    expected = np.empty(num)
    kn.expected_gains_one(layout.rows, values, found.joint, expected)
    slack = eps_now[layout.player] - expected
    dtol = cfg.degenerate_tol
    active = ~equalities & (found.alpha > dtol)
    inactive = ~equalities & (found.alpha <= dtol) & (slack > dtol)
    free = equalities | active
    out[num_joint + num:num_joint + 2 * num] = free
    if status == OK and np.any(~free & ~inactive):
        status = DEGENERATE_ACTIVE_SET
    if found.guessed and status != OK:
        return False
    out[-1] = status
    # Rows that touch no joint of the face have a zero block in H: their duals are
    # unidentified and their derivative is 0 (the minimum-norm solution), so the block
    # inverted is F less those rows.
    solved = free
    if support is not None:
        solved = free & face_cert.touched(pl.structure, support)
    inv = None
    if np.any(solved) and (dense_adjoint(cfg) or found.guessed):
        hess = free_hessian(layout.rows, layout.slot_player, layout.dev, layout.player, cfg.rho, flat, found.joint,
                            found.alpha, eps_hat, eps_plus, solved)
        inv = psd_inverse(hess)
    if found.guessed:
        if np.any(solved) and inv is None:
            return False
        neg_inv = -inv if inv is not None else np.zeros((0, 0))
        if not face_cert.slater_ok(layout.rows, values, pl.structure, support, equalities, found.joint, solved,
                                   neg_inv, _eta(cfg, flat)):
            return False
    start = 2 * num_joint + 2 * num
    if dense_adjoint(cfg) and not np.any(solved):
        out[start] = 1.0  # nothing free: the adjoint is 0
    elif dense_adjoint(cfg) and inv is not None:
        out[start] = 1.0
        adj = out[start + 1:start + 1 + num * num].reshape(num, num)
        idx = np.flatnonzero(solved)
        adj[np.ix_(idx, idx)] = -inv
    return True


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
    if not np.all(np.isfinite(inputs[:, :cut])):
        raise ValueError("hybrid_nes.diff.solve: payoffs contain NaN or inf")
    if not np.all(np.isfinite(inputs[:, cut:cut + num_joint + num_players])):
        raise ValueError("hybrid_nes.diff.solve: selection parameters (target, welfare, mu, eps_hat) "
                         "contain NaN or inf")
    flats = inputs[:, :cut].reshape(num_games, num_players, num_joint)
    bases = np.ascontiguousarray(inputs[:, cut:cut + num_joint])
    eps_hats = np.ascontiguousarray(inputs[:, cut + num_joint:cut + num_joint + num_players])
    eps_pluses = np.ascontiguousarray(inputs[:, cut + num_joint + num_players:])
    out = np.zeros((num_games, packed_size(cfg)))
    values = np.empty(pl.layout.rows.shape)
    for b in range(num_games):
        flat, scale, _ = kn.normalise_one(np.ascontiguousarray(flats[b]), _TINY)
        if not np.all(np.isfinite(scale)):
            raise ValueError("hybrid_nes.diff.solve: payoffs overflow float64 when normalised")
        kn.gain_values_one(flat, pl.layout.slot_player, pl.layout.dev, values)
        args = (cfg, pl, flat, values, bases[b], eps_hats[b], eps_pluses[b])
        # A guessed face (face_cert), else the LPs: a face with implicit equalities among
        # the rows that touch it (a singular H_FF there, or a tight row with zero dual).
        for guess in ("warm", None):
            if _finish(*args, _solve_one(*args, guess=guess), out[b]):
                break
    return out.reshape(batch_shape + (out.shape[1],)).astype(dtype, copy=False)
