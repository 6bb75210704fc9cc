"""Normalised results to ``Solution``s in payoff units (DESIGN §5): the one converter.

Batch-first: ``payoff_batch`` converts a ``DualResult`` of games of one shape as stacked
arrays (one array operation per quantity: ``duals = alpha * s_p``, ``gaps = gaps' / s_p``,
``eps = eps' / s_p``, marginals); ``solution`` then builds game ``b``'s frozen ``Solution``
from views into them, and ``to_solutions`` does so for every game.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from solvers import kernels as kn
from solvers.game import marginals
from solvers.refine import DualResult
from solvers.selection import Selection
from solvers.solution import Solution, build_solution

__all__ = ["PayoffBatch", "one_solution", "payoff_batch", "payoff_duals", "solution", "to_solutions"]


def payoff_duals(alpha: np.ndarray, row_scale: np.ndarray, info: dict) -> np.ndarray:
    """``alpha * s_p`` (payoff units). Where that overflows float64 (a game whose payoffs
    span ~1e-300 or less: ``s_p`` ~1e300 and more) the entries are inf, the normalised
    duals go to ``info["normalised_duals"]`` and ``info["duals_overflow"]`` says so, with a
    ``RuntimeWarning``: never a silent inf. (At ``x1e300`` the duals are ~1e-300 and may
    underflow to 0 or lose digits; as a warm start they are then approximate, not wrong.)"""
    with np.errstate(over="ignore", invalid="ignore"):
        duals = alpha * row_scale
    if not kn.all_finite(duals.reshape(-1)):
        info["normalised_duals"] = np.array(alpha, dtype=np.float64)
        info["duals_overflow"] = (
            "duals in payoff units (normalised duals x scale, up to "
            f"{float(np.max(row_scale)):.3g}) overflow float64; info['normalised_duals'] holds "
            "them in normalised units (solvers.refine_batch takes those as alpha0)"
        )
        warnings.warn(info["duals_overflow"], RuntimeWarning, stacklevel=4)
    return duals


class PayoffBatch(NamedTuple):
    """A ``DualResult`` in payoff units, stacked (structure of arrays).

    Attributes:
      result: the normalised ``DualResult``; scale: ``[B, N]``; player: ``[K]`` owner of
        each dual row; duals: ``[B, K]`` (inf where they overflow, see ``payoff_duals``);
      finite: per game, its duals are finite; gaps, eps: ``[B, N]``; margins: N arrays
        ``[B, A_p]``; gap, duality_gap, objective, violation, kkt: per-game floats;
        iterations: per-game ints; face: per-game bools (False when not applicable).
    """

    result: DualResult
    scale: np.ndarray
    player: np.ndarray
    duals: np.ndarray
    finite: list[bool]
    gaps: np.ndarray
    eps: np.ndarray
    margins: tuple[np.ndarray, ...]
    gap: list[float]
    duality_gap: list[float]
    objective: list[float]
    violation: list[float]
    kkt: list[float] | None
    iterations: list[int]
    face: list[bool]


def payoff_batch(result: DualResult, scale: np.ndarray, player: np.ndarray) -> PayoffBatch:
    """The unit conversions of a whole ``result`` (``scale: [B, N]``), one array op each."""
    num_games, num_players = scale.shape
    joint = result.joint
    with np.errstate(over="ignore", invalid="ignore"):
        duals = result.alpha * scale[:, player]
        gaps = result.gaps / scale
        eps = result.eps / scale
    if num_games == 1:
        finite = [kn.all_finite(duals.reshape(-1))]
    else:
        finite = np.isfinite(duals).all(axis=1).tolist()
    if num_players == 2:  # the common bimatrix case: einsum's loops beat sum's over short axes ~10x
        margins = (np.einsum("bij->bi", joint), np.einsum("bij->bj", joint))
    else:
        axes = tuple(range(1, num_players + 1))
        margins = tuple(joint.sum(axis=axes[:p] + axes[p + 1:]) for p in range(num_players))
    face = [False] * num_games if result.face is None else result.face.tolist()
    return PayoffBatch(
        result, scale, player, duals, finite, gaps, eps, margins, gaps.max(axis=1).tolist(),
        result.duality_gap.tolist(), result.objective.tolist(), result.violation.tolist(),
        None if result.kkt is None else result.kkt.tolist(), result.iterations.tolist(), face,
    )


def solution(
    batch: PayoffBatch,
    b: int,
    concept: str,
    selection: Selection,
    timings: Mapping[str, float],
    info: Mapping[str, object] | None = None,
) -> Solution:
    """Game ``b`` of ``batch`` as a frozen ``Solution`` (its arrays are views into the
    batch's); ``info``: entries added to every game's ``Solution.info``."""
    res = batch.result
    if batch.kkt is None:
        diagnostics: dict[str, object] = {"violation": batch.violation[b]}
    else:
        diagnostics = {"violation": batch.violation[b], "kkt": batch.kkt[b], "face": batch.face[b]}
    if batch.face[b] and res.restricted_alpha is not None:
        # The face's own duals (payoff units), for users who prefer them to the lifted ones.
        with np.errstate(over="ignore", invalid="ignore"):
            diagnostics["restricted_duals"] = res.restricted_alpha[b] * batch.scale[b, batch.player]
    if batch.finite[b]:
        duals = batch.duals[b]
    else:
        duals = payoff_duals(res.alpha[b], batch.scale[b, batch.player], diagnostics)
    if res.info is not None:
        diagnostics.update(res.info[b])
    if info:
        diagnostics.update(info)
    return build_solution(dict(
        joint=res.joint[b], marginals=tuple(m[b] for m in batch.margins), duals=duals, eps=batch.eps[b],
        gap=batch.gap[b], gaps=batch.gaps[b], scale=batch.scale[b], duality_gap=batch.duality_gap[b],
        objective=batch.objective[b], iterations=batch.iterations[b], timings=timings, status=res.status[b],
        concept=concept, selection=selection, method="+".join(res.stages[b]), info=diagnostics,
    ))


def to_solutions(
    result: DualResult,
    scale: np.ndarray,
    player: np.ndarray,
    concept: str,
    selection: Selection,
    timings: Mapping[str, float],
    info: Mapping[str, object] | None = None,
) -> list[Solution]:
    """Every game of ``result`` (``scale: [B, N]``, ``player: [K]``) as a ``Solution`` in
    payoff units. ``timings`` (per game) is shared read-only by the games; ``info`` is added
    to each game's ``Solution.info``."""
    shared = MappingProxyType(dict(timings))
    if scale.shape[0] == 1:  # solve()'s case: the same conversions on unbatched arrays
        return [one_solution(result, scale[0], player, concept, selection, shared, info)]
    batch = payoff_batch(result, scale, player)
    return [solution(batch, b, concept, selection, shared, info) for b in range(scale.shape[0])]


#: Scales within these bounds cannot overflow a product or quotient of moderate normalised
#: values, so ``one_solution`` skips ``np.errstate`` (which costs more than the arithmetic).
_SAFE_SCALE = (1e-100, 1e100)


def one_solution(
    res: DualResult,
    scale: np.ndarray,
    player: np.ndarray,
    concept: str,
    selection: Selection,
    timings: Mapping[str, float],
    info: Mapping[str, object] | None = None,
) -> Solution:
    """``solution(payoff_batch(res, scale[None], player), 0, ...)`` for a result of one game
    (``scale: [N]``), without the batch bookkeeping (``solve`` on a small game takes
    microseconds). ``timings`` is the Solution's own (not copied when read-only)."""
    joint = res.joint[0]
    lo, hi = _SAFE_SCALE
    scale_values = scale.tolist()
    row_scale = scale[player]
    if lo < min(scale_values) and max(scale_values) < hi:
        gaps = res.gaps[0] / scale
        eps = res.eps[0] / scale
        duals = res.alpha[0] * row_scale
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            gaps = res.gaps[0] / scale
            eps = res.eps[0] / scale
            duals = res.alpha[0] * row_scale
    if joint.ndim == 2:
        margins = (np.add.reduce(joint, 1), np.add.reduce(joint, 0))
    else:
        margins = marginals(joint)
    face = res.face is not None and bool(res.face[0])
    if res.kkt is None:
        diagnostics: dict[str, object] = {"violation": float(res.violation[0])}
    else:
        diagnostics = {"violation": float(res.violation[0]), "kkt": float(res.kkt[0]), "face": face}
    if face and res.restricted_alpha is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            diagnostics["restricted_duals"] = res.restricted_alpha[0] * row_scale
    if not kn.all_finite(duals):
        duals = payoff_duals(res.alpha[0], row_scale, diagnostics)
    if res.info is not None:
        diagnostics.update(res.info[0])
    if info:
        diagnostics.update(info)
    gap_values = gaps.tolist()
    gap = max(gap_values) if all(map(math.isfinite, gap_values)) else float(gaps.max())  # NaN as np.max
    return build_solution(dict(
        joint=joint, marginals=margins, duals=duals, eps=eps, gap=gap, gaps=gaps, scale=scale,
        duality_gap=float(res.duality_gap[0]), objective=float(res.objective[0]), iterations=int(res.iterations[0]),
        timings=timings if type(timings) is MappingProxyType else MappingProxyType(dict(timings)),
        status=res.status[0], concept=concept, selection=selection, method="+".join(res.stages[0]),
        info=diagnostics,
    ))
