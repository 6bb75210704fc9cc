"""LP meta-solvers with SciPy HiGHS: max-welfare (C)CE, zero-sum Nash; the (C)CE rows.

- ``max_welfare``: the classic LP baseline, ``max sum_p <sigma, G_p>`` over the
  (eps-)(C)CE polytope (raw payoff units). Not unique in general: HiGHS returns a vertex.
- ``zero_sum_nash``: maximin strategies and the value of a two-player zero-sum (or
  constant-sum) game.
- ``minimal_face``: kept for compatibility, ``solvers.face.polytope_face`` (the support
  and implicit equalities of the (C)CE polytope, DESIGN §4b).
- ``constraint_matrix``: the (C)CE constraint rows built straight from the payoff
  tensor (independent of ``solvers.gains``, same row layout).

Flat orders: joints are C-order ``[|A|]``; constraint rows follow ``solvers.gains``
(CCE: player, deviation a'; CE: player, deviation a', recommendation a'' != a').
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sps
from scipy.optimize import linprog

from solvers.face import Face, polytope_face
from solvers.gains import check_concept
from solvers.game import as_game, normalise

__all__ = [
    "LPResult",
    "ZeroSumNash",
    "Face",
    "constraint_matrix",
    "max_welfare",
    "zero_sum_nash",
    "minimal_face",
]

#: Largest |G_0 + G_1 - c| (relative to the payoff scale) accepted as constant-sum.
ZERO_SUM_TOL = 1e-9

# One facial-reduction LP for the library lives in solvers.face; these names stay for
# callers of the former linprog version (same arguments, a Face with more fields).
minimal_face = polytope_face


class LPResult(NamedTuple):
    """A max-welfare (C)CE from the LP.

    Attributes:
      joint: ``[A1..AN]`` cleaned joint (tiny negatives clipped, renormalised).
      welfare: ``sum_p E_joint[G_p]`` in payoff units.
      gap: ``max_p gaps_p`` (payoff units); gaps: ``[N]`` per-player ``max_dev E[gain]``.
      status: "optimal", "infeasible" (eps_hat too small) or HiGHS's failure message.
      solve_time: seconds inside HiGHS; setup_time: seconds building the LP.
      iterations: HiGHS iterations.
    """

    joint: np.ndarray
    welfare: float
    gap: float
    gaps: np.ndarray
    status: str
    solve_time: float
    setup_time: float
    iterations: int


class ZeroSumNash(NamedTuple):
    """Maximin strategies of a two-player zero-sum game; unpacks as ``(row, col, value)``.

    Attributes:
      row: ``[A1]`` row player's strategy; col: ``[A2]`` column player's strategy.
      value: the row player's payoff at equilibrium (payoff units).
    """

    row: np.ndarray
    col: np.ndarray
    value: float


def constraint_matrix(payoffs: np.ndarray, concept: str) -> tuple[sps.csr_array, np.ndarray]:
    """The (C)CE constraint matrix ``M`` with ``E_sigma[gain_k] = (M @ sigma.ravel())_k``.

    Built per player by moving the player's action axis to the front; it does not use
    ``solvers.gains`` (it is the independent check of that module), yet its rows follow
    the same layout.

    Args:
      payoffs: ``[N, A1..AN]``.
      concept: "cce" or "ce".

    Returns:
      ``M``: sparse ``[K, |A|]``; ``player``: ``[K]`` int64 owner of each row.
    """
    concept = check_concept(concept)
    shape = payoffs.shape[1:]
    num_joint = int(np.prod(shape))
    index = np.arange(num_joint).reshape(shape)
    rows, cols, vals, owners = [], [], [], []
    offset = 0
    for p, n in enumerate(shape):
        own = np.moveaxis(payoffs[p], p, 0).reshape(n, -1)  # [A_p, R]: G_p(a_p, a_-p)
        joint_of = np.moveaxis(index, p, 0).reshape(n, -1)  # [A_p, R]: flat joint index
        # diff[d, r, :] = G_p(d, a_-p) - G_p(r, a_-p): the gain of deviating to d from r.
        diff = own[:, None, :] - own[None, :, :]  # [A_p (dev), A_p (played), R]
        dev, rec = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        if concept == "cce":
            row = np.broadcast_to(dev[:, :, None], diff.shape)
            col = np.broadcast_to(joint_of[None], diff.shape)
            count = n
        else:
            keep = dev != rec
            dev, rec, diff = dev[keep], rec[keep], diff[keep]  # [n(n-1)], [n(n-1)], [n(n-1), R]
            local = dev * (n - 1) + np.where(rec < dev, rec, rec - 1)
            row = np.broadcast_to(local[:, None], diff.shape)
            col = joint_of[rec]  # the gain only counts where player p was told rec
            count = n * (n - 1)
        rows.append(offset + row.ravel())
        cols.append(col.ravel())
        vals.append(diff.ravel())
        owners.append(np.full(count, p, dtype=np.int64))
        offset += count
    matrix = sps.coo_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(offset, num_joint),
    ).tocsr()
    matrix.eliminate_zeros()
    return matrix, np.concatenate(owners)


def _per_player(value: float | np.ndarray, num_players: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(num_players, float(array))
    if array.shape != (num_players,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite scalar or [{num_players}] vector, got {value!r}")
    return array


def _player_max(values: np.ndarray, player: np.ndarray, num_players: int) -> np.ndarray:
    out = np.full(num_players, -np.inf)
    np.maximum.at(out, player, values)
    out[np.isneginf(out)] = 0.0  # a player without deviations (CE, one action)
    return out


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    return x / x.sum()


def max_welfare(
    game: np.ndarray,
    concept: str = "cce",
    eps_hat: float | np.ndarray = 0.0,
) -> LPResult:
    """The maximum-welfare eps-(C)CE: ``max sum_p <sigma, G_p>`` over the polytope.

    Solved with HiGHS (``scipy.optimize.linprog(method="highs")``). Each player's
    constraint rows are scaled by the normalisation factor ``s_p`` (DESIGN §5) for
    conditioning; the feasible set and the objective stay in payoff units.

    Args:
      game: ``[N, A1..AN]`` payoffs (or a bimatrix pair), payoff units.
      concept: "cce" or "ce".
      eps_hat: scalar or ``[N]`` approximation, payoff units.

    Returns:
      ``LPResult``; an empty polytope gives status "infeasible" and a uniform joint.
    """
    game = as_game(game)
    concept = check_concept(concept)
    num_players = game.shape[0]
    shape = game.shape[1:]
    eps = _per_player(eps_hat, num_players, "eps_hat")
    start = time.perf_counter()
    scale = normalise(game).scale
    matrix, player = constraint_matrix(game, concept)
    rows_scaled = sps.diags(scale[player]) @ matrix
    welfare = game.reshape(num_players, -1).sum(axis=0)
    num_joint = welfare.size
    setup_time = time.perf_counter() - start
    start = time.perf_counter()
    res = linprog(
        -welfare,
        A_ub=rows_scaled if matrix.shape[0] else None,
        b_ub=(scale * eps)[player] if matrix.shape[0] else None,
        A_eq=np.ones((1, num_joint)),
        b_eq=np.ones(1),
        bounds=(0, None),
        method="highs",
    )
    solve_time = time.perf_counter() - start
    iterations = int(getattr(res, "nit", 0) or 0)
    if res.status == 2:
        joint = np.full(num_joint, 1.0 / num_joint)
        status = "infeasible"
    elif res.x is None:
        joint = np.full(num_joint, 1.0 / num_joint)
        status = f"failed: {res.message}"
    else:
        joint = _clean(res.x)
        status = "optimal" if res.status == 0 else f"inaccurate: {res.message}"
    gaps = _player_max(matrix @ joint, player, num_players)
    return LPResult(
        joint.reshape(shape), float(welfare @ joint), float(gaps.max()), gaps, status,
        solve_time, setup_time, iterations,
    )


def _as_zero_sum(game: np.ndarray) -> np.ndarray:
    """The row player's payoff matrix ``[A1, A2]`` of a validated constant-sum game."""
    array = np.asarray(game) if not isinstance(game, (tuple, list)) else None
    if array is not None and array.ndim == 2:
        return as_game(np.stack([array, -np.asarray(array, dtype=np.float64)]), "game")[0]
    full = as_game(game, "game")
    if full.shape[0] != 2:
        raise ValueError(f"game must have two players for zero_sum_nash, got {full.shape[0]} (shape {full.shape})")
    total = full[0] + full[1]
    spread = float(total.max() - total.min())
    size = max(1.0, float(np.abs(full).max()))
    if spread > ZERO_SUM_TOL * size:
        raise ValueError(
            f"game is not zero-sum (nor constant-sum): G_0 + G_1 ranges over [{total.min():.6g}, "
            f"{total.max():.6g}]; use max_welfare or solvers.solve for general-sum games"
        )
    return full[0]


