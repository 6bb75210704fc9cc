"""CCE and CE deviation gains (DESIGN §2), stored column-sparse.

Every joint action ``a`` touches the same number ``c`` of constraints, so the constraint
matrix ``M [K, |A|]`` (``M[k, a]`` = gain of constraint k at joint action a) is stored
in ELLPACK form by column: ``rows[a, :]`` are the constraint indices and
``values[a, :]`` the gains at ``a``. This never materialises the dense CE tensor
``[A_p, A_p, |A|]``; storage is ``|A| * c`` with ``c = sum_p A_p`` (CCE) or
``sum_p (A_p - 1)`` (CE).

Constraint order (the layout of every flat dual vector ``[K]``):

- CCE: player-major, then the deviation ``a'``: ``k = offset_p + a'``; ``K = sum_p A_p``.
- CE: player-major, then the deviation ``a'``, then the recommendation ``a'' != a'``:
  ``k = offset_p + a' * (A_p - 1) + (a'' if a'' < a' else a'' - 1)``;
  ``K = sum_p A_p (A_p - 1)``.

Use ``duals_by_player``/``duals_from_players`` to move between the flat layout and the
per-player ``[A_p]`` (CCE) or ``[A_p, A_p]`` (CE, zero diagonal) arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

__all__ = [
    "Concept",
    "CONCEPTS",
    "Gains",
    "GainLayout",
    "check_concept",
    "gain_layout",
    "layout_bytes",
    "num_constraints",
    "constraint_player",
    "gain_structure",
    "gain_values",
    "gain_values_batch",
    "gains",
    "gains_batch",
    "dense_gains",
    "duals_by_player",
    "duals_from_players",
]

Concept = Literal["cce", "ce"]
CONCEPTS: tuple[str, ...] = ("cce", "ce")


def check_concept(concept: str) -> str:
    """Returns the lower-cased concept name or raises ``ValueError``."""
    if not isinstance(concept, str):
        raise TypeError(f"concept must be a string, one of {CONCEPTS}, got {concept!r}")
    name = concept.lower()
    if name not in CONCEPTS:
        raise ValueError(f"unknown concept {concept!r}; expected one of {CONCEPTS}")
    return name


class Gains(NamedTuple):
    """Deviation gains of one game (or a batch of games of one shape).

    Attributes:
      rows: ``[|A|, c]`` int64 constraint index of each stored gain.
      values: ``[|A|, c]`` (or ``[B, |A|, c]``) float64 gains.
      player: ``[K]`` int64 player of each constraint.
      shape: the action counts ``(A1, ..., AN)``.
      concept: "cce" or "ce".
    """

    rows: np.ndarray
    values: np.ndarray
    player: np.ndarray
    shape: tuple[int, ...]
    concept: str

    @property
    def num_constraints(self) -> int:
        return int(self.player.shape[0])


def num_constraints(shape: Sequence[int], concept: str) -> int:
    """``K``: ``sum_p A_p`` for CCE, ``sum_p A_p (A_p - 1)`` for CE."""
    concept = check_concept(concept)
    if concept == "cce":
        return int(sum(shape))
    return int(sum(n * (n - 1) for n in shape))


def _player_offsets(shape: Sequence[int], concept: str) -> np.ndarray:
    sizes = [n if concept == "cce" else n * (n - 1) for n in shape]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def constraint_player(shape: Sequence[int], concept: str) -> np.ndarray:
    """``[K]`` the player that owns each constraint."""
    concept = check_concept(concept)
    sizes = [n if concept == "cce" else n * (n - 1) for n in shape]
    return np.repeat(np.arange(len(shape), dtype=np.int64), sizes)


def _ce_index(dev: np.ndarray, rec: np.ndarray, num_actions: int) -> np.ndarray:
    return dev * (num_actions - 1) + np.where(rec < dev, rec, rec - 1)


def gain_structure(shape: Sequence[int], concept: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The payoff-independent part of the ELL layout.

    Returns:
      rows: ``[|A|, c]`` constraint index of each slot.
      player: ``[c]`` the player of each slot.
      dev: ``[|A|, c]`` flat joint index of the deviated joint action ``(a'_p, a_-p)``
        whose payoff is compared with ``a``'s in that slot.
    """
    concept = check_concept(concept)
    shape = tuple(int(n) for n in shape)
    joint = np.indices(shape).reshape(len(shape), -1)  # [N, |A|]
    offsets = _player_offsets(shape, concept)
    row_blocks, dev_blocks, player_blocks = [], [], []
    for p, n in enumerate(shape):
        own = joint[p][:, None]  # [|A|, 1]
        if concept == "cce":
            devs = np.broadcast_to(np.arange(n)[None, :], (own.shape[0], n))
            rows = offsets[p] + devs
        else:
            all_devs = np.arange(n)[None, :]
            devs = np.broadcast_to(all_devs, (own.shape[0], n))
            keep = devs != own
            devs = devs[keep].reshape(own.shape[0], n - 1)
            rows = offsets[p] + _ce_index(devs, np.broadcast_to(own, devs.shape), n)
        deviated = np.repeat(joint[:, :, None], devs.shape[1], axis=2)  # [N, |A|, d]
        deviated[p] = devs
        dev_blocks.append(np.ravel_multi_index(tuple(deviated), shape))
        row_blocks.append(rows)
        player_blocks.append(np.full(devs.shape[1], p, dtype=np.int64))
    rows = np.concatenate(row_blocks, axis=1).astype(np.int64)
    dev = np.concatenate(dev_blocks, axis=1).astype(np.int64)
    player = np.concatenate(player_blocks)
    return rows, player, dev


