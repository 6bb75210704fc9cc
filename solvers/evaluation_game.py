"""Agent-vs-task evaluation games from a score matrix (DESIGN §13).

Liu et al. (ICLR 2025, "Re-evaluating Open-ended Evaluation of Large Language
Models") and Marris et al. (2022, "Game Theoretic Rating in N-player general-sum
games with Equilibria") rate agents and tasks at an equilibrium of a 3-player game
built from ``scores [agents, tasks]``.

Conventions of ``evaluation_game``:

- players ``[task, agent, agent]``; the payoff tensor is ``[3, T, A, A]`` with axes
  ``(player, task t, agent a1, agent a2)``;
- ``d_t(a1, a2)`` is the *margin* of agent ``a1`` over ``a2`` on task ``t``, antisymmetric
  (``d_t(a2, a1) = -d_t(a1, a2)``, exactly, also in floating point);
- payoffs: task ``|d_t(a1, a2)|`` (a task is rewarded for separating the agents), agent 1
  ``d_t(a1, a2)``, agent 2 ``d_t(a2, a1) = -d_t(a1, a2)``. The two agent players are
  exchangeable (DESIGN §10): swapping them maps the game onto itself.

Margins per normaliser (each task's column ``s = scores[:, t]`` separately):

- ``"ptp"``: ``(s - min s) / (max s - min s)`` in [0, 1]; ``d = s(a1) - s(a2)``.
- ``"zscore"``: ``(s - mean s) / std s`` (population std, ``ddof=0``); ``d`` likewise.
- ``"rank"``: average ranks (ties share their mean rank) scaled to [0, 1] by
  ``(rank - 1) / (A - 1)``; ``d`` likewise.
- ``"winrate"``: ``d = P(a1 beats a2) - 1/2`` in [-1/2, 1/2]. With standard deviations
  ``sd``, scores are independent normals ``N(s_a, sd_a^2)`` and
  ``P(a1 beats a2) = Phi((s_a1 - s_a2) / sqrt(sd_a1^2 + sd_a2^2))``; without ``sd`` (or
  where both sds are 0) it is 1, 1/2 or 0 as ``s_a1 >, =, < s_a2`` (a tie counts half).
  ``P - 1/2`` is antisymmetric because ``P(a2 beats a1) = 1 - P(a1 beats a2)``.

Tasks on which every agent scores the same are refused (ValueError naming the task):
they carry no information and would divide by zero in "ptp" / "zscore".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special, stats

__all__ = ["NORMALISERS", "evaluation_game", "score_margins", "check_scores"]

NORMALISERS = ("ptp", "zscore", "rank", "winrate")

TASK, AGENT1, AGENT2 = 0, 1, 2  # player order of the evaluation game


def _names(names: Sequence[str] | None, count: int, what: str) -> list[str]:
    if names is None:
        return [f"{what} {i}" for i in range(count)]
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(f"{len(names)} {what} names for {count} {what}s")
    return [f"{what} {i} ({n!r})" for i, n in enumerate(names)]


def check_scores(
    scores: object,
    sd: object = None,
    *,
    agents: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validates ``scores [A, T]`` (and ``sd``: a scalar or ``[A, T]``); returns float64 copies.

    Raises:
      TypeError: non-numeric scores or sd.
      ValueError: not 2-D, fewer than 2 agents or 1 task, NaN / inf (naming the cell),
        a constant task column (naming the task), sd of another shape, negative or not finite.
    """
    try:
        s = np.array(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"scores must be a numeric [agents, tasks] array: {err}") from err
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D [agents, tasks], got shape {s.shape}")
    num_agents, num_tasks = s.shape
    if num_agents < 2:
        raise ValueError(f"scores need >= 2 agents (rows) to compare, got {num_agents}")
    if num_tasks < 1:
        raise ValueError("scores need >= 1 task (column), got 0")
    agent_names = _names(agents, num_agents, "agent")
    task_names = _names(tasks, num_tasks, "task")
    bad = np.argwhere(~np.isfinite(s))
    if bad.size:
        a, t = bad[0]
        raise ValueError(f"scores[{a}, {t}] ({agent_names[a]}, {task_names[t]}) is {s[a, t]}; "
                         f"scores must be finite ({len(bad)} bad cell(s))")
    constant = np.flatnonzero(np.ptp(s, axis=0) == 0)
    if constant.size:
        t = constant[0]
        raise ValueError(f"{task_names[t]}: every agent scores {s[0, t]:g}, so it cannot separate agents; "
                         f"drop it ({constant.size} constant task(s): "
                         f"{', '.join(task_names[i] for i in constant[:5])}{' ...' if constant.size > 5 else ''})")
    if sd is None:
        return s, None
    try:
        d = np.array(sd, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"sd must be numeric: {err}") from err
    if d.ndim == 0:
        d = np.full(s.shape, float(d))
    if d.shape != s.shape:
        raise ValueError(f"sd must be a scalar or of the scores' shape {s.shape} [agents, tasks], got {d.shape}")
    bad = np.argwhere(~(np.isfinite(d) & (d >= 0)))
    if bad.size:
        a, t = bad[0]
        raise ValueError(f"sd[{a}, {t}] ({agent_names[a]}, {task_names[t]}) is {d[a, t]}; "
                         "standard deviations must be finite and >= 0")
    return s, d


