"""Exchangeable players: detection and verification (DESIGN §10).

Players ``p`` and ``q`` are *exchangeable* when swapping them maps the game onto itself:
their action sets have the same size and, with ``swap(a)`` the joint action ``a`` with
entries ``p`` and ``q`` exchanged,

    G_q(a) = G_p(swap(a)),   G_p(a) = G_q(swap(a)),   G_r(a) = G_r(swap(a)) for r != p, q.

(The third condition, on the other players, is what makes the selection problem
invariant; DESIGN §10 states the first.) The unique selected (C)CE of such a game is
swap-invariant. ``find_symmetries`` finds groups of mutually exchangeable players,
``check_symmetry`` verifies given groups and reports the largest violation, and
``symmetrise`` averages a joint over a group's permutations. ``resolve_symmetry`` turns
``solve``'s ``symmetry=`` argument into verified groups; the solver that shares the duals
of exchangeable players is ``solvers.matrix_free.TiedGame`` (newton-cg).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from solvers.game import as_game

__all__ = [
    "Violation",
    "swap_violation",
    "find_symmetries",
    "check_symmetry",
    "as_groups",
    "symmetrise",
    "joint_asymmetry",
    "resolve_symmetry",
    "check_selection_symmetry",
]

DEFAULT_ATOL = 1e-9
MAX_GROUP_PERMUTATIONS = 40320  # 8!: symmetrise averages over every permutation of a group


class Violation(NamedTuple):
    """The largest payoff change ``|G'_r(a) - G_r(a)|`` when players p and q are swapped."""

    value: float
    player: int  # the payoff player r where it occurs
    action: tuple[int, ...]  # the joint action a where it occurs


def _swapped_game(payoffs: np.ndarray, p: int, q: int) -> np.ndarray:
    """``H[r](a) = G[pi(r)](swap(a))``, pi = (p q): equals ``G`` iff p, q are exchangeable."""
    order = list(range(payoffs.shape[0]))
    order[p], order[q] = q, p
    return np.swapaxes(payoffs[order], p + 1, q + 1)


def swap_violation(game: np.ndarray, p: int, q: int) -> Violation:
    """The largest violation of the exchangeability of players p and q (inf: action counts differ).

    Args:
      game: ``[N, A1..AN]`` payoffs.
      p, q: distinct player indices.
    """
    payoffs = as_game(game)
    n = payoffs.shape[0]
    for x in (p, q):
        if not isinstance(x, (int, np.integer)) or not 0 <= x < n:
            raise ValueError(f"player index {x!r} is not in 0..{n - 1}")
    if p == q:
        raise ValueError(f"players to swap must differ, got {p} and {q}")
    if payoffs.shape[p + 1] != payoffs.shape[q + 1]:
        return Violation(float("inf"), p, ())
    diff = np.abs(_swapped_game(payoffs, int(p), int(q)) - payoffs)
    flat = int(np.argmax(diff))
    where = np.unravel_index(flat, diff.shape)
    return Violation(float(diff.flat[flat]), int(where[0]), tuple(int(i) for i in where[1:]))


def find_symmetries(game: np.ndarray, atol: float = DEFAULT_ATOL) -> tuple[tuple[int, ...], ...]:
    """Groups of mutually exchangeable players (every pair within ``atol``), size >= 2.

    Players are taken in order; each joins the first group all of whose members it is
    exchangeable with (for an exactly symmetric game these are the orbits of the
    transpositions it admits).

    Args:
      game: ``[N, A1..AN]`` payoffs.
      atol: absolute tolerance on the payoff change, in payoff units.

    Returns:
      Sorted tuples of player indices, e.g. ``((1, 2),)`` for an evaluation game.
    """
    payoffs = as_game(game)
    atol = _check_atol(atol)
    groups: list[list[int]] = []
    for r in range(payoffs.shape[0]):
        for group in groups:
            if all(swap_violation(payoffs, m, r).value <= atol for m in group):
                group.append(r)
                break
        else:
            groups.append([r])
    return tuple(tuple(g) for g in groups if len(g) > 1)


def _check_atol(atol: float) -> float:
    if not isinstance(atol, (int, float, np.floating)) or not atol >= 0 or not np.isfinite(atol):
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}")
    return float(atol)


def as_groups(groups: object, num_players: int) -> tuple[tuple[int, ...], ...]:
    """Validates player groups: disjoint sequences of >= 2 distinct indices in ``0..N-1``."""
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise TypeError(f"groups must be a sequence of player-index sequences, got {groups!r}")
    seen: set[int] = set()
    out = []
    for group in groups:
        if isinstance(group, (str, bytes)) or not isinstance(group, Sequence):
            raise TypeError(f"each group must be a sequence of player indices, got {group!r}")
        members = []
        for x in group:
            if not isinstance(x, (int, np.integer)) or isinstance(x, bool) or not 0 <= x < num_players:
                raise ValueError(f"group {tuple(group)}: player {x!r} is not in 0..{num_players - 1}")
            if int(x) in seen:
                raise ValueError(f"player {int(x)} appears in more than one group (or twice): {groups!r}")
            seen.add(int(x))
            members.append(int(x))
        if len(members) < 2:
            raise ValueError(f"a group needs >= 2 players, got {tuple(group)}")
        out.append(tuple(sorted(members)))
    return tuple(out)


