"""Iterated elimination of strictly dominated actions, with certificates.

Action ``d`` of player ``p`` is strictly dominated (against the opponents' remaining
actions ``R``) when a mixture ``w >= 0``, ``sum w = 1``, over p's other remaining actions
beats it at every opponent profile:

    margin = min_{r in R} sum_dev w_dev (G_p(dev, r) - G_p(d, r)) > 0.

No correlated equilibrium plays a strictly dominated action, also after iterated
elimination (each round's mixtures use the actions left by the earlier rounds), and the
CE constraints of deviations to eliminated actions are implied by the others (the gain of
a deviation to ``d`` is below the ``w``-mixture of the gains of deviations to the
dominating actions). So the hard-constraint CE polytope (``eps_hat = 0``) of the game is
that of the game without the eliminated actions, padded with zeros: every selection
criterion picks the same joint on both (``solvers.restricted``). Not so for CCEs (a CCE
may play a dominated action) nor for ``eps_hat > 0``.

Only ``candidates`` are tested (the actions a related game's solution left unplayed, say):
testing every action costs one LP per action. A ``hint`` mixture (e.g. from the related
solution's duals on the candidate's rows) is checked first (one matrix product); the LP
(HiGHS through ``scipy.optimize.linprog``) runs only where the hint fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Dominated", "Elimination", "MARGIN_RTOL", "eliminate", "margin"]

#: A margin counts as strict above this fraction of the largest payoff difference involved
#: (rounding of the normalised payoffs is ~1e-16 of it; the certificate of
#: ``solvers.restricted`` is what the result rests on, this only gates the attempt).
MARGIN_RTOL = 1e-9


class Dominated(NamedTuple):
    """One eliminated action: ``player``'s action ``action``, beaten by ``weights [A_p]``
    (a mixture over the actions remaining when it was eliminated, zero elsewhere) by at
    least ``margin`` (payoff units of the game given) at every remaining opponent
    profile; ``source``: "hint" or "lp"."""

    player: int
    action: int
    weights: np.ndarray
    margin: float
    source: str


class Elimination(NamedTuple):
    """``keep``: N bool arrays ``[A_p]`` (the actions left); ``dominated``: the eliminated
    actions in elimination order; ``lps``: the LPs solved."""

    keep: tuple[np.ndarray, ...]
    dominated: tuple[Dominated, ...]
    lps: int


def _differences(payoffs: np.ndarray, keep: Sequence[np.ndarray], p: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(devs, D [devs, R])``: p's remaining other actions and ``G_p(dev, r) - G_p(d, r)``
    over the remaining opponent profiles ``r``."""
    g = np.moveaxis(payoffs[p], p, 0)
    others = [np.flatnonzero(keep[q]) for q in range(len(keep)) if q != p]
    devs = np.flatnonzero(keep[p])
    devs = devs[devs != d]
    sub = g[np.ix_(np.arange(g.shape[0]), *others)].reshape(g.shape[0], -1)
    return devs, sub[devs] - sub[d]


def margin(weights: np.ndarray, diff: np.ndarray) -> float:
    """``min_r weights @ diff[:, r]`` with ``weights`` normalised to sum 1 (``-inf`` when
    they are all zero)."""
    total = weights.sum()
    if not total > 0:
        return -np.inf
    return float(np.min((weights / total) @ diff))


def _lp(diff: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``max_w min_r w @ diff[:, r]`` over the simplex: ``(w, margin)``, None if HiGHS fails."""
    from scipy.optimize import linprog

    cols = np.unique(diff.T, axis=0)  # duplicate profiles (e.g. payoffs independent of an opponent)
    n = diff.shape[0]
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    a_ub = np.hstack([-cols, np.ones((cols.shape[0], 1))])
    a_eq = np.concatenate([np.ones(n), [0.0]])[None]
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(cols.shape[0]), A_eq=a_eq, b_eq=[1.0],
                  bounds=[(0.0, None)] * n + [(None, None)], method="highs")
    if res.status != 0:
        return None
    return np.maximum(res.x[:n], 0.0), float(-res.fun)


def eliminate(payoffs: np.ndarray, candidates: Sequence[np.ndarray],
              hint: Callable[[int, int, np.ndarray], np.ndarray | None] | None = None,
              use_lp: bool = True, max_lps: int | None = None) -> Elimination:
    """Iterated strict dominance among ``candidates``.

    Args:
      payoffs: ``[N, A1..AN]``.
      candidates: N int arrays, the actions of each player to test.
      hint: ``hint(p, d, devs) -> [len(devs)]`` non-negative weights to try first (or None).
      use_lp: solve the LP where the hint does not prove dominance.
      max_lps: at most this many LPs (None: no limit); later candidates get the hint only.

    Returns:
      ``Elimination``; rounds repeat until a round eliminates nothing.
    """
    payoffs = np.asarray(payoffs, dtype=np.float64)
    shape = payoffs.shape[1:]
    if len(candidates) != len(shape):
        raise ValueError(f"candidates has {len(candidates)} entries for {len(shape)} players")
    keep = [np.ones(n, dtype=bool) for n in shape]
    pending = [sorted({int(a) for a in np.asarray(c, dtype=np.int64).ravel()}) for c in candidates]
    for p, c in enumerate(pending):
        if c and (c[0] < 0 or c[-1] >= shape[p]):
            raise ValueError(f"candidates[{p}] has actions outside [0, {shape[p]}): {c}")
    found: list[Dominated] = []
    lps = 0
    changed = True
    while changed:
        changed = False
        for p in range(len(shape)):
            for d in list(pending[p]):
                if keep[p].sum() <= 1:
                    break
                devs, diff = _differences(payoffs, keep, p, d)
                tol = MARGIN_RTOL * max(float(np.abs(diff).max(initial=0.0)), 1e-300)
                best: tuple[np.ndarray, float, str] | None = None
                w = None if hint is None else hint(p, d, devs)
                if w is not None:
                    w = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
                    m = margin(w, diff)
                    if m > tol:
                        best = (w / w.sum(), m, "hint")
                if best is None and use_lp and (max_lps is None or lps < max_lps):
                    lps += 1
                    out = _lp(diff)
                    if out is not None and out[1] > tol:
                        best = (out[0] / out[0].sum(), margin(out[0], diff), "lp")
                if best is None or not best[1] > tol:
                    continue
                full = np.zeros(shape[p])
                full[devs] = best[0]
                found.append(Dominated(p, d, full, best[1], best[2]))
                keep[p][d] = False
                pending[p].remove(d)
                changed = True
    return Elimination(tuple(keep), tuple(found), lps)