def _maximin(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """``max_x min_j x' A[:, j]`` over the simplex: the row player's LP."""
    rows, cols = matrix.shape
    # Variables (x [rows], v); minimise -v s.t. v - x'A_j <= 0.
    c = np.zeros(rows + 1)
    c[-1] = -1.0
    a_ub = np.hstack([-matrix.T, np.ones((cols, 1))])
    a_eq = np.hstack([np.ones((1, rows)), np.zeros((1, 1))])
    res = linprog(
        c, A_ub=a_ub, b_ub=np.zeros(cols), A_eq=a_eq, b_eq=np.ones(1),
        bounds=[(0, None)] * rows + [(None, None)], method="highs",
    )
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"HiGHS failed on the zero-sum LP: {res.message}")
    return _clean(res.x[:rows]), float(res.x[-1])


def zero_sum_nash(game: np.ndarray) -> ZeroSumNash:
    """Maximin (= Nash) strategies and value of a two-player zero-sum game.

    Args:
      game: ``[2, A1, A2]`` payoffs with ``G_0 + G_1`` constant, a bimatrix pair, or a
        single ``[A1, A2]`` matrix of the row player's payoffs (column player gets minus).

    Returns:
      ``ZeroSumNash(row [A1], col [A2], value)``; ``value`` is the row player's payoff.

    Raises:
      ValueError: not two players, or not zero-sum / constant-sum.
    """
    payoff = _as_zero_sum(game)
    row, value = _maximin(payoff)
    col, neg_value = _maximin(-payoff.T)
    # Both LPs solve the same game; the two values agree up to HiGHS's tolerance.
    value = 0.5 * (value - neg_value)
    return ZeroSumNash(row, col, float(value))