def check_symmetry(game: np.ndarray, groups: object, atol: float = DEFAULT_ATOL) -> float:
    """Verifies that every pair of players in each group is exchangeable; returns the largest violation.

    Args:
      game: ``[N, A1..AN]`` payoffs.
      groups: e.g. ``((1, 2),)``: disjoint groups of player indices.
      atol: absolute tolerance on the payoff change, in payoff units.

    Returns:
      The largest ``|G'_r(a) - G_r(a)|`` over the groups' pairs (0.0 for no groups).

    Raises:
      ValueError: bad groups; two players of a group with different action counts, or a
        violation above ``atol`` (naming the players, the payoff player, the joint action
        and the value).
    """
    payoffs = as_game(game)
    atol = _check_atol(atol)
    worst = 0.0
    for group in as_groups(groups, payoffs.shape[0]):
        for p, q in itertools.combinations(group, 2):
            if payoffs.shape[p + 1] != payoffs.shape[q + 1]:
                raise ValueError(f"players {p} and {q} are not exchangeable: {payoffs.shape[p + 1]} vs "
                                 f"{payoffs.shape[q + 1]} actions")
            v = swap_violation(payoffs, p, q)
            if v.value > atol:
                raise ValueError(f"players {p} and {q} are not exchangeable: swapping them changes player "
                                 f"{v.player}'s payoff at joint action {v.action} by {v.value:.3g} > atol {atol:g}")
            worst = max(worst, v.value)
    return worst


def _group_permutations(group: tuple[int, ...]) -> list[list[int]]:
    count = 1
    for k in range(2, len(group) + 1):
        count *= k
    if count > MAX_GROUP_PERMUTATIONS:
        raise ValueError(f"group {group} has {count} permutations (> {MAX_GROUP_PERMUTATIONS}) to average")
    return [list(perm) for perm in itertools.permutations(group)]


def _permuted(joint: np.ndarray, group: tuple[int, ...], perm: list[int]) -> np.ndarray:
    axes = list(range(joint.ndim))
    for src, dst in zip(group, perm, strict=True):
        axes[dst] = src
    return np.transpose(joint, axes)


def symmetrise(joint: np.ndarray, groups: object) -> np.ndarray:
    """``[A1..AN]`` the joint averaged over every permutation of each group's axes.

    For a swap-invariant joint this changes only rounding; the result is exactly invariant
    (up to the order of floating-point sums).
    """
    out = np.asarray(joint, dtype=np.float64)
    for group in as_groups(groups, out.ndim):
        sizes = {out.shape[p] for p in group}
        if len(sizes) > 1:
            raise ValueError(f"group {group}: players have different action counts {sorted(sizes)}")
        perms = _group_permutations(group)
        out = sum(_permuted(out, group, perm) for perm in perms) / len(perms)
    return np.ascontiguousarray(out)


def joint_asymmetry(joint: np.ndarray, groups: object) -> float:
    """``max |joint - joint with the axes of p, q swapped|`` over the pairs of each group."""
    sigma = np.asarray(joint, dtype=np.float64)
    worst = 0.0
    for group in as_groups(groups, sigma.ndim):
        for p, q in itertools.combinations(group, 2):
            if sigma.shape[p] != sigma.shape[q]:
                raise ValueError(f"players {p} and {q} have different action counts")
            worst = max(worst, float(np.max(np.abs(np.swapaxes(sigma, p, q) - sigma))))
    return worst


def resolve_symmetry(game: np.ndarray, symmetry: object) -> tuple[tuple[int, ...], ...]:
    """``solve``'s ``symmetry=`` as verified groups: None (off) gives ``()``; "auto"
    ``find_symmetries``; groups (e.g. ``[(1, 2)]``) are checked with ``check_symmetry``.
    The tolerance is ``DEFAULT_ATOL`` relative to ``max(1, max |payoff|)``.

    Raises:
      ValueError: groups whose players are not exchangeable (naming the players, the payoff
        player, the joint action and the size of the change), or a bad ``symmetry``.
    """
    if symmetry is None:
        return ()
    payoffs = as_game(game)
    atol = DEFAULT_ATOL * max(1.0, float(np.max(np.abs(payoffs))))
    if isinstance(symmetry, str):
        if symmetry != "auto":
            raise ValueError(f"symmetry must be None, 'auto' or groups of players such as [(1, 2)], got {symmetry!r}")
        return find_symmetries(payoffs, atol)
    groups = as_groups(symmetry, payoffs.shape[0])
    try:
        check_symmetry(payoffs, groups, atol)
    except ValueError as err:
        raise ValueError(f"symmetry={symmetry!r}: {err}") from None
    return groups


def check_selection_symmetry(base_logits: np.ndarray, eps_hat: np.ndarray, eps_plus: np.ndarray,
                             groups: tuple[tuple[int, ...], ...], shape: tuple[int, ...],
                             atol: float = 1e-12) -> None:
    """ValueError unless the selection is invariant too: base logits (``|A|`` values of
    ``shape``) unchanged by
    swapping a group's players and ``eps_hat``, ``eps_plus`` (``[N]``) equal within each group
    (e.g. a welfare target or per-player eps that break the symmetry)."""
    base = np.asarray(base_logits, dtype=np.float64).reshape(shape)
    for group in groups:
        for p, q in itertools.combinations(group, 2):
            for name, vec in (("eps_hat", eps_hat), ("eps_plus", eps_plus)):
                if not np.isclose(float(vec[p]), float(vec[q]), rtol=0.0, atol=atol) and vec[p] != vec[q]:
                    raise ValueError(f"symmetry: the selection's {name} differs for players {p} and {q} "
                                     f"({float(vec[p]):.3g} vs {float(vec[q]):.3g})")
            swapped = np.swapaxes(base, p, q)
            finite = np.isfinite(base)
            if np.any(finite != np.isfinite(swapped)) or (
                    np.any(finite) and float(np.max(np.abs(base[finite] - swapped[finite]))) > atol):
                raise ValueError(f"symmetry: the selection's target (base logits) changes when players {p} "
                                 f"and {q} are swapped")
