"""Hard-constraint CEs solved on the game without its strictly dominated actions.

A related game's solution (``solvers.related``) says which actions an equilibrium leaves
unplayed. Where those are strictly dominated in the new game (``solvers.dominance``, the
previous solution's duals as the hint, an LP otherwise), every CE of the new game lives
on the remaining sub-grid of joint actions, and the deviations to the eliminated actions
are implied: the ME/MRE CE of the full game is that of the smaller game, padded with
zeros (the sub-grid of the 21x66 evaluation game is 13 x 13 x 66, 38% of its joints).

The sub-game is solved by ``newton_cg`` (a cold start: on that game the carried duals
took more Newton iterations, benchmarks/results/related_suite.md), and its duals are
lifted to the full game (``lift``): each eliminated action ``d`` of player ``p`` gets
``lambda * w`` on its rows ``(p, dev -> d)`` (``w`` its dominating mixture), with
``lambda`` the least that puts every joint action playing ``d`` at least ``LIFT_SLACK``
below the largest logit of the sub-grid. The answer is certified on the FULL game
(``newton_cg.certify``: violation, KKT residual and duality gap within ``tol``, the same
certificate as any solve); when that fails, Newton goes on on the full game from the
lifted duals (``Attempt.path`` says which ran).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from solvers.dominance import Elimination, eliminate
from solvers.game import NormalisedGame
from solvers.selection import SelectionParams

__all__ = ["Attempt", "ELIMINATION_LPS", "RESTRICT_FRACTION", "RESTRICT_MASS", "LIFT_SLACK", "attempt", "candidates", "lift",
           "sub_rows"]

#: Candidates for elimination: actions whose marginal in the previous joint is at most this.
RESTRICT_MASS = 1e-9
#: The route is taken only when the sub-grid holds at most this fraction of the joints
#: (each Newton iteration is cheaper by about the ratio; the dense factor of the free rows
#: is not). At 0.73 (21x66 evaluation games, seeds 2 and 4) it was still as fast as the
#: carried duals or faster (benchmarks/results/related_suite.md, other seeds).
RESTRICT_FRACTION = 0.8
#: At most this many dominance LPs per attempt (~20 ms each on the 21x66 evaluation game,
#: which needs 2: the previous duals' mixtures prove the other 14 eliminations); beyond
#: them a candidate is eliminated only where its hint proves it.
ELIMINATION_LPS = 8
#: Lifted duals put the eliminated actions' joints this far (in logits) below the largest
#: logit of the sub-grid: their mass is below ``|A| exp(-LIFT_SLACK)``.
LIFT_SLACK = 60.0


class Attempt(NamedTuple):
    """What ``attempt`` did: ``result`` (a ``refine.DualResult`` of the full game),
    ``path`` ("restricted": the lifted sub-game duals certified; "restricted→full": Newton
    went on on the full game), ``optimal``, ``info`` (for ``Solution.info``)."""

    result: object
    path: str
    optimal: bool
    info: dict


def candidates(previous_joint: np.ndarray, maps: Sequence[np.ndarray], mass: float = RESTRICT_MASS) -> list[np.ndarray]:
    """Per player, the new game's actions that carry over (``maps[p][j] >= 0``) and have
    marginal ``<= mass`` in the previous joint ``[old A1..AN]``."""
    joint = np.asarray(previous_joint, dtype=np.float64)
    out = []
    for p, m in enumerate(maps):
        marg = joint.sum(axis=tuple(q for q in range(joint.ndim) if q != p))
        old = np.flatnonzero(m >= 0)
        out.append(old[marg[m[old]] <= mass])
    return out


def _previous_hint(previous_duals: np.ndarray, old_shape: tuple[int, ...], maps: Sequence[np.ndarray]):
    """``hint(p, d, devs)`` for ``dominance.eliminate``: the previous CE duals on rows
    ``(p, dev -> d)`` (they push ``d``'s mass down), zero for new actions."""
    offsets = np.concatenate([[0], np.cumsum([n * (n - 1) for n in old_shape])]).astype(np.int64)
    duals = np.where(np.isfinite(previous_duals), np.maximum(previous_duals, 0.0), 0.0)

    def hint(p: int, d: int, devs: np.ndarray) -> np.ndarray | None:
        n, od, ov = old_shape[p], maps[p][d], maps[p][devs]
        ok = ov >= 0
        w = np.zeros(devs.size)
        if od < 0 or not ok.any():
            return None
        # Row (dev, rec) of player p: dev * (n - 1) + (rec if rec < dev else rec - 1).
        rows = offsets[p] + ov[ok] * (n - 1) + np.where(od < ov[ok], od, od - 1)
        w[ok] = duals[rows]
        return w if w.sum() > 0 else None

    return hint


def sub_rows(shape: tuple[int, ...], index: Sequence[np.ndarray]) -> np.ndarray:
    """``[K_sub]`` the full game's CE row of each row of the sub-game on the actions
    ``index[p]`` (layout of ``solvers.gains``: per player ``[dev, rec]`` off-diagonal,
    dev-major)."""
    out, offset = [], 0
    for n, idx in zip(shape, index, strict=True):
        k = idx.size
        dev, rec = np.divmod(np.flatnonzero(~np.eye(k, dtype=bool)), k)
        fd, fr = idx[dev], idx[rec]
        out.append(offset + fd * (n - 1) + np.where(fr < fd, fr, fr - 1))
        offset += n * (n - 1)
    return np.concatenate(out).astype(np.int64)


def lift(game, base: np.ndarray, alpha_sub: np.ndarray, index: Sequence[np.ndarray], elimination: Elimination,
         slack: float = LIFT_SLACK) -> np.ndarray:
    """Full-game duals ``[K]`` (normalised units) from the sub-game's ``alpha_sub``.

    Args:
      game: ``matrix_free.MatrixFreeGame`` of the full game (CE).
      base: the full game's base logits (joint-shaped or flat).
      alpha_sub: ``[K_sub]`` sub-game duals (rows ``sub_rows``).
      index: the kept actions per player; elimination: their ``Elimination``.
      slack: see ``LIFT_SLACK``.
    """
    shape = game.shape
    alpha = np.zeros(game.num_constraints)
    alpha[sub_rows(shape, index)] = alpha_sub
    logits = np.asarray(base, dtype=np.float64).reshape(shape) - game.weighted_gains(alpha)
    top = float(logits[np.ix_(*index)].max())
    # Latest eliminated first: an earlier one's mixture beats its action also where a
    # later-eliminated action is played, so it can cover what the later ones leave.
    for dom in reversed(elimination.dominated):
        p, d, w = dom.player, dom.action, dom.weights
        g = game.payoffs[p]  # [A_p, R]
        u = w @ g - w.sum() * g[d]  # [R]: the mixture's gain over d at each profile
        ld = game._front(logits, p)[d]
        pos = u > 0
        need = (ld[pos] - top + slack) / u[pos]
        lam = max(0.0, float(need.max(initial=0.0)))
        if lam == 0.0:
            continue
        vals = np.zeros((shape[p], shape[p]))
        vals[:, d] = lam * w
        vals[d, d] = 0.0
        vec = np.zeros(game.num_constraints)
        game._store(vals, p, vec)
        alpha += vec
        up = np.zeros_like(g)
        up[d] = lam * u
        logits -= game._back(up, p)
    return alpha


def attempt(norm: NormalisedGame, concept: str, params: SelectionParams, previous, maps: Sequence[np.ndarray],
            tol: float, first_order: int, max_iter: int | None, continue_iter: int) -> Attempt | None:
    """The restricted solve of ``norm`` (a hard-constraint CE) from a related ``previous``
    ``Solution`` under the action ``maps``; None when it does not apply (not a CE with
    ``eps_hat = 0`` and hard constraints, no candidate eliminated, or the sub-grid above
    ``RESTRICT_FRACTION`` of the joints).

    Args:
      first_order: FISTA iterations of the sub-game solve.
      max_iter: its Newton iterations (None: ``NewtonCGOptions``' default). Not the watch
        cap: the sub-game's optimum is the full game's, and each of its iterations costs
        less than a full-game one (a 21x66 evaluation game, seed 4, needs 42 Newton
        iterations there after a 27-iteration watch cap).
      continue_iter: Newton iterations of the full-game continuation where the lifted
        duals fail the certificate.
    """
    from solvers.newton_cg import blas_threads

    if concept != "ce" or not math.isinf(float(params.rho)) or np.any(np.asarray(params.eps_hat) != 0):
        return None
    with blas_threads(1):  # as newton_cg: narrow GEMMs, and spinning BLAS threads on a busy machine
        return _attempt(norm, concept, params, previous, maps, tol, first_order, max_iter, continue_iter)


def _attempt(norm: NormalisedGame, concept: str, params: SelectionParams, previous, maps: Sequence[np.ndarray],
             tol: float, first_order: int, max_iter: int | None, continue_iter: int) -> Attempt | None:
    from solvers.matrix_free import MatrixFreeGame
    from solvers.newton import OPTIMAL
    from solvers.newton_cg import NewtonCGOptions, certify, newton_cg
    from solvers.single import matrix_free_result

    t0 = time.perf_counter()
    shape = tuple(int(n) for n in norm.payoffs.shape[1:])
    cands = candidates(previous.joint, maps)
    smallest = math.prod(n - c.size for n, c in zip(shape, cands, strict=True)) / math.prod(shape)
    if not any(c.size for c in cands) or smallest > RESTRICT_FRACTION:
        return None  # no LP where even eliminating every candidate would not pay
    old_shape = tuple(previous.joint.shape)
    hint = _previous_hint(np.asarray(previous.duals, dtype=np.float64), old_shape, maps)
    elim = eliminate(norm.payoffs, cands, hint, max_lps=ELIMINATION_LPS)
    index = [np.flatnonzero(k) for k in elim.keep]
    fraction = math.prod(i.size for i in index) / math.prod(shape)
    if not elim.dominated or fraction > RESTRICT_FRACTION:
        return None
    timings = {"restrict": time.perf_counter() - t0}
    info = {"restricted_shape": tuple(i.size for i in index), "restricted_fraction": fraction,
            "eliminated": tuple((d.player, d.action) for d in elim.dominated),
            "elimination_lps": elim.lps}
    t1 = time.perf_counter()
    base = np.asarray(params.base_logits, dtype=np.float64).reshape(shape)
    args = (params.eps_hat, params.eps_plus, float(params.rho))
    sub = MatrixFreeGame(norm.payoffs[(slice(None),) + np.ix_(*index)], concept)
    opts = NewtonCGOptions(tol=tol, first_order_iter=first_order)
    opts = opts if max_iter is None else opts._replace(max_iter=max_iter)
    res = newton_cg(sub, np.ascontiguousarray(base[np.ix_(*index)]), *args, None, opts)
    timings["refine"] = time.perf_counter() - t1
    info.update(cg_iterations=res.cg_iterations, first_order_iterations=res.first_order_iterations,
                restricted_iterations=res.iterations)
    if res.status != OPTIMAL:
        timings["total"] = time.perf_counter() - t0
        return Attempt(None, "restricted", False, {**info, "restricted_status": int(res.status)})
    t2 = time.perf_counter()
    full = MatrixFreeGame(norm.payoffs, concept)
    alpha = lift(full, base, np.asarray(res.alpha), index, elim, LIFT_SLACK)
    checked = certify(full, base, *args, alpha, tol)
    timings["certify"] = time.perf_counter() - t2
    iterations, path = res.iterations, "restricted"
    if checked.status != OPTIMAL:
        t3 = time.perf_counter()
        opts = NewtonCGOptions(tol=tol, max_iter=continue_iter, first_order_iter=0)
        checked = newton_cg(full, base, *args, checked.alpha, opts)
        timings["continue"] = time.perf_counter() - t3
        iterations += checked.iterations
        info["cg_iterations"] += checked.cg_iterations
        path = "restricted→full"
    timings["total"] = time.perf_counter() - t0
    result = matrix_free_result(checked, shape, timings, info, iterations=iterations)
    return Attempt(result, path, checked.status == OPTIMAL, info)


