"""Ratings of actions at an equilibrium, and rating agents and tasks from scores (DESIGN §13).

The rating of action ``a'`` of player ``p`` at a joint ``sigma`` (a CE or a CCE) is the
gain of deviating to ``a'`` unconditionally:

    r_p(a') = E_sigma[G_p(a', a_-p)] - E_sigma[G_p(a)]                        (1)

the CCE deviation gain of Marris et al. 2022 ("Game Theoretic Rating in N-player
general-sum games with Equilibria") and of the deviation ratings of Marris et al.,
ICLR 2025. It is ``<= 0`` for every action at any CCE (hence at any CE); the best
actions have rating 0 only where no deviation is strictly worse. ``ratings`` returns (1)
for both concepts. For a CE it is also the sum over recommended actions ``a`` of the
conditional gains (polarix's convention, DESIGN §13)

    r_p(a') = sum_a E_sigma[1{a_p = a} (G_p(a', a_-p) - G_p(a))],

whose terms ``conditional_gains`` returns (``[A_p, A_p]``, each ``<= 0`` at a CE, the
column sums are (1)); the two conventions give the same number.

``rate`` builds the evaluation game of ``solvers.evaluation_game``, solves its selected
(C)CE with ``solvers.solve`` and returns the agents' and tasks' ratings and marginals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from solvers.api import solve
from solvers.evaluation_game import AGENT1, AGENT2, TASK, check_scores, evaluation_game
from solvers.game import as_game
from solvers.solution import Solution
from solvers.symmetry import (
    DEFAULT_ATOL,
    as_groups,
    check_symmetry,
    find_symmetries,
    joint_asymmetry,
    symmetrise,
)

__all__ = ["Rating", "ratings", "conditional_gains", "rate"]


def _check_joint(joint: object, shape: tuple[int, ...], atol: float = 1e-6) -> np.ndarray:
    sigma = np.asarray(joint, dtype=np.float64)
    if sigma.shape != shape:
        raise ValueError(f"joint must have the game's action shape {shape}, got {sigma.shape}")
    if not np.all(np.isfinite(sigma)) or np.min(sigma) < -atol or abs(sigma.sum() - 1.0) > atol:
        raise ValueError(f"joint must be a distribution (finite, >= 0, sums to 1; sum {sigma.sum():.6g}, "
                         f"min {np.min(sigma):.3g})")
    return sigma


def _player_view(payoffs: np.ndarray, sigma: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """``G_p`` and ``sigma`` as ``[A_p, R]`` (R: the other players' joint actions)."""
    g = np.moveaxis(payoffs[p], p, 0)
    s = np.moveaxis(sigma, p, 0)
    return g.reshape(g.shape[0], -1), s.reshape(s.shape[0], -1)


def ratings(game: np.ndarray, joint: np.ndarray, symmetry: object = None,
            atol: float = DEFAULT_ATOL) -> tuple[np.ndarray, ...]:
    """Each player's action ratings ``r_p [A_p]`` at ``joint`` (equation (1) of the module).

    Args:
      game: ``[N, A1..AN]`` payoffs.
      joint: ``[A1..AN]`` a distribution (e.g. ``Solution.joint`` of a CE or CCE).
      symmetry: None, or groups of exchangeable players (e.g. ``((1, 2),)``; "auto":
        ``find_symmetries``). The groups are verified (``check_symmetry``, ValueError
        otherwise) and the joint is averaged over them first (``symmetrise``); the
        ratings of a group are computed for its first player and copied to the others
        (equal in exact arithmetic), so exchangeable players get identical ratings.
      atol: payoff tolerance of the symmetry check.

    Returns:
      N arrays ``[A_p]`` in payoff units; ``<= 0`` (up to the solve tolerance) at a CCE.
    """
    payoffs = as_game(game)
    sigma = _check_joint(joint, payoffs.shape[1:])
    groups = _resolve_symmetry(payoffs, symmetry, atol)
    if groups:
        sigma = symmetrise(sigma, groups)
    # exchangeable players at a symmetric joint have equal ratings: computed once a group
    representative = {q: group[0] for group in groups for q in group}
    out: list[np.ndarray] = []
    for p in range(payoffs.shape[0]):
        if representative.get(p, p) != p:
            out.append(out[representative[p]].copy())
            continue
        g, s = _player_view(payoffs, sigma, p)
        others = s.sum(axis=0)  # [R] the other players' marginal
        out.append(g @ others - float(np.sum(g * s)))
    return tuple(out)


def conditional_gains(game: np.ndarray, joint: np.ndarray, player: int) -> np.ndarray:
    """``[A_p, A_p]`` ``c[a, a'] = E_sigma[1{a_p = a} (G_p(a', a_-p) - G_p(a))]`` (DESIGN §11).

    Rows are recommended actions, columns deviations; ``c.sum(0)`` is ``ratings(...)[player]``
    and ``c.max()`` the player's CE gap.
    """
    payoffs = as_game(game)
    if not isinstance(player, (int, np.integer)) or not 0 <= player < payoffs.shape[0]:
        raise ValueError(f"player must be in 0..{payoffs.shape[0] - 1}, got {player!r}")
    sigma = _check_joint(joint, payoffs.shape[1:])
    g, s = _player_view(payoffs, sigma, int(player))
    return s @ g.T - np.sum(s * g, axis=1)[:, None]


def _resolve_symmetry(payoffs: np.ndarray, symmetry: object, atol: float) -> tuple[tuple[int, ...], ...]:
    if symmetry is None:
        return ()
    if isinstance(symmetry, str):
        if symmetry != "auto":
            raise ValueError(f"symmetry must be None, 'auto' or player groups, got {symmetry!r}")
        return find_symmetries(payoffs, atol)
    check_symmetry(payoffs, symmetry, atol)
    return as_groups(symmetry, payoffs.shape[0])


TIE_RTOL = 1e-9  # ratings this close (relative to the payoff range) rank as ties


def _order(values: np.ndarray, marginal: np.ndarray, payoff_range: float) -> np.ndarray:
    tie = TIE_RTOL * max(float(payoff_range), np.finfo(np.float64).tiny)
    return np.lexsort((-marginal, -np.round(values / tie)))


@dataclass(frozen=True, eq=False)
class Rating:
    """Agents and tasks rated at the selected (C)CE of their evaluation game.

    Attributes:
      agents, tasks: names (``A`` and ``T``).
      agent_ratings: ``[A]`` ``r(a)`` of an agent player (both are equal: symmetric joint).
      task_ratings: ``[T]`` ``r(t)`` of the task player.
      agent_marginal: ``[A]`` the agent players' (common) equilibrium marginal.
      task_marginal: ``[T]`` the task player's equilibrium marginal.
      game: ``[3, T, A, A]`` the evaluation game (``solvers.evaluation_game``).
      solution: the ``Solution`` of ``solvers.solve`` (its joint is not symmetrised).
      normaliser: how scores were normalised.
      symmetry: the exchangeable player groups used (``((1, 2),)``).
      symmetry_violation: the largest payoff change of swapping the agent players.
      joint_asymmetry: ``max |sigma - sigma with the agent axes swapped|`` of the solution.
    """

    agents: tuple[str, ...]
    tasks: tuple[str, ...]
    agent_ratings: np.ndarray
    task_ratings: np.ndarray
    agent_marginal: np.ndarray
    task_marginal: np.ndarray
    game: np.ndarray
    solution: Solution
    normaliser: str
    symmetry: tuple[tuple[int, ...], ...]
    symmetry_violation: float
    joint_asymmetry: float

    @property
    def ok(self) -> bool:
        """True when the equilibrium is certified (``Solution.status`` "optimal")."""
        return self.solution.ok

    def agent_order(self) -> np.ndarray:
        """``[A]`` agent indices, best first: rating, then marginal, descending (stable).

        Ratings within ``TIE_RTOL`` times the agents' payoff range count as equal, so that
        rounding noise (e.g. 1e-16 against 0) does not order agents tied at 0.
        """
        return _order(self.agent_ratings, self.agent_marginal, np.ptp(self.game[AGENT1]))

    def task_order(self) -> np.ndarray:
        """``[T]`` task indices, best first: rating, then marginal, descending (ties as ``agent_order``)."""
        return _order(self.task_ratings, self.task_marginal, np.ptp(self.game[TASK]))

    def to_dict(self) -> dict:
        """JSON-ready: ranked agents and tasks, status, gaps and the conventions used."""
        sol = self.solution
        return {
            "status": sol.status.value,
            "concept": sol.concept,
            "selection": sol.selection.name,
            "normaliser": self.normaliser,
            "method": sol.method,
            "gap": sol.gap,
            "gaps": sol.gaps.tolist(),
            "duality_gap": sol.duality_gap,
            "symmetry": [list(g) for g in self.symmetry],
            "symmetry_violation": None if np.isnan(self.symmetry_violation) else self.symmetry_violation,
            "joint_asymmetry": self.joint_asymmetry,
            "players": ["task", "agent", "agent"],
            "agents": [{"rank": r + 1, "name": self.agents[i], "rating": float(self.agent_ratings[i]),
                        "marginal": float(self.agent_marginal[i])} for r, i in enumerate(self.agent_order())],
            "tasks": [{"rank": r + 1, "name": self.tasks[i], "rating": float(self.task_ratings[i]),
                       "marginal": float(self.task_marginal[i])} for r, i in enumerate(self.task_order())],
            "timings": dict(sol.timings),
        }


def rate(
    scores: object,
    normaliser: str = "ptp",
    concept: str = "cce",
    sd: object = None,
    *,
    agents: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    selection: str = "me",
    symmetry: object = "auto",
    atol: float = DEFAULT_ATOL,
    **solve_options: object,
) -> Rating:
    """Rates agents and tasks at the selected (C)CE of the evaluation game of ``scores``.

    Args:
      scores: ``[A, T]``: agents as rows, tasks as columns, higher is better.
      normaliser: "ptp", "zscore", "rank" or "winrate" (``solvers.evaluation_game``).
      concept: "cce" (default) or "ce".
      sd: ``[A, T]`` or scalar standard deviations, "winrate" only.
      agents, tasks: names (default "0", "1", ...).
      selection: the ``solvers.solve`` preset; the default max-entropy ("me") equilibrium
        is unique, hence symmetric in the two agent players.
      symmetry: "auto" (detect and verify that the agent players are exchangeable, then
        rate on the joint averaged over the swap), None (no check: the agent ratings are
        the mean of the two agent players'), or explicit groups.
      atol: payoff tolerance of the symmetry check.
      **solve_options: passed to ``solvers.solve`` (``tol``, ``method``, ...).

    Returns:
      A ``Rating``; ``rating.ok`` says whether the equilibrium is certified.
    """
    s, _ = check_scores(scores, sd, agents=agents, tasks=tasks)
    num_agents, num_tasks = s.shape
    agent_names = tuple(str(a) for a in agents) if agents is not None else tuple(map(str, range(num_agents)))
    task_names = tuple(str(t) for t in tasks) if tasks is not None else tuple(map(str, range(num_tasks)))
    game = evaluation_game(s, normaliser, sd, agents=agents, tasks=tasks)
    groups = _resolve_symmetry(game, symmetry, atol)
    violation = check_symmetry(game, groups, atol) if groups else float("nan")
    if isinstance(symmetry, str) and (AGENT1, AGENT2) not in groups:
        raise ValueError(f"the agent players of the evaluation game are not exchangeable within atol {atol:g} "
                         f"(groups found: {groups})")
    sol = solve(game, concept, selection, **solve_options)
    asym = joint_asymmetry(sol.joint, ((AGENT1, AGENT2),))
    per_player = ratings(game, sol.joint, symmetry=groups or None, atol=atol)
    sigma = symmetrise(sol.joint, groups) if groups else sol.joint
    task_marginal = sigma.sum(axis=(1, 2))
    agent_marginal = 0.5 * (sigma.sum(axis=(0, 2)) + sigma.sum(axis=(0, 1)))
    return Rating(
        agents=agent_names,
        tasks=task_names,
        agent_ratings=0.5 * (per_player[AGENT1] + per_player[AGENT2]),
        task_ratings=per_player[TASK],
        agent_marginal=agent_marginal,
        task_marginal=task_marginal,
        game=game,
        solution=sol,
        normaliser=normaliser,
        symmetry=groups,
        symmetry_violation=violation,
        joint_asymmetry=asym,
    )
