"""Drop-in OpenSpiel meta-solvers: unique, exact, certified (C)CEs for JPSRO and PSRO v2.

JPSRO (``open_spiel.python.algorithms.jpsro``) calls its meta-solver as
``fn(meta_game, per_player_repeats, ignore_repeats=False) -> (dist, meta)`` with
``meta_game: [N, A1..AN]`` over the distinct policies, ``per_player_repeats`` N count
vectors ``[A_p]`` and ``dist: [A1..AN]``. ``register()`` adds ours to
``jpsro.FLAG_TO_FUNC`` so that the only change to a user's code is the solver's name::

    from hybrid_nes.integrations import openspiel as hn_openspiel
    hn_openspiel.register()
    jpsro.run_loop(game, "kuhn_poker", train_meta_solver="hn_mecce")

PSRO v2 takes ``psro_meta_strategy()`` as ``meta_strategy_method``.

Repeated policies. JPSRO's meta-solvers solve the *expanded* game, in which player p's
policy ``u`` appears ``r_p(u)`` times, and return the joint summed over the copies. We
solve the same problem on the distinct policies wherever the criterion allows it:

- the expanded game's (C)CE constraints are the distinct game's (copies of a deviation
  repeat a row; a CE row of copy ``u`` is the distinct row scaled by ``1 / r_p(u) > 0``);
- the entropy of the expanded joint spread evenly over copies is
  ``-KL(sigma || w) + const`` with ``w(a)`` proportional to ``prod_p r_p(a_p)``, so ME
  becomes MRE to ``w``, and ``w`` is the base target of MRE, MW and MS too;
- the expanded Max Gini objective is ``sum_a sigma(a)^2 / w(a)``, not a plain Gini, so
  Max Gini with repeats is solved on the expanded game and summed back (exactly what
  OpenSpiel's ``mgcce``/``mgce`` compute).

Warm starts. JPSRO's meta-game grows by appending policies, so with
``warm_start="related"`` the previous solve's ``Solution`` is passed as ``duals0``:
``solvers.related`` maps its duals onto the grown game, scales them by the dual loss and
watches the run (cold restart when it does not pay). ``warm_start="previous"`` pads the
previous duals (payoff units: old payoff entries do not change) with zeros for the new
deviations. A ``WarmStartHook`` (e.g. a neural equilibrium solver) may replace them. The
default ("auto") is "related" for CEs after a meta-game that needed facial reduction (its
face, mapped, also shrinks the next face LP), else and for CCEs cold (``AUTO_WARM_START``).

JPSRO's clean-up. JPSRO zeroes meta-distribution entries below 1e-8. Entropy-selected
joints can spread exponentially small mass over many joint actions, so for ME/MRE/MW the
selection is re-solved on the joint actions that survive the clean-up whenever the
clean-up would cost more than ``tol`` (``MetaSolverOptions.sparsify``): the distribution
JPSRO actually uses stays an exact (C)CE. The returned distribution is certified itself,
not only the solve it came from: its gap is recomputed (``meta["gap"]``,
``meta["normalised_gap"]``) and kept within ``tol`` (a re-solve that would leave it
above is repeated on a smaller support or not used); ``meta["jpsro_gap"]``: after it.
Only ``register()`` needs OpenSpiel itself; the meta-solvers take plain arrays.

Layout: this module holds the options, the stateful ``JPSROMetaSolver`` and the OpenSpiel
glue; ``_meta_game`` the array helpers, ``_certified`` the solve with its fallback, the
certificate of the returned distribution and the clean-up re-solves (on the dense solve's
face, kept by ``_face_stage.FaceSolver``, which also maps the previous meta-game's face
after a related start). The public names are re-exported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any, NamedTuple, Protocol

import numpy as np

import solvers
from hybrid_nes.integrations import _certified as cf
from hybrid_nes.integrations import _meta_game as mg
from hybrid_nes.integrations._certified import reusable_duals
from hybrid_nes.integrations._face_stage import FaceSolver, KnownFace
from hybrid_nes.integrations._meta_game import (
    clean_joint,
    drop_below,
    equilibrium_gaps,
    expand_meta_game,
    extend_joint,
    meta_game_gains,
    pad_duals,
    repeat_weights,
    unexpand_joint,
)
from solvers import Selection, Solution, Status, related
from solvers.gains import check_concept

__all__ = [
    "AUTO_RELATED_AFTER_FACE",
    "AUTO_WARM_START",
    "JPSRO_DIST_TOL",
    "JPSRO_META_SOLVERS",
    "JPSROMetaSolver",
    "MetaSolverOptions",
    "MetaSolverSpec",
    "PSROMetaStrategy",
    "WarmStartHook",
    "clean_joint",
    "drop_below",
    "equilibrium_gaps",
    "expand_meta_game",
    "extend_joint",
    "make_meta_solver",
    "meta_game_gains",
    "meta_solver",
    "nes_warm_start",
    "pad_duals",
    "psro_meta_strategy",
    "register",
    "repeat_weights",
    "require_openspiel",
    "reusable_duals",
    "unexpand_joint",
]

_INSTALL_HINT = (
    "OpenSpiel is not installed; install the extra with `pip install 'hybrid_nes[openspiel]'` "
    "(or `pip install open_spiel`)"
)

#: Presets usable as meta-solvers. "mwme" needs a welfare tensor of a fixed shape, which a
#: growing meta-game cannot provide.
_META_PRESETS: tuple[str, ...] = ("me", "mre", "mw", "ms", "mg")
#: Weight of the base target (uniform over copies) in the MRE target built from the
#: previous iteration's joint; keeps the target full-support.
_DEFAULT_TARGET_MIX = 0.1
#: JPSRO's ``DIST_TOL``: it zeroes meta-distribution entries below this before use.
JPSRO_DIST_TOL = 1e-8
#: Re-solves ``_certified.sparsified`` may run: each floors the entries the last one left
#: below the threshold (the 3-player Kuhn poker CE 10x10x10 meta-game needs two,
#: tests/test_openspiel.py).
SPARSIFY_ROUNDS = 3
#: ``MetaSolverOptions.warm_start`` values.
_WARM_STARTS: tuple[str, ...] = ("auto", "related", "previous", "cold")
#: What ``warm_start="auto"`` uses per concept (benchmarks/related_suite.md, Kuhn-3 JPSRO).
AUTO_WARM_START: Mapping[str, str] = {"ce": "related", "cce": "cold"}
#: "auto" takes "related" only after a meta-game that needed facial reduction (it then
#: skips ``FACE_AFTER`` Newton iterations); before, it cost more than it saved (3^3-10^3).
AUTO_RELATED_AFTER_FACE = True


class MetaSolverSpec(NamedTuple):
    """What a registered meta-solver name stands for."""

    concept: str
    selection: str


#: The names ``register()`` adds to OpenSpiel's JPSRO.
JPSRO_META_SOLVERS: Mapping[str, MetaSolverSpec] = {
    f"hn_{preset}{concept}": MetaSolverSpec(concept, preset)
    for preset in ("me", "mre", "mw", "mg")
    for concept in ("cce", "ce")
}


class WarmStartHook(Protocol):
    """A source of initial duals, e.g. a neural equilibrium solver.

    Args:
      game: ``[N, A1..AN]`` the game about to be solved (expanded for Max Gini with
        repeated policies).
      concept: "cce" or "ce".
      selection: the ``Selection`` about to be solved.
      previous: ``[K]`` the previous iteration's duals padded to ``game`` (payoff
        units), or None.

    Returns:
      ``[K]`` flat duals in payoff units for ``game``, or None for a cold start.
    """

    def __call__(
        self,
        game: np.ndarray,
        concept: str,
        selection: Selection,
        previous: np.ndarray | None,
    ) -> np.ndarray | None: ...


@dataclass(frozen=True, eq=False)
class MetaSolverOptions:
    """How a meta-solver solves each meta-game.

    Attributes:
      concept: "cce" or "ce".
      selection: "me", "mre", "mw", "ms" or "mg".
      tol: tolerance handed to ``solvers.solve`` (normalised units). Tighter than the
        library default: JPSRO zeroes entries below 1e-8 before use, and OpenSpiel's
        polished QPs are exact to ~1e-15 on small meta-games; 1e-10 costs little more.
      method: ``solvers.solve`` method ("auto", "newton", "gd", "cvxpy").
      max_iter: iteration cap of the iterative stage; None = the solver's default.
      face: ``solvers.solve``'s facial-reduction switch ("auto", "always", "never").
      warm_start: "auto" (default: ``AUTO_WARM_START``, "related" for CEs after a
        meta-game that needed facial reduction, else "cold", as measured), "cold", "related" (the last solve's ``Solution`` as
        ``duals0``: ``solvers.related`` maps, scales and watches it, restarting cold when
        it does not pay) or "previous" (pad the last solve's duals with zeros for the new
        deviations; unwatched: on some Kuhn poker meta-games the padded duals make
        ``solvers.solve`` stall, Newton cap then face + CVXPY, 10-500x slower).
      warm_start_hook: optional ``WarmStartHook``; its duals replace the padded ones.
      target_mix: MRE only: ``target = (1 - mix) * previous joint + mix * base``.
      fallback: when the fast solve is not certified, solve again with the CVXPY
        reference (``method="cvxpy"``) and return that.
      sparsify: entropy selections: re-solve on the joint actions with mass >= this
        (JPSRO's clean-up threshold; 0 disables), see ``_certified.sparsified``.
      selection_params: keyword parameters of the preset (``mu``, ``rho``, ``eps_hat``...).
    """

    concept: str = "cce"
    selection: str = "me"
    tol: float = 1e-10
    method: str = "auto"
    max_iter: int | None = None
    face: str = "auto"
    warm_start: str = "auto"
    warm_start_hook: WarmStartHook | None = None
    target_mix: float = _DEFAULT_TARGET_MIX
    fallback: bool = True
    sparsify: float = JPSRO_DIST_TOL
    selection_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "concept", check_concept(self.concept))
        if not isinstance(self.selection, str) or self.selection.lower() not in _META_PRESETS:
            raise ValueError(
                f"unknown selection preset {self.selection!r} for a meta-solver; "
                f"expected one of {_META_PRESETS}"
            )
        object.__setattr__(self, "selection", self.selection.lower())
        if self.warm_start not in _WARM_STARTS:
            raise ValueError(f"warm_start must be one of {_WARM_STARTS}, got {self.warm_start!r}")
        if not 0.0 < float(self.target_mix) <= 1.0:
            raise ValueError(f"target_mix must be in (0, 1], got {self.target_mix!r}")
        if not 0.0 <= float(self.sparsify) < 1.0:
            raise ValueError(f"sparsify must be in [0, 1), got {self.sparsify!r}")
        if not float(self.tol) > 0.0:
            raise ValueError(f"tol must be > 0, got {self.tol!r}")
        if self.selection == "mre" and "target" in self.selection_params:
            raise ValueError("the MRE meta-solver builds its target from the previous joint; do not pass target=")
        object.__setattr__(self, "selection_params", dict(self.selection_params))
        # The preset's own checks, now rather than at the first meta-game: unknown
        # keywords (TypeError) and parameters the preset would convert or ignore.
        placeholder = {"target": np.ones(1)} if self.selection == "mre" else {}
        getattr(Selection, self.selection)(**placeholder, **self.selection_params)


# ----------------------------------------------------------------------------------------
# The stateful meta-solver.


class _Record(NamedTuple):
    """What one solve leaves for the next: the problem game, its solution, the joint."""

    key: str
    problem_game: np.ndarray  # [N, ...] the game handed to solvers.solve
    game: np.ndarray  # [N, A1..AN] the distinct-policy meta-game
    dist: np.ndarray  # [A1..AN]
    meta: dict
    solution: Solution | None = None  # the optimal dense solve of problem_game (no fallback)
    plain_duals: bool = False  # solution's duals are finite, from plain dual stages only
    face: KnownFace | None = None  # the minimal face the solve found (the next one's ``grown``)


def _selection(options: MetaSolverOptions, base: np.ndarray | None, previous: _Record | None, game: np.ndarray) -> Selection:
    """The ``Selection`` for one meta-game; ``base: [A1..AN]`` repeat weights (None = uniform)."""
    params = dict(options.selection_params)
    name = options.selection
    if name == "mg":
        return Selection.mg(**params)
    if name == "mre":
        uniform = base if base is not None else np.full(game.shape[1:], 1.0 / np.prod(game.shape[1:]))
        if previous is not None and mg.is_extension(previous.game, game):
            prior = extend_joint(previous.dist, game.shape[1:])
            target = (1.0 - options.target_mix) * prior + options.target_mix * uniform
        else:
            target = uniform
        return Selection.mre(target=target / target.sum(), **params)
    selection = getattr(Selection, name)(**params)
    if base is None:
        return selection
    # The repeat weights are the base target of every entropy preset (module docstring);
    # no preset takes target= besides MRE, so it is set on the preset's Selection.
    return replace(selection, target=base)


class JPSROMetaSolver:
    """A JPSRO meta-solver: ``fn(meta_game, per_player_repeats, ignore_repeats=False)``.

    Keeps the last solve to warm-start the next one; call ``reset()`` between runs (a
    meta-game that does not extend the last one starts cold anyway).
    """

    def __init__(self, options: MetaSolverOptions, name: str | None = None) -> None:
        self.options = options
        self.name = name or f"hn_{options.selection}{options.concept}"
        self._last: _Record | None = None

    def __repr__(self) -> str:
        return f"JPSROMetaSolver(name={self.name!r}, concept={self.options.concept!r}, selection={self.options.selection!r})"

    def reset(self) -> None:
        """Forgets the previous solve (no warm start, ME target for MRE)."""
        self._last = None

    @property
    def last_meta(self) -> dict | None:
        """The ``meta`` dict of the last call, or None."""
        return None if self._last is None else self._last.meta

    def __call__(
        self,
        meta_game: np.ndarray,
        per_player_repeats: Sequence[Sequence[float]],
        ignore_repeats: bool = False,
    ) -> tuple[np.ndarray, dict]:
        """Solves one meta-game.

        Args:
          meta_game: ``[N, A1..AN]`` payoffs of the distinct policies.
          per_player_repeats: N count vectors ``[A_p]``.
          ignore_repeats: treat every policy as appearing once (OpenSpiel's flag).

        Returns:
          dist ``[A1..AN]`` (non-negative, sums to 1) and a ``meta`` dict: ``gap``
          (the concept's gap of ``dist`` itself, payoff units), ``normalised_gap``
          (the same in the meta-game's normalised units, the units of ``tol``),
          ``cce_gap``, ``gaps`` ``[N]``, ``duality_gap``, ``status`` (str; "optimal"
          only when certified), ``certified`` (the solve was optimal and ``dist``'s own
          gap is within ``tol`` of its ``eps``), ``fallback``, ``warm_start``, ``face_source``
          ("lp", "reused", "grown" or None), ``iterations``, ``method``, ``timings``, ``solution`` (the
          ``solvers.Solution`` that ``dist`` comes from: the sparsified re-solve when
          ``sparsified``) and ``dense_solution`` (the first solve).
        """
        start = time.perf_counter()
        game = mg.check_meta_game(meta_game)
        repeats = mg.check_repeats(per_player_repeats, game.shape[1:])
        if ignore_repeats:
            repeats = tuple(np.ones_like(r) for r in repeats)
        key = mg.digest(game, repeats, bool(ignore_repeats))
        if self._last is not None and self._last.key == key:
            # JPSRO solves the same meta-game again when train and eval share a solver.
            meta = dict(self._last.meta, cached=True)
            meta["timings"] = dict(meta["timings"], total=time.perf_counter() - start)
            return self._last.dist.copy(), meta
        with cf.blas_threads():
            record = _solve_meta_game(self.options, game, repeats, self._last, key, start)
        self._last = record
        return record.dist.copy(), dict(record.meta)


def _trivial_record(game: np.ndarray, key: str, options: MetaSolverOptions, start: float) -> _Record:
    dist = np.ones(game.shape[1:])
    meta = dict(
        gap=0.0, normalised_gap=0.0, cce_gap=0.0, gaps=np.zeros(game.shape[0]), duality_gap=0.0,
        status=Status.OPTIMAL.value, certified=True, fallback=False, warm_start="none",
        iterations=0, method="trivial", concept=options.concept, selection=options.selection,
        expanded=False, sparsified=False, dropped=0, jpsro_gap=0.0, cached=False,
        solution=None, dense_solution=None, error=None, fast_status=Status.OPTIMAL.value,
        timings=dict(solve=0.0, sparsify=0.0, total=time.perf_counter() - start),
    )
    return _Record(key, game, game, dist, meta)


def _initial_duals(
    options: MetaSolverOptions,
    problem_game: np.ndarray,
    selection: Selection,
    previous: _Record | None,
) -> tuple[np.ndarray | Solution | None, str]:
    padded = None
    mode = AUTO_WARM_START[options.concept] if options.warm_start == "auto" else options.warm_start
    if options.warm_start == "auto" and mode == "related" and AUTO_RELATED_AFTER_FACE:
        mode = mode if previous is not None and previous.solution is not None and previous.solution.info.get("face") else "cold"
    extends = previous is not None and mg.is_extension(previous.problem_game, problem_game)
    related_start = mode == "related" and extends and previous.solution is not None
    wanted = mode == "previous" or (mode == "related" and (options.warm_start_hook is not None or not related_start))
    if wanted and extends and previous.plain_duals:
        # The previous duals clipped to the non-negative orthant (equalities found by
        # facial reduction may carry negative, free duals), zero on the new rows.
        padded = related.map_duals(previous.solution, problem_game.shape[1:], options.concept)
    if options.warm_start_hook is not None:
        hooked = options.warm_start_hook(problem_game, options.concept, selection, padded)
        if hooked is not None:
            expected = solvers.num_constraints(problem_game.shape[1:], options.concept)
            hooked = np.asarray(hooked, dtype=np.float64)
            if hooked.shape != (expected,) or not np.all(np.isfinite(hooked)):
                raise ValueError(
                    f"warm_start_hook returned duals of shape {hooked.shape}; expected finite [{expected}]"
                )
            return hooked, "hook"
    if related_start:
        # solvers.related maps, scales and watches the previous solution's duals.
        return previous.solution, "related"
    return padded, ("previous" if padded is not None else "cold")


def _solve_meta_game(
    options: MetaSolverOptions,
    game: np.ndarray,
    repeats: tuple[np.ndarray, ...],
    previous: _Record | None,
    key: str,
    start: float,
) -> _Record:
    if math.prod(game.shape[1:]) == 1:
        return _trivial_record(game, key, options, start)
    repeated = any(np.any(r != 1) for r in repeats)
    base = repeat_weights(repeats) if repeated else None
    selection = _selection(options, base, previous, game)
    expanded = repeated and options.selection == "mg"
    problem_game = expand_meta_game(game, repeats) if expanded else game
    duals0, source = _initial_duals(options, problem_game, selection, previous)

    solve_start = time.perf_counter()
    grown = previous.face if source == "related" and previous is not None else None  # shrinks its face LP
    face_solver = FaceSolver(face_max_iter=options.max_iter, grown=grown) if not expanded else None  # keeps the face
    solution, fallback, fast_status, error = cf.certified_solve(options, problem_game, selection, duals0,
                                                                face_solver)
    solve_time = time.perf_counter() - solve_start
    face = face_solver.face if face_solver is not None and not fallback and solution.info.get("face") else None

    joint = clean_joint(solution.joint)
    dist = unexpand_joint(joint, repeats) if expanded else joint
    sparsify_start = time.perf_counter()
    gains = meta_game_gains(game, options.concept)
    scale = solvers.normalise(game).scale
    returned = cf.certify(gains, dist, solution, scale)
    sparse = cf.sparsified(options, game, gains, selection, returned, scale, SPARSIFY_ROUNDS, face)
    sparsify_time = time.perf_counter() - sparsify_start
    dropped = 0
    if sparse is not None:
        returned, dropped = sparse
    dist, gaps = returned.dist, returned.gaps
    cce_gaps = gaps if options.concept == "cce" else equilibrium_gaps(game, dist, "cce")
    # The certificate of the distribution returned, not of the solve it came from.
    certified = returned.solution.status is Status.OPTIMAL and returned.excess <= options.tol
    meta = dict(
        gap=float(gaps.max()),
        normalised_gap=float(np.max(gaps * scale)),
        cce_gap=float(cce_gaps.max()),
        gaps=gaps,
        duality_gap=float(returned.solution.duality_gap),
        status=returned.solution.status.value if certified or returned.solution.status is not Status.OPTIMAL
        else Status.INACCURATE.value,
        certified=certified,
        fallback=fallback,
        fast_status=fast_status,
        error=error,
        warm_start=source,
        iterations=int(solution.iterations),
        method=solution.method,
        concept=options.concept,
        selection=options.selection,
        expanded=expanded,
        sparsified=sparse is not None,
        dropped=dropped,
        jpsro_gap=float(mg.gains_gaps(gains, drop_below(dist, JPSRO_DIST_TOL)).max()),
        cached=False,
        solution=returned.solution,
        dense_solution=solution,
        timings=dict(
            dict(solution.timings), solve=solve_time, sparsify=sparsify_time,
            total=time.perf_counter() - start,
        ),
    )
    meta["related_start"] = solution.info.get("warm_start") if source == "related" else None
    meta["face_source"] = solution.info.get("face_source")
    if solution.status is not Status.OPTIMAL or fallback:
        return _Record(key, problem_game, game, dist, meta)
    # Padded duals ("previous") only from a plain dual solve (``reusable_duals``).
    plain = reusable_duals(solution.method) and bool(np.all(np.isfinite(solution.duals)))
    return _Record(key, problem_game, game, dist, meta, solution, plain, face_solver.known if face is not None else None)


def nes_warm_start(model: Any) -> WarmStartHook:
    """A ``WarmStartHook`` that asks a neural equilibrium solver for the initial duals.

    Args:
      model: an ``hybrid_nes.NESModel`` (anything with
        ``predict_duals(games [B, N, A..], selection, units="payoff") -> [B, K]``),
        e.g. ``hybrid_nes.load_pretrained("cce")``; its concept must match the
        meta-solver's.

    Returns:
      A hook returning the network's payoff-unit duals, or the padded previous duals
      when the network cannot predict (Max Gini, an untrained game shape or player count).
    """

    def hook(game: np.ndarray, concept: str, selection: Selection, previous: np.ndarray | None) -> np.ndarray | None:
        if selection.objective != "entropy" or getattr(model, "concept", concept) != concept:
            return previous
        try:
            return np.asarray(model.predict_duals(game[None], selection, units="payoff"))[0]
        except ValueError:
            return previous

    return hook


# ----------------------------------------------------------------------------------------
# Factories and OpenSpiel glue.


def make_meta_solver(concept: str = "cce", selection: str = "me", **options: Any) -> JPSROMetaSolver:
    """A JPSRO meta-solver for ``concept`` and ``selection`` (see ``MetaSolverOptions``).

    Keyword arguments that are not ``MetaSolverOptions`` fields are the preset's
    parameters (e.g. ``mu=`` for "mw", ``rho=`` for "ms").
    """
    fields = set(MetaSolverOptions.__dataclass_fields__) - {"concept", "selection", "selection_params"}
    known = {k: v for k, v in options.items() if k in fields}
    params = {k: v for k, v in options.items() if k not in fields}
    return JPSROMetaSolver(MetaSolverOptions(concept=concept, selection=selection, selection_params=params, **known))


def meta_solver(name: str, **options: Any) -> JPSROMetaSolver:
    """The meta-solver registered as ``name`` (a key of ``JPSRO_META_SOLVERS``)."""
    if name not in JPSRO_META_SOLVERS:
        raise ValueError(f"unknown meta-solver name {name!r}; expected one of {tuple(JPSRO_META_SOLVERS)}")
    spec = JPSRO_META_SOLVERS[name]
    solver = make_meta_solver(spec.concept, spec.selection, **options)
    solver.name = name
    return solver


def require_openspiel() -> ModuleType:
    """Imports and returns ``open_spiel.python.algorithms.jpsro`` (ImportError: how to install)."""
    try:
        from open_spiel.python.algorithms import jpsro
    except ImportError as err:
        missing = (err.name or "").split(".")[0]
        if missing in ("", "open_spiel", "pyspiel"):
            raise ImportError(_INSTALL_HINT, name=err.name) from err
        # open_spiel is there but jpsro's own imports are not (e.g. networkx, matplotlib
        # for its alpharank visualiser, which open_spiel does not declare).
        raise ImportError(
            f"OpenSpiel's jpsro could not import {err.name!r} ({err}); install it, or the "
            "extra that pulls it in: `pip install 'hybrid_nes[openspiel]'`",
            name=err.name,
        ) from err
    return jpsro


def register(
    names: Sequence[str] | None = None,
    *,
    jpsro: ModuleType | None = None,
    **options: Any,
) -> dict[str, JPSROMetaSolver]:
    """Adds our meta-solvers to ``jpsro.FLAG_TO_FUNC`` and ``jpsro.META_SOLVERS``.

    Args:
      names: which of ``JPSRO_META_SOLVERS`` (default: all).
      jpsro: the module to patch (default: OpenSpiel's ``jpsro``).
      **options: ``MetaSolverOptions`` fields shared by every registered solver.

    Returns:
      name -> the registered ``JPSROMetaSolver`` (fresh instances: no warm-start state).
    """
    module = require_openspiel() if jpsro is None else jpsro
    selected = tuple(JPSRO_META_SOLVERS) if names is None else tuple(names)
    created = {name: meta_solver(name, **options) for name in selected}
    module.FLAG_TO_FUNC.update(created)
    module.META_SOLVERS = tuple(module.META_SOLVERS) + tuple(
        name for name in selected if name not in module.META_SOLVERS
    )
    return created


class PSROMetaStrategy:
    """A PSRO v2 ``meta_strategy_method``: ``fn(solver, return_joint=False)``.

    Returns the per-player marginals (a list of N arrays ``[A_p]``) and, with
    ``return_joint=True``, also the joint ``[A1..AN]`` (PSRO samples joint indices from
    its shape; ``.reshape(-1)`` gives OpenSpiel's flat order).
    """

    def __init__(self, inner: JPSROMetaSolver) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"PSROMetaStrategy({self.inner.name!r})"

    @property
    def last_meta(self) -> dict | None:
        return self.inner.last_meta

    def __call__(self, solver: Any, return_joint: bool = False) -> list[np.ndarray] | tuple[list[np.ndarray], np.ndarray]:
        tables = solver.get_meta_game()
        if isinstance(tables, np.ndarray) and tables.ndim == 2:
            tables = [tables, -tables]  # OpenSpiel's convention for a single zero-sum table
        meta_game = np.stack([np.asarray(t, dtype=np.float64) for t in tables])
        ones = [np.ones(n) for n in meta_game.shape[1:]]
        dist, _ = self.inner(meta_game, ones, ignore_repeats=True)
        marginals = [np.asarray(m) for m in solvers.marginals(dist)]
        if return_joint:
            return marginals, dist
        return marginals


def psro_meta_strategy(concept: str = "cce", selection: str = "me", **options: Any) -> PSROMetaStrategy:
    """A PSRO v2 ``meta_strategy_method`` (see ``make_meta_solver`` for the options)."""
    return PSROMetaStrategy(make_meta_solver(concept, selection, **options))

