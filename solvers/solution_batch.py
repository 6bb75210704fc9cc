"""``SolutionBatch``: the result of ``solve_batch`` as stacked arrays (structure of arrays).

A batch holds each group of games of one shape as the stacked payoff-unit arrays of
``solvers.units.payoff_batch`` (or, for the routes that solve game by game, the
``Solution``s themselves). It behaves as a read-only sequence of ``Solution``: ``len``,
iteration and indexing build game ``i``'s ``Solution`` on first access (views into the
stacked arrays, then cached), so code that reads a list of Solutions keeps working, and
code that wants arrays takes ``joints [B, A1..AN]``, ``duals [B, K]``, ``status [B]``,
... without building any.

``status`` is the status every ``Solution`` of the batch reports: the honesty rules of
``Solution`` (``solvers.solution.defect_of``) are applied to the stacked arrays, with the
exact per-game check wherever the vectorised screen is not conclusive.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from types import MappingProxyType
from typing import NamedTuple, overload

import numpy as np

from solvers import units
from solvers.refine import DualResult
from solvers.selection import Selection
from solvers.solution import DUALITY_GAP_ROUNDING, JOINT_SUM_TOL, Solution, Status, defect_of

__all__ = ["SolutionBatch"]


class _Group(NamedTuple):
    """Games of one shape: stacked (``payoff``) or as built ``solutions``."""

    payoff: units.PayoffBatch | None
    solutions: tuple[Solution, ...] | None
    concept: str
    selection: Selection | None
    timings: Mapping[str, float]
    info: Mapping[str, object] | None
    status: tuple[Status, ...]  # after the honesty rules

    @property
    def size(self) -> int:
        return len(self.status)


def _rounded_gap(dgap: np.ndarray, objective: np.ndarray) -> np.ndarray:
    """``Solution``'s rounding of small negative duality gaps to 0, elementwise."""
    with np.errstate(invalid="ignore"):
        rounding = (dgap < 0.0) & (dgap >= -DUALITY_GAP_ROUNDING * np.maximum(1.0, np.abs(objective)))
    return np.where(rounding, 0.0, dgap)


def _honest_status(pb: units.PayoffBatch) -> tuple[Status, ...]:
    """The status each game's ``Solution`` reports: "optimal" downgraded to "inaccurate"
    where ``defect_of`` finds a defect. A vectorised screen clears the usual games (a
    joint sum within half the tolerance, so float rounding of the sum cannot matter);
    the rest get the exact per-game check."""
    res = pb.result
    status = res.status
    optimal = np.fromiter(map(operator.is_, status, repeat(Status.OPTIMAL)), dtype=bool, count=len(status))
    if not optimal.any():
        return tuple(status)
    num_games = len(status)
    joint = res.joint.reshape(num_games, -1)
    dgap = _rounded_gap(res.duality_gap, res.objective)
    with np.errstate(invalid="ignore"):
        clear = (
            (np.abs(joint.sum(axis=1) - 1.0) <= 0.5 * JOINT_SUM_TOL) & (joint.min(axis=1) >= 0.0)
            & np.isfinite(pb.gaps).all(axis=1) & np.isfinite(pb.eps).all(axis=1)
            & np.isfinite(dgap) & (dgap >= 0.0) & np.isfinite(res.objective)
        )
    suspect = np.flatnonzero(optimal & ~clear)
    if suspect.size == 0:
        return tuple(status)
    out = list(status)
    for b in suspect.tolist():
        if defect_of(res.joint[b], pb.gap[b], pb.gaps[b], pb.eps[b], float(dgap[b]), pb.objective[b]) is not None:
            out[b] = Status.INACCURATE
    return tuple(out)


