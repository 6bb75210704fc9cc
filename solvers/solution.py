"""The result of every solver: a frozen ``Solution`` and its ``Status``."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from solvers.selection import Selection

__all__ = [
    "DEFERRED",
    "JOINT_SUM_TOL",
    "DUALITY_GAP_ROUNDING",
    "Status",
    "Solution",
    "JointScreen",
    "build_solution",
    "deferred_solution",
    "defect_of",
    "defect_rule",
    "joint_screen",
    "optimality_defect",
    "stack_solutions",
]

#: An "optimal" joint sums to 1 within this (softmax sums are exact to ~1e-15).
JOINT_SUM_TOL = 1e-10
#: A negative duality gap within ``DUALITY_GAP_ROUNDING * max(1, |objective|)`` of 0 is
#: rounding (the difference of two values of that size) and is reported as 0.
DUALITY_GAP_ROUNDING = 1e-12


class Status(str, enum.Enum):
    """How a solve ended. Only ``OPTIMAL`` means every tolerance was met."""

    OPTIMAL = "optimal"  # gap and KKT residual within tol; duality gap reported
    INACCURATE = "inaccurate"  # finished, but some tolerance is not met (see the gaps)
    INFEASIBLE = "infeasible"  # no joint satisfies the constraints (eps_hat too small)
    MAX_ITER = "max_iter"  # the iteration cap was hit before tolerance

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
class Solution:
    """A certified equilibrium of one game.

    What ``status == "optimal"`` certifies is the optimum, to ``tol``, of the problem the
    selection poses. With hard constraints (``rho = inf``, the default of every preset but
    "ms") that problem pins ``eps = eps_hat``, so ``gap <= eps_hat`` up to tol. With soft
    constraints ("ms", or any finite ``rho``) the approximation is itself a variable: the
    penalty ``rho`` trades it against the objective and chooses ``eps`` in
    ``[eps_hat, eps_plus]``, reported in ``eps``. A positive ``gap`` under "optimal" is
    then expected whenever the chosen ``eps`` is positive (e.g. Maximum Strength on a game
    with no strict equilibrium): the joint is an ``eps``-(C)CE, with
    ``gaps_p <= eps_p + tol / scale_p`` (payoff units; ``gaps * scale <= eps * scale + tol``
    normalised), not an exact one. Hard-constrain (``rho = inf``, ``eps_hat = 0``) for
    an exact (C)CE.

    Attributes:
      joint: ``[A1..AN]`` the selected joint distribution (non-negative, sums to 1).
      marginals: N arrays ``[A_p]``.
      duals: ``[K]`` flat dual variables in payoff units (layout: ``solvers.gains``).
      eps: ``[N]`` the approximation ``eps_p`` the joint was solved for (payoff units):
        ``eps_hat`` with hard constraints, the penalty's choice with soft ones.
      gap: ``max_{p, dev} E_joint[gain]`` in payoff units (<= 0 up to tol for an exact
        (C)CE with ``eps_hat = 0``).
      gaps: ``[N]`` per-player ``max_dev E_joint[gain]`` in payoff units.
      scale: ``[N]`` the normalisation factor ``s_p``: ``gaps * scale`` are normalised gaps.
      duality_gap: ``L'(duals) - P(joint)`` in the normalised problem: how far the joint's
        objective can be from the optimum of the problem whose constraints are relaxed to
        the joint's own values where it violates them (by at most ``info["violation"]``,
        <= tol when optimal; DESIGN §4 "Certificate"). Hard constraints: ``sum_k
        max(alpha_k g_k, 0)``, >= 0 exactly. Otherwise a negative value within
        ``DUALITY_GAP_ROUNDING * max(1, |objective|)`` of 0 is rounding and reported as 0
        (the raw value in ``info["duality_gap_raw"]``); a value below that keeps its sign
        and the status is not "optimal". So ``duality_gap >= 0`` whenever
        ``status == "optimal"``.
      objective: primal objective value of the normalised problem (from the dual solvers:
        ``L(duals) - duality_gap``, which with hard constraints is ``P(joint)`` less at most
        ``||duals||_1 * violation``, the relaxation the duality gap is certified for).
      iterations: iterations of the iterative stage(s).
      timings: seconds per stage (e.g. "normalise", "face", "refine", "polish", "total").
      status: see ``Status``.
      concept: "cce" or "ce".
      selection: the ``Selection`` solved for.
      method: the method that produced the joint ("newton", "gd", "cvxpy", ...).
      info: diagnostics ("violation", "kkt", "face", ...), read-only like ``timings``
        (a ``Solution`` never changes: add entries with ``dataclasses.replace``). ``"status_reason"`` says why a
        solve the solver reported optimal was downgraded (see below); ``"duals_overflow"``
        / ``"normalised_duals"`` appear when ``duals`` in payoff units overflow float64.

    Fields may be built on first access (``deferred_solution``: the fast path's arrays,
    views of one buffer); they read, pickle and copy as any other.

    Status honesty (enforced here, for every ``Solution`` built): ``status == "optimal"``
    implies finite ``gap``, ``gaps``, ``eps``, ``duality_gap >= 0`` and ``objective``, and a
    finite, non-negative ``joint`` summing to 1 within ``JOINT_SUM_TOL``. A solution
    constructed "optimal" that breaks any of these becomes "inaccurate", with the reason
    in ``info["status_reason"]``.
    """

    joint: np.ndarray
    marginals: tuple[np.ndarray, ...]
    duals: np.ndarray
    eps: np.ndarray
    gap: float
    gaps: np.ndarray
    scale: np.ndarray
    duality_gap: float
    objective: float
    iterations: int
    timings: Mapping[str, float]
    status: Status
    concept: str
    selection: Selection
    method: str
    info: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only mappings over private copies: a Solution never changes after it is
        # built (add a stage with ``dataclasses.replace``). A read-only ``timings`` is
        # shared as it is (e.g. by the games of one ``solve_batch`` group).
        info = dict(self.info)
        if type(self.timings) is not MappingProxyType:
            object.__setattr__(self, "timings", MappingProxyType(dict(self.timings)))
        object.__setattr__(self, "info", MappingProxyType(info))
        _seal(self, info, None)

    def __getattr__(self, name: str) -> object:
        # Only reached for a name missing from __dict__: a deferred field (``deferred_solution``).
        deferred = self.__dict__.get(_DEFERRED)
        if deferred is None or name not in deferred[0]:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        _fill(self)
        return self.__dict__[name]

    def __getstate__(self) -> dict[str, object]:
        _fill(self)
        state = dict(self.__dict__)
        state["info"] = dict(self.info)
        state["timings"] = dict(self.timings)
        return state

    def __setstate__(self, state: Mapping[str, object]) -> None:
        for key, value in state.items():
            if key in ("info", "timings"):
                value = MappingProxyType(dict(value))  # type: ignore[call-overload]
            object.__setattr__(self, key, value)

    @property
    def normalised_gap(self) -> float:
        """``max_p gaps_p * scale_p``: the gap in the L2-invariant units."""
        return float(np.max(self.gaps * self.scale))

    @property
    def ok(self) -> bool:
        return self.status is Status.OPTIMAL

    def __repr__(self) -> str:
        return (
            f"Solution(concept={self.concept!r}, selection={self.selection.name!r}, "
            f"status={self.status.value!r}, gap={self.gap:.3g}, duality_gap={self.duality_gap:.3g}, "
            f"iterations={self.iterations}, method={self.method!r}, shape={self.joint.shape})"
        )


def _seal(sol: Solution, info: dict[str, object], screen: JointScreen | None) -> None:
    """The duality-gap rounding and the status honesty rule of ``Solution`` (``info``: the
    dict behind ``sol.info``; ``screen``: the joint's reductions, None to compute them)."""
    dgap = sol.duality_gap
    if dgap < 0.0 and dgap >= -DUALITY_GAP_ROUNDING * max(1.0, abs(sol.objective)):
        info["duality_gap_raw"] = dgap
        object.__setattr__(sol, "duality_gap", 0.0)
    if sol.status is Status.OPTIMAL:
        if screen is None:
            screen = joint_screen(sol.joint)
        reason = defect_rule(screen, sol.gap, sol.gaps, sol.eps, sol.duality_gap, sol.objective)
        if reason is not None:
            info["status_reason"] = reason
            object.__setattr__(sol, "status", Status.INACCURATE)


def build_solution(fields: dict[str, object], screen: JointScreen | None = None) -> Solution:
    """``Solution(**fields)`` for the converters (``solvers.units``, ``solvers.small``): the
    same checks and read-only mappings (``__post_init__``), without the frozen dataclass
    ``__init__``'s per-field ``object.__setattr__`` (a measurable share of a small game's
    ``solve``). ``fields`` names every field; it is taken over, not copied: with ``screen``
    (the joint's reductions, computed by the caller's compiled kernel) ``info`` must be a
    fresh dict and ``timings`` a ``MappingProxyType``, wrapped as they are. The honesty
    rule (``defect_rule``) runs either way."""
    sol = object.__new__(Solution)
    sol.__dict__.update(fields)
    if screen is None:
        sol.__post_init__()
        return sol
    info = fields["info"]
    sol.__dict__["info"] = MappingProxyType(info)  # type: ignore[arg-type]
    _seal(sol, info, screen)  # type: ignore[arg-type]
    return sol


#: ``Solution.__dict__`` key of the deferred fields: ``(names, make, args)``; ``make(*args)``
#: returns the fields ``names`` (a frozenset) as a dict (``deferred_solution``).
DEFERRED = "_deferred"
_DEFERRED = DEFERRED
_new_object = object.__new__
_set_attribute = object.__setattr__


def _fill(sol: Solution) -> None:
    """Builds ``sol``'s deferred fields (once; a no-op when it has none)."""
    deferred = sol.__dict__.get(_DEFERRED)
    if deferred is not None:
        _, make, args = deferred
        made = make(*args)
        for name in ("info", "timings"):  # read-only, as __post_init__ makes them
            if name in made and type(made[name]) is not MappingProxyType:
                made[name] = MappingProxyType(dict(made[name]))
        sol.__dict__.update(made)
        sol.__dict__.pop(_DEFERRED, None)


def deferred_solution(fields: dict[str, object]) -> Solution:
    """A ``Solution`` whose ``__dict__`` is ``fields`` (taken over, not copied), some of
    whose fields are built on first access: ``fields[DEFERRED] = (names, make, args)``,
    ``make(*args)`` returning a dict of exactly the fields ``names`` (a frozenset; ``info``
    and ``timings`` are wrapped read-only), ``fields`` holding every other one. For
    ``solvers.small``, whose arrays are views of one buffer and whose caller may read none
    of them. The caller has applied the honesty rule (``defect_rule``, on the compiled
    reductions of the same arrays) and found nothing: no status downgrade, no duality-gap
    rounding to record; the arrays ``make`` returns must be the ones it screened.
    Pickling and copies build the fields first."""
    sol = _new_object(Solution)
    _set_attribute(sol, "__dict__", fields)
    return sol


_SMALL = 64


def _all_finite(array: np.ndarray) -> bool:
    if array.size <= _SMALL:
        return all(map(math.isfinite, array.ravel().tolist()))
    return bool(np.isfinite(array).all())


def optimality_defect(sol: Solution) -> str | None:
    """Why ``sol`` cannot be labelled optimal (None when it can); see ``Solution``."""
    return defect_of(sol.joint, sol.gap, sol.gaps, sol.eps, sol.duality_gap, sol.objective)


class JointScreen(NamedTuple):
    """The reductions the honesty rule reads: ``total`` (the joint's sum; NaN and inf
    entries make it non-finite) and ``low`` (its smallest entry); ``gaps_finite`` and
    ``eps_finite``: every entry of ``gaps`` / ``eps`` is finite (None: the rule checks)."""

    total: float
    low: float
    gaps_finite: bool | None = None
    eps_finite: bool | None = None


def joint_screen(joint: np.ndarray) -> JointScreen:
    """``JointScreen`` of ``joint`` (``math.fsum`` on small joints)."""
    if joint.size <= _SMALL:  # Python floats beat NumPy's reductions on small arrays
        values = joint.ravel().tolist()
        return JointScreen(math.fsum(values), min(values))
    return JointScreen(float(joint.sum()), float(joint.min()))


def defect_of(joint: np.ndarray, gap: float, gaps: np.ndarray, eps: np.ndarray, duality_gap: float,
              objective: float) -> str | None:
    """``optimality_defect`` of a solution's parts (``duality_gap`` after the rounding
    ``Solution`` applies): the one rule, also for ``solvers.solution_batch``."""
    return defect_rule(joint_screen(joint), gap, gaps, eps, duality_gap, objective)


def defect_rule(screen: JointScreen | tuple[float, float, bool | None, bool | None], gap: float,
                gaps: np.ndarray | None, eps: np.ndarray | None, duality_gap: float, objective: float) -> str | None:
    """``defect_of`` with the joint's reductions given (``screen``, a ``JointScreen`` or its
    fields as a plain tuple). ``gaps`` and ``eps`` are
    read only where the screen leaves their finiteness open (None) and for the message of
    a defect they have."""
    total, low, gaps_finite, eps_finite = screen
    if not abs(total - 1.0) <= JOINT_SUM_TOL:  # NaN and inf entries land here too
        return f"joint sums to {total!r}, not 1 (within {JOINT_SUM_TOL:g})"
    if not low >= 0.0:
        return f"joint has a negative entry {low!r}"
    if not (math.isfinite(gap) and (_all_finite(gaps) if gaps_finite is None else gaps_finite)):
        return f"gap is not finite (gaps {gaps!r}); payoff-unit gaps overflow float64"
    if not (_all_finite(eps) if eps_finite is None else eps_finite):
        return f"eps is not finite ({eps!r}); payoff-unit eps overflows float64"
    if not math.isfinite(duality_gap) or duality_gap < 0.0:
        return f"duality gap {duality_gap!r} is not a finite non-negative number"
    if not math.isfinite(objective):
        return f"objective {objective!r} is not finite"
    return None


def stack_solutions(solutions: Sequence[Solution]) -> dict[str, np.ndarray]:
    """Solutions of games of one shape as arrays, e.g. for ``np.savez``.

    Returns ``joint [B, A1..AN]``, ``duals [B, K]`` (payoff units), ``eps``, ``gaps`` and
    ``scale [B, N]``, ``gap``, ``normalised_gap``, ``duality_gap``, ``objective [B]``
    float64, ``iterations [B]`` int64, ``status`` and ``method [B]`` str.
    """
    if not solutions:
        raise ValueError("no solutions to stack")
    arrays = getattr(solutions, "arrays", None)  # a SolutionBatch stacks without building Solutions
    if callable(arrays):
        return arrays()
    shapes = {sol.joint.shape for sol in solutions}
    if len(shapes) > 1:
        raise ValueError(f"solutions of one game shape are stacked; got shapes {sorted(shapes)}")
    return {
        "joint": np.stack([sol.joint for sol in solutions]),
        "duals": np.stack([sol.duals for sol in solutions]),
        "eps": np.stack([sol.eps for sol in solutions]),
        "gaps": np.stack([sol.gaps for sol in solutions]),
        "scale": np.stack([sol.scale for sol in solutions]),
        "gap": np.array([sol.gap for sol in solutions], dtype=np.float64),
        "normalised_gap": np.array([sol.normalised_gap for sol in solutions], dtype=np.float64),
        "duality_gap": np.array([sol.duality_gap for sol in solutions], dtype=np.float64),
        "objective": np.array([sol.objective for sol in solutions], dtype=np.float64),
        "iterations": np.array([sol.iterations for sol in solutions], dtype=np.int64),
        "status": np.array([sol.status.value for sol in solutions]),
        "method": np.array([sol.method for sol in solutions]),
    }
