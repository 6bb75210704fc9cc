"""Benchmark game suites: L2-invariant random games, GAMUT-style structured classes, classics.

Every generator returns float64 payoffs ``[N, A1..AN]`` (one game) from a seeded
``numpy.random.Generator``; ``suite(...)`` returns named batches of one shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from solvers.game import normalise_batch

__all__ = [
    "GameSet",
    "CLASSIC_GAMES",
    "STRUCTURED_CLASSES",
    "l2_invariant_games",
    "classic_games",
    "structured_games",
]


class GameSet(NamedTuple):
    """A named batch of games of one shape: ``payoffs: [B, N, A1..AN]``."""

    name: str
    payoffs: np.ndarray


def l2_invariant_games(rng: np.random.Generator, num_games: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform samples from the L2-invariant sphere (DESIGN §5): ``[B, N, A1..AN]``."""
    raw = rng.standard_normal((num_games, len(shape), *shape))
    return normalise_batch(raw).payoffs


# Structured classes (after GAMUT) ------------------------------------------------------
def covariant_game(rng: np.random.Generator, shape: tuple[int, ...], correlation: float) -> np.ndarray:
    """Every joint action's payoff vector ~ N(0, (1 - r) I + r 11^T)."""
    n = len(shape)
    lower = -1.0 / (n - 1)
    r = float(np.clip(correlation, lower + 1e-9, 1.0 - 1e-9))
    cov = (1.0 - r) * np.eye(n) + r * np.ones((n, n))
    chol = np.linalg.cholesky(cov)
    draws = rng.standard_normal((int(np.prod(shape)), n)) @ chol.T
    return draws.T.reshape(n, *shape)


def zero_sum_game(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Two-player zero-sum game with uniform payoffs in [-1, 1]."""
    row = rng.uniform(-1.0, 1.0, size=shape)
    return np.stack([row, -row])


def congestion_game(rng: np.random.Generator, num_players: int, num_facilities: int) -> np.ndarray:
    """Each player picks a non-empty subset of facilities and pays their congestion costs.

    Facility f costs ``c_f(k) = base_f + slope_f * k`` to each of its k users.
    """
    subsets = [s for r in range(1, num_facilities + 1) for s in itertools.combinations(range(num_facilities), r)]
    base = rng.uniform(0.0, 1.0, num_facilities)
    slope = rng.uniform(0.1, 1.0, num_facilities)
    num_actions = len(subsets)
    shape = (num_actions,) * num_players
    payoffs = np.zeros((num_players, *shape))
    for joint in np.ndindex(*shape):
        load = np.zeros(num_facilities)
        for a in joint:
            load[list(subsets[a])] += 1
        for p, a in enumerate(joint):
            fac = list(subsets[a])
            payoffs[(p, *joint)] = -np.sum(base[fac] + slope[fac] * load[fac])
    return payoffs


def dispersion_game(rng: np.random.Generator, num_players: int, num_actions: int) -> np.ndarray:
    """Players gain from being alone on their action (values drawn per action)."""
    value = rng.uniform(0.5, 1.5, num_actions)
    shape = (num_actions,) * num_players
    payoffs = np.zeros((num_players, *shape))
    for joint in np.ndindex(*shape):
        counts = np.bincount(joint, minlength=num_actions)
        for p, a in enumerate(joint):
            payoffs[(p, *joint)] = value[a] / counts[a]
    return payoffs


def war_of_attrition(rng: np.random.Generator, num_actions: int) -> np.ndarray:
    """Two players choose how long to fight; the longer stayer wins the prize, both pay time."""
    value = rng.uniform(num_actions / 2, 2.0 * num_actions, 2)
    t = np.arange(num_actions, dtype=float)
    ti, tj = np.meshgrid(t, t, indexing="ij")
    stop = np.minimum(ti, tj)
    row = np.where(ti > tj, value[0], np.where(ti == tj, value[0] / 2, 0.0)) - stop
    col = np.where(tj > ti, value[1], np.where(ti == tj, value[1] / 2, 0.0)) - stop
    return np.stack([row, col])


def travelers_dilemma(rng: np.random.Generator, num_actions: int) -> np.ndarray:
    """Claims 2..K+1; the lower claim is paid to both, plus/minus a reward R to each side."""
    reward = rng.uniform(1.0, 3.0)
    claims = np.arange(2, num_actions + 2, dtype=float)
    ci, cj = np.meshgrid(claims, claims, indexing="ij")
    low = np.minimum(ci, cj)
    row = low + np.where(ci < cj, reward, np.where(ci > cj, -reward, 0.0))
    return np.stack([row, row.T])


def minimum_effort(rng: np.random.Generator, num_players: int, num_actions: int) -> np.ndarray:
    """Payoff ``a + b * min(effort) - c * own effort`` with ``b > c > 0``."""
    b = rng.uniform(1.0, 2.0)
    c = rng.uniform(0.1, 0.9) * b
    shape = (num_actions,) * num_players
    efforts = np.indices(shape).astype(float) + 1.0  # [N, A..]
    least = efforts.min(axis=0)
    return b * least[None] - c * efforts


STRUCTURED_CLASSES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "covariant_neg": lambda rng, a: covariant_game(rng, (a, a), -0.9),
    "covariant_pos": lambda rng, a: covariant_game(rng, (a, a), 0.9),
    "zero_sum": lambda rng, a: zero_sum_game(rng, (a, a)),
    "congestion": lambda rng, a: congestion_game(rng, 2, max(2, int(np.log2(a + 1)))),
    "dispersion": lambda rng, a: dispersion_game(rng, 2, a),
    "war_of_attrition": lambda rng, a: war_of_attrition(rng, a),
    "travelers_dilemma": lambda rng, a: travelers_dilemma(rng, a),
    "minimum_effort": lambda rng, a: minimum_effort(rng, 2, a),
}


def structured_games(rng: np.random.Generator, num_games: int, num_actions: int = 8) -> Iterator[GameSet]:
    """One ``GameSet`` per structured class (2 players, about ``num_actions`` actions each)."""
    for name, make in STRUCTURED_CLASSES.items():
        games = np.stack([make(rng, num_actions) for _ in range(num_games)])
        yield GameSet(name, games)


# Classic games ----------------------------------------------------------------------------
CLASSIC_GAMES: dict[str, np.ndarray] = {
    "prisoners_dilemma": np.array([[[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]]]),
    "matching_pennies": np.array([[[1.0, -1.0], [-1.0, 1.0]], [[-1.0, 1.0], [1.0, -1.0]]]),
    "rock_paper_scissors": np.stack(
        [np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]),
         -np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])]
    ),
    "shapley": np.stack(
        [np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
         np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])]
    ),
    "chicken": np.array([[[0.0, -1.0], [1.0, -10.0]], [[0.0, 1.0], [-1.0, -10.0]]]),
    "battle_of_sexes": np.array([[[3.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [0.0, 3.0]]]),
    "stag_hunt": np.array([[[4.0, 1.0], [3.0, 3.0]], [[4.0, 3.0], [1.0, 3.0]]]),
}


def classic_games() -> Iterator[GameSet]:
    """Each classic game as a batch of one."""
    for name, payoffs in CLASSIC_GAMES.items():
        yield GameSet(name, payoffs[None])