class GainLayout(NamedTuple):
    """The payoff-independent ELL structure of one (shape, concept), cached.

    Attributes:
      rows: ``[|A|, c]`` constraint index per slot; slot_player: ``[c]``;
      dev: ``[|A|, c]`` deviated joint per slot; player: ``[K]`` owner of each row.
    """

    rows: np.ndarray
    slot_player: np.ndarray
    dev: np.ndarray
    player: np.ndarray

    @property
    def num_constraints(self) -> int:
        return int(self.player.shape[0])


@functools.lru_cache(maxsize=128)
def gain_layout(shape: tuple[int, ...], concept: str) -> GainLayout:
    """``GainLayout`` of ``shape`` (action counts) and ``concept``, cached: do not modify.

    (The arrays stay writable: Numba compiles read-only arrays as a separate type, and one
    specialisation per kernel keeps the first-call compile time down.)
    """
    rows, slot_player, dev = gain_structure(shape, concept)
    player = constraint_player(shape, concept)
    return GainLayout(*(np.ascontiguousarray(a) for a in (rows, slot_player, dev, player)))


def layout_bytes(shape: Sequence[int], concept: str) -> int:
    """Bytes of the ELL gain layout of one game: rows, deviated joints, values (``24 |A| c``)."""
    slots = sum(int(n) - (concept == "ce") for n in shape)
    return 24 * math.prod(int(n) for n in shape) * slots


def gain_values_batch(payoffs: np.ndarray, concept: str) -> np.ndarray:
    """Gains ``[B, |A|, c]`` of a batch ``payoffs: [B, N, A1..AN]`` in the ELL layout."""
    shape = payoffs.shape[2:]
    _, player, dev = gain_structure(shape, concept)
    flat = payoffs.reshape(payoffs.shape[0], payoffs.shape[1], -1)  # [B, N, |A|]
    own = flat[:, player, :].transpose(0, 2, 1)  # [B, |A|, c]: G_{p(slot)}(a)
    deviated = flat[:, player[None, :], dev]  # [B, |A|, c]: G_{p(slot)}(a'_p, a_-p)
    return deviated - own


def gain_values(payoffs: np.ndarray, concept: str) -> np.ndarray:
    """Gains ``[|A|, c]`` of one game ``payoffs: [N, A1..AN]``."""
    return gain_values_batch(payoffs[None], concept)[0]


def _make_gains(values: np.ndarray, shape: tuple[int, ...], concept: str) -> Gains:
    rows, _, _ = gain_structure(shape, concept)
    return Gains(rows, values, constraint_player(shape, concept), shape, concept)


def gains(payoffs: np.ndarray, concept: str) -> Gains:
    """Deviation gains of one game ``payoffs: [N, A1..AN]``; values ``[|A|, c]``."""
    concept = check_concept(concept)
    return _make_gains(gain_values(payoffs, concept), tuple(payoffs.shape[1:]), concept)


def gains_batch(payoffs: np.ndarray, concept: str) -> Gains:
    """Deviation gains of a batch ``payoffs: [B, N, A1..AN]``; values ``[B, |A|, c]``."""
    concept = check_concept(concept)
    return _make_gains(gain_values_batch(payoffs, concept), tuple(payoffs.shape[2:]), concept)


def dense_gains(g: Gains) -> np.ndarray:
    """The dense constraint matrix ``M: [K, |A|]`` of one game (reference code, tests)."""
    if g.values.ndim != 2:
        raise ValueError("dense_gains takes the gains of one game, not a batch")
    num_joint = g.rows.shape[0]
    dense = np.zeros((g.num_constraints, num_joint))
    cols = np.broadcast_to(np.arange(num_joint)[:, None], g.rows.shape)
    np.add.at(dense, (g.rows, cols), g.values)
    return dense


def duals_by_player(duals: np.ndarray, shape: Sequence[int], concept: str) -> list[np.ndarray]:
    """Splits flat duals ``[..., K]`` into per-player arrays.

    Returns a list of N arrays: ``[..., A_p]`` (CCE) or ``[..., A_p, A_p]`` indexed
    ``[dev a', rec a'']`` with a zero diagonal (CE).
    """
    concept = check_concept(concept)
    offsets = _player_offsets(shape, concept)
    out = []
    for p, n in enumerate(shape):
        block = duals[..., offsets[p] : offsets[p + 1]]
        if concept == "cce":
            out.append(np.array(block))
            continue
        full = np.zeros(duals.shape[:-1] + (n, n), dtype=duals.dtype)
        dev, rec = np.nonzero(~np.eye(n, dtype=bool))
        full[..., dev, rec] = block[..., _ce_index(dev, rec, n)]
        out.append(full)
    return out


def duals_from_players(per_player: Sequence[np.ndarray], concept: str) -> np.ndarray:
    """Inverse of ``duals_by_player``: per-player arrays to flat duals ``[..., K]``.

    CE diagonals are ignored.
    """
    concept = check_concept(concept)
    blocks = []
    for block in per_player:
        block = np.asarray(block, dtype=np.float64)
        if concept == "cce":
            blocks.append(block)
            continue
        n = block.shape[-1]
        dev, rec = np.nonzero(~np.eye(n, dtype=bool))
        order = np.argsort(_ce_index(dev, rec, n))
        blocks.append(block[..., dev[order], rec[order]])
    return np.concatenate(blocks, axis=-1)