def _normalised_columns(s: np.ndarray, normaliser: str) -> np.ndarray:
    if normaliser == "ptp":
        lo = s.min(axis=0)
        return (s - lo) / (s.max(axis=0) - lo)
    if normaliser == "zscore":
        return (s - s.mean(axis=0)) / s.std(axis=0)
    # rank: average ranks 1..A, ties share their mean
    return (stats.rankdata(s, method="average", axis=0) - 1.0) / (s.shape[0] - 1)


def _winrate_margins(s: np.ndarray, sd: np.ndarray | None) -> np.ndarray:
    """``[T, A, A]`` ``P(a1 beats a2) - 1/2`` (upper triangle computed, lower = -transpose)."""
    diff = (s[:, None, :] - s[None, :, :]).transpose(2, 0, 1)  # [T, A, A]: s_t(a1) - s_t(a2)
    hard = 0.5 * np.sign(diff)
    if sd is None:
        margins = hard
    else:
        var = (sd[:, None, :] ** 2 + sd[None, :, :] ** 2).transpose(2, 0, 1)
        scale = np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            # Phi(x) - 1/2 = erf(x / sqrt 2) / 2, odd in x
            soft = 0.5 * special.erf(diff / (scale * math.sqrt(2.0)))
        margins = np.where(scale > 0, soft, hard)
    upper = np.triu(margins, k=1)
    return upper - upper.transpose(0, 2, 1)


def score_margins(
    scores: object,
    normaliser: str = "ptp",
    sd: object = None,
    *,
    agents: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> np.ndarray:
    """``d [T, A, A]``: the margin ``d_t(a1, a2)`` of agent a1 over a2 on task t (antisymmetric).

    Args:
      scores: ``[A, T]`` (agents are rows, tasks columns), higher is better.
      normaliser: "ptp", "zscore", "rank" or "winrate" (module docstring).
      sd: standard deviations of the scores, a scalar or ``[A, T]``, >= 0; only for "winrate".
      agents, tasks: names, used in error messages.
    """
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser must be one of {NORMALISERS}, got {normaliser!r}")
    if sd is not None and normaliser != "winrate":
        raise ValueError(f"sd is used only by normaliser='winrate', not {normaliser!r}")
    s, d = check_scores(scores, sd, agents=agents, tasks=tasks)
    if normaliser == "winrate":
        return _winrate_margins(s, d)
    z = _normalised_columns(s, normaliser).T  # [T, A]
    return z[:, :, None] - z[:, None, :]


def evaluation_game(
    scores: object,
    normaliser: str = "ptp",
    sd: object = None,
    *,
    agents: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> np.ndarray:
    """The agent-vs-task game ``[3, T, A, A]`` of players ``[task, agent, agent]``.

    Payoffs (module docstring): ``G[0] = |d|``, ``G[1] = d``, ``G[2] = -d`` with
    ``d = score_margins(scores, normaliser, sd)`` ``[T, A, A]``.

    Args:
      scores: ``[A, T]`` scores, agents as rows, tasks as columns (A >= 2, T >= 1).
      normaliser: "ptp" (default), "zscore", "rank" or "winrate".
      sd: ``[A, T]`` or scalar standard deviations (>= 0) for "winrate"; None: hard wins.
      agents, tasks: names, used in error messages.

    Returns:
      ``[3, T, A, A]`` float64 payoffs.

    Raises:
      TypeError, ValueError: see ``check_scores``; an unknown normaliser; sd with a
        normaliser other than "winrate".
    """
    d = score_margins(scores, normaliser, sd, agents=agents, tasks=tasks)
    return np.stack([np.abs(d), d, -d])
