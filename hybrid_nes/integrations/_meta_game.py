"""Meta-games as plain arrays: validation, repeated policies, grown games, gaps.

No OpenSpiel here. ``hybrid_nes.integrations.openspiel`` re-exports the public names.
Gains and gaps come from ``solvers``: the constraint layout of ``solvers.gains`` (cached
per shape) and the certificate kernels every ``solvers.Solution`` reports its gaps with.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import numpy as np

import solvers
from solvers import kernels as kn
from solvers.gains import Gains, check_concept, constraint_player, gain_structure

__all__ = [
    "clean_joint",
    "drop_below",
    "equilibrium_gaps",
    "expand_meta_game",
    "extend_joint",
    "meta_game_gains",
    "pad_duals",
    "repeat_weights",
    "unexpand_joint",
]


def check_meta_game(meta_game: np.ndarray) -> np.ndarray:
    """Validates ``meta_game: [N, A1..AN]`` (finite, numeric); returns float64."""
    return solvers.as_game(meta_game, name="meta_game")


def check_repeats(per_player_repeats: Sequence[Sequence[float]], shape: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Validates the per-player policy counts against the meta-game's ``shape: (A1..AN)``.

    Returns:
      N float64 arrays ``[A_p]``, every entry a positive finite count.
    """
    if per_player_repeats is None or isinstance(per_player_repeats, (str, bytes)):
        raise TypeError(f"per_player_repeats must be a list of N count arrays, got {per_player_repeats!r}")
    repeats = list(per_player_repeats)
    if len(repeats) != len(shape):
        raise ValueError(
            f"per_player_repeats has {len(repeats)} entries but meta_game has {len(shape)} players"
        )
    out = []
    for p, (counts, n) in enumerate(zip(repeats, shape, strict=True)):
        array = np.asarray(counts, dtype=np.float64).reshape(-1)
        if array.shape != (n,):
            raise ValueError(
                f"per_player_repeats[{p}] has {array.size} counts but player {p} has {n} policies "
                f"in meta_game"
            )
        if not np.all(np.isfinite(array)) or np.any(array <= 0):
            raise ValueError(f"per_player_repeats[{p}] must be positive finite counts, got {array.tolist()}")
        out.append(array)
    return tuple(out)


def digest(game: np.ndarray, repeats: Sequence[np.ndarray], ignore_repeats: bool) -> str:
    """A key of one meta-solver call (JPSRO repeats calls when train and eval solvers match)."""
    h = hashlib.sha1(np.ascontiguousarray(game).tobytes())
    h.update(repr(game.shape).encode())
    for counts in repeats:
        h.update(np.ascontiguousarray(counts).tobytes())
    h.update(b"1" if ignore_repeats else b"0")
    return h.hexdigest()


def repeat_weights(repeats: Sequence[np.ndarray]) -> np.ndarray:
    """``[A1..AN]`` the joint ``w(a)`` proportional to ``prod_p r_p(a_p)``, summing to 1."""
    weights = np.ones(())
    for counts in repeats:
        weights = np.multiply.outer(weights, counts / counts.sum())
    return weights


def expand_meta_game(meta_game: np.ndarray, repeats: Sequence[np.ndarray]) -> np.ndarray:
    """``[N, R1..RN]`` the game with policy ``u`` of player p repeated ``r_p(u)`` times."""
    for p, counts in enumerate(repeats):
        meta_game = np.repeat(meta_game, counts.astype(np.int64), axis=p + 1)
    return meta_game


def unexpand_joint(joint: np.ndarray, repeats: Sequence[np.ndarray]) -> np.ndarray:
    """Inverse of ``expand_meta_game`` on joints: ``[R1..RN]`` -> ``[A1..AN]`` summed over copies."""
    for p, counts in enumerate(repeats):
        starts = np.concatenate([[0], np.cumsum(counts.astype(np.int64))[:-1]])
        joint = np.add.reduceat(joint, starts, axis=p)
    return joint


def clean_joint(joint: np.ndarray) -> np.ndarray:
    """A distribution from a solver's joint: negatives (rounding) to 0, sums to 1.

    Raises:
      ValueError: the joint has NaN/inf entries or no positive mass.
    """
    joint = np.asarray(joint, dtype=np.float64)
    if not np.all(np.isfinite(joint)):
        raise ValueError("the meta-solver's joint contains NaN or inf")
    joint = np.maximum(joint, 0.0)
    total = joint.sum()
    if not total > 0.0:
        raise ValueError("the meta-solver's joint has no positive mass")
    return joint / total