@dataclass(frozen=True, eq=False)
class SolutionBatch(Sequence[Solution]):
    """Solutions of ``B`` games, stacked; a read-only sequence of ``Solution``.

    Indexing with an int builds (once) that game's ``Solution``; a slice gives a list of
    them. The stacked attributes (``joints``, ``duals``, ``eps``, ``gaps``, ``scale``,
    ``marginals``) need games of one shape (ValueError otherwise); the per-game ones
    (``status``, ``gap``, ``duality_gap``, ``objective``, ``iterations``, ``method``,
    ``ok``) are ``[B]`` arrays for any batch. All are in payoff units, as the Solutions'.
    Equality is elementwise with any sequence of Solutions (which compare by identity).

    Attributes:
      groups: the games of each shape group (internal; see ``from_result``).
      where: ``[B, 2]`` int, the group and row of each game.
    """

    groups: tuple[_Group, ...]
    where: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cache", [None] * self.where.shape[0])

    # -- construction ---------------------------------------------------------------

    @staticmethod
    def from_result(result: DualResult, scale: np.ndarray, player: np.ndarray, concept: str, selection: Selection,
                    timings: Mapping[str, float], info: Mapping[str, object] | None = None) -> SolutionBatch:
        """A ``DualResult`` of games of one shape (``scale: [B, N]``, ``player: [K]``) in
        payoff units; ``timings`` per game, shared; ``info`` added to each game's info."""
        group = _payoff_group(result, scale, player, concept, selection, timings, info)
        where = np.zeros((group.size, 2), dtype=np.int64)  # one group in order: concat's result, unchecked
        where[:, 1] = np.arange(group.size)
        batch = SolutionBatch((group,), where)
        for b in np.flatnonzero(~np.asarray(group.payoff.finite, dtype=bool)).tolist():
            batch._solution(b)  # duals overflowing payoff units: built now, so the warning comes with the call
        return batch

    @staticmethod
    def from_solutions(solutions: Sequence[Solution]) -> SolutionBatch:
        """Already built ``Solution``s (kept as they are), in order."""
        if isinstance(solutions, SolutionBatch):
            return solutions
        sols = tuple(solutions)
        for i, sol in enumerate(sols):
            if not isinstance(sol, Solution):
                raise TypeError(f"solutions[{i}] is a {type(sol).__name__}, not a Solution")
        return SolutionBatch.concat([(np.arange(len(sols)), _solutions_group(sols))])

    @staticmethod
    def concat(parts: Sequence[tuple[np.ndarray, SolutionBatch | _Group]]) -> SolutionBatch:
        """One batch from ``(positions, part)`` pairs: part ``j``'s game ``r`` is game
        ``positions[r]`` of the result (the positions of all parts cover ``0..B-1``)."""
        groups: list[_Group] = []
        pos_list, group_rows = [], []
        for positions, part in parts:
            positions = np.asarray(positions, dtype=np.int64)
            if isinstance(part, SolutionBatch):
                for g in range(len(part.groups)):
                    rows = np.flatnonzero(part.where[:, 0] == g)
                    pos_list.append(positions[rows])
                    group_rows.append(np.stack([np.full(rows.size, len(groups)), part.where[rows, 1]], axis=1))
                    groups.append(part.groups[g])
            else:
                if positions.size != part.size:
                    raise ValueError(f"{positions.size} positions for a group of {part.size} games")
                pos_list.append(positions)
                group_rows.append(np.stack([np.full(part.size, len(groups)), np.arange(part.size)], axis=1))
                groups.append(part)
        pos = np.concatenate(pos_list)
        if not np.array_equal(np.sort(pos), np.arange(pos.size)):
            raise ValueError("the parts' positions do not cover 0..B-1 once each")
        where = np.empty((pos.size, 2), dtype=np.int64)
        where[pos] = np.concatenate(group_rows)
        return SolutionBatch(tuple(groups), where)

    # -- the sequence ---------------------------------------------------------------

    def __len__(self) -> int:
        return self.where.shape[0]

    @overload
    def __getitem__(self, index: int) -> Solution: ...

    @overload
    def __getitem__(self, index: slice) -> list[Solution]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._solution(i) for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        num = len(self)
        if not -num <= i < num:
            raise IndexError(f"index {index} out of range for a batch of {num} solutions")
        return self._solution(i % num)

    def __iter__(self) -> Iterator[Solution]:
        return (self._solution(i) for i in range(len(self)))

    def _solution(self, i: int) -> Solution:
        cache = self._cache  # type: ignore[attr-defined]
        sol = cache[i]
        if sol is None:
            g, row = self.where[i].tolist()
            group = self.groups[g]
            if group.solutions is not None:
                sol = group.solutions[row]
            else:
                sol = units.solution(group.payoff, row, group.concept, group.selection, group.timings, group.info)
            cache[i] = sol
        return sol

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # like a list: equality is by content

    def __getstate__(self) -> dict[str, object]:
        groups = tuple(g._replace(timings=dict(g.timings), info=None if g.info is None else dict(g.info))
                       for g in self.groups)
        return {"groups": groups, "where": self.where}

    def __setstate__(self, state: Mapping[str, object]) -> None:
        groups = tuple(g._replace(timings=MappingProxyType(dict(g.timings))) for g in state["groups"])
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "where", state["where"])
        self.__post_init__()

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for s in self.status.tolist():
            counts[s] = counts.get(s, 0) + 1
        shapes = sorted({tuple(self._shape(g)) for g in self.groups})
        return f"SolutionBatch(len={len(self)}, shapes={shapes}, status={counts})"

    # -- stacked arrays ---------------------------------------------------------------

    @staticmethod
    def _shape(group: _Group) -> tuple[int, ...]:
        if group.payoff is not None:
            return tuple(group.payoff.result.joint.shape[1:])
        return tuple(group.solutions[0].joint.shape) if group.solutions else ()

    def _gather(self, of_group, name: str, dtype=None) -> np.ndarray:
        """``[B, ...]`` from each group's ``[b_g, ...]`` array ``of_group(group)``."""
        arrays = [np.asarray(of_group(g), dtype=dtype) for g in self.groups]
        if len(arrays) == 1 and np.array_equal(self.where[:, 1], np.arange(len(self))):
            return arrays[0]
        tails = {a.shape[1:] for a in arrays}
        if len(tails) > 1:
            raise ValueError(f"{name} of games of several shapes are not stacked; index the batch instead")
        out = np.empty((len(self),) + arrays[0].shape[1:], dtype=np.result_type(*arrays))
        for g, array in enumerate(arrays):
            rows = np.flatnonzero(self.where[:, 0] == g)
            out[rows] = array[self.where[rows, 1]]
        return out

    def _field(self, name: str, dtype=None) -> np.ndarray:
        def of_group(group: _Group):
            if group.payoff is not None:
                return getattr(group.payoff, name)
            return [getattr(s, name) for s in group.solutions]
        return self._gather(of_group, name, dtype)

    @cached_property
    def joints(self) -> np.ndarray:
        """``[B, A1..AN]`` the joint distributions."""
        return self._gather(lambda g: g.payoff.result.joint if g.payoff is not None else
                            [s.joint for s in g.solutions], "joints")

    @cached_property
    def duals(self) -> np.ndarray:
        """``[B, K]`` flat duals, payoff units (inf where they overflow, as ``Solution.duals``)."""
        return self._field("duals")

    @cached_property
    def eps(self) -> np.ndarray:
        """``[B, N]``."""
        return self._field("eps")

    @cached_property
    def gaps(self) -> np.ndarray:
        """``[B, N]``."""
        return self._field("gaps")

    @cached_property
    def scale(self) -> np.ndarray:
        """``[B, N]``."""
        return self._field("scale")

    @cached_property
    def marginals(self) -> tuple[np.ndarray, ...]:
        """N arrays ``[B, A_p]``."""
        num_players = len(self._shape(self.groups[0]))
        return tuple(self._gather(lambda g, p=p: g.payoff.margins[p] if g.payoff is not None else
                                  [s.marginals[p] for s in g.solutions], "marginals") for p in range(num_players))

    @cached_property
    def gap(self) -> np.ndarray:
        """``[B]`` float64."""
        return self._field("gap", np.float64)

    @cached_property
    def normalised_gap(self) -> np.ndarray:
        """``[B]`` float64, ``max_p gaps_p * scale_p``."""
        return self._gather(lambda g: np.max(g.payoff.gaps * g.payoff.scale, axis=1) if g.payoff is not None else
                            [s.normalised_gap for s in g.solutions], "normalised_gap", np.float64)

    @cached_property
    def duality_gap(self) -> np.ndarray:
        """``[B]`` float64 (rounded as ``Solution.duality_gap``)."""
        return self._gather(lambda g: _rounded_gap(g.payoff.result.duality_gap, g.payoff.result.objective)
                            if g.payoff is not None else [s.duality_gap for s in g.solutions],
                            "duality_gap", np.float64)

    @cached_property
    def objective(self) -> np.ndarray:
        """``[B]`` float64."""
        return self._gather(lambda g: g.payoff.result.objective if g.payoff is not None else
                            [s.objective for s in g.solutions], "objective", np.float64)

    @cached_property
    def iterations(self) -> np.ndarray:
        """``[B]`` int64."""
        return self._gather(lambda g: g.payoff.result.iterations if g.payoff is not None else
                            [s.iterations for s in g.solutions], "iterations", np.int64)

    @cached_property
    def status(self) -> np.ndarray:
        """``[B]`` str, each game's ``Solution.status`` value."""
        return self._gather(lambda g: [s.value for s in g.status], "status")

    @cached_property
    def method(self) -> np.ndarray:
        """``[B]`` str, each game's ``Solution.method``."""
        return self._gather(lambda g: ["+".join(s) for s in g.payoff.result.stages] if g.payoff is not None else
                            [s.method for s in g.solutions], "method")

    @property
    def ok(self) -> np.ndarray:
        """``[B]`` bool, ``status == "optimal"``."""
        return self.status == Status.OPTIMAL.value

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of ``solvers.solution.stack_solutions`` (games of one shape)."""
        return {
            "joint": self.joints, "duals": self.duals, "eps": self.eps, "gaps": self.gaps, "scale": self.scale,
            "gap": self.gap, "normalised_gap": self.normalised_gap, "duality_gap": self.duality_gap,
            "objective": self.objective, "iterations": self.iterations, "status": self.status,
            "method": self.method,
        }


def _payoff_group(result: DualResult, scale: np.ndarray, player: np.ndarray, concept: str, selection: Selection,
                  timings: Mapping[str, float], info: Mapping[str, object] | None) -> _Group:
    pb = units.payoff_batch(result, scale, player)
    shared = timings if type(timings) is MappingProxyType else MappingProxyType(dict(timings))
    return _Group(pb, None, concept, selection, shared, info, _honest_status(pb))


def _solutions_group(sols: tuple[Solution, ...]) -> _Group:
    return _Group(None, sols, sols[0].concept if sols else "", sols[0].selection if sols else None,
                  MappingProxyType({}), None, tuple(s.status for s in sols))