def drop_below(dist: np.ndarray, threshold: float) -> np.ndarray:
    """JPSRO's clean-up: entries below ``threshold`` to 0, renormalised. ``[A1..AN]``."""
    out = np.where(dist < threshold, 0.0, dist)
    return out / out.sum()


def zero_out(joint: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``joint`` with the entries under ``mask`` set to 0, renormalised."""
    out = np.where(mask, 0.0, joint)
    return out / out.sum()


def is_extension(old: np.ndarray, new: np.ndarray) -> bool:
    """True when ``new: [N, A1..AN]`` is ``old: [N, B1..BN]`` with policies appended."""
    if old.ndim != new.ndim or old.shape[0] != new.shape[0]:
        return False
    if any(b > a for b, a in zip(old.shape[1:], new.shape[1:], strict=True)):
        return False
    return bool(np.array_equal(new[tuple(slice(0, b) for b in old.shape)], old))


def pad_duals(duals: np.ndarray, old_shape: Sequence[int], new_shape: Sequence[int], concept: str) -> np.ndarray:
    """Flat duals of a game of ``old_shape`` laid out for ``new_shape`` (appended policies).

    New deviations get zero duals. ``duals: [K_old]`` -> ``[K_new]`` (``solvers.gains`` layout).
    """
    per_player = solvers.duals_by_player(np.asarray(duals, dtype=np.float64), tuple(old_shape), concept)
    padded = []
    for block, old, new in zip(per_player, old_shape, new_shape, strict=True):
        extra = new - old
        if extra < 0:
            raise ValueError(f"new_shape {tuple(new_shape)} is smaller than old_shape {tuple(old_shape)}")
        padded.append(np.pad(block, [(0, extra)] * block.ndim))
    return solvers.duals_from_players(padded, concept)


def extend_joint(joint: np.ndarray, new_shape: Sequence[int]) -> np.ndarray:
    """``joint: [B1..BN]`` zero-padded to ``new_shape`` (appended policies get no mass)."""
    return np.pad(joint, [(0, n - b) for b, n in zip(joint.shape, new_shape, strict=True)])


@functools.lru_cache(maxsize=64)
def _layout(shape: tuple[int, ...], concept: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``solvers.gains.gain_structure`` and ``constraint_player`` of one shape, cached."""
    rows, slot_player, dev = gain_structure(shape, concept)
    return rows, slot_player, dev, constraint_player(shape, concept)


def meta_game_gains(game: np.ndarray, concept: str) -> Gains:
    """``solvers.gains(game, concept)`` with the payoff-free layout cached per shape.

    JPSRO solves a meta-game of every size in turn (twice per iteration with an eval
    solver): rebuilding the layout costs more than the solve on small meta-games
    (2 ms against 0.4 ms on 5x5x5). The values come from the solvers' own kernel.
    """
    shape = tuple(int(n) for n in game.shape[1:])
    rows, slot_player, dev, player = _layout(shape, concept)
    flat = np.ascontiguousarray(game.reshape(game.shape[0], -1), dtype=np.float64)
    values = np.empty(dev.shape)
    kn.gain_values_one(flat, slot_player, dev, values)
    return Gains(rows, values, player, shape, concept)


def gains_gaps(g: Gains, joint: np.ndarray) -> np.ndarray:
    """``[N]`` per-player ``max_dev E_joint[gain]`` from ``solvers.gains``.

    The solvers' certificate kernels (``expected_gains_one``, ``player_gaps_one``): the
    gaps every ``Solution`` reports.
    """
    sigma = np.ascontiguousarray(joint, dtype=np.float64).reshape(-1)
    expected = np.empty(g.num_constraints)
    kn.expected_gains_one(g.rows, np.ascontiguousarray(g.values, dtype=np.float64), sigma, expected)
    gaps = np.empty(len(g.shape))
    kn.player_gaps_one(expected, g.player, gaps)
    return gaps


def equilibrium_gaps(game: np.ndarray, joint: np.ndarray, concept: str) -> np.ndarray:
    """``[N]`` per-player ``max_dev E_joint[gain]`` (payoff units; <= 0 at a (C)CE).

    ``game: [N, A1..AN]``, ``joint: [A1..AN]``.
    """
    return gains_gaps(meta_game_gains(game, check_concept(concept)), joint)
