"""Equilibrium selection criteria: the ``Selection`` dataclass and its presets (DESIGN §3, §7).

A selection picks the unique equilibrium that maximises

    mu <sigma, W> - KL(sigma || target) - rho * sum_p (approximation penalty)

subject to the (C)CE constraints ``E_sigma[gain] <= eps_p`` (``objective="entropy"``),
or minimises ``||sigma||_2^2`` (Max Gini, ``objective="gini"``).

User-facing numbers (``eps_hat``, ``eps_plus``) are in the game's own payoff units; the
problem itself is posed on the normalised game (DESIGN §5), so every answer is invariant
to per-player payoff offset and positive scale. ``welfare`` is normalised the same way.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from solvers.game import NormalisedGame, normalise_batch

__all__ = [
    "PRESETS",
    "PRESET_PARAMS",
    "Selection",
    "SelectionParams",
    "as_selection",
    "game_independent",
    "resolve_batch",
    "resolve_cached",
    "resolve_selection",
]

PRESETS: tuple[str, ...] = ("me", "mre", "mw", "mwme", "ms", "mg")

#: Default welfare weight of the MW/MWME presets (normalised units: payoff entries ~ 1).
DEFAULT_WELFARE_WEIGHT = 10.0
#: Default approximation weight of the MS preset.
DEFAULT_STRENGTH_WEIGHT = 10.0


def _as_float(value: float, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number, got {value!r}") from err
    if math.isnan(out):
        raise ValueError(f"{name} must not be NaN")
    return out


@dataclass(frozen=True, eq=False)
class Selection:
    """A selection criterion and its parameters.

    Attributes:
      name: preset name ("me", "mre", "mw", "mwme", "ms", "mg").
      objective: "entropy" (relative entropy to ``target``, plus welfare) or "gini".
      target: ``[A1..AN]`` full-support target joint (MRE); None = uniform.
      welfare: ``[A1..AN]`` welfare tensor; None with ``mu > 0`` = the sum of the
        players' normalised payoffs (utilitarian welfare).
      mu: welfare weight, >= 0.
      eps_hat: target approximation per player (scalar or ``[N]``), payoff units.
      eps_plus: approximation upper bound (scalar or ``[N]``), payoff units; None
        picks ``2 sqrt(|A|)`` in normalised units (above every possible gain).
      rho: approximation weight, > 0; ``inf`` = hard constraints ``eps = eps_hat``.
      strength: Maximum Strength: ``eps_hat = -eps_plus`` (requires finite rho).
    """

    name: str = "me"
    objective: Literal["entropy", "gini"] = "entropy"
    target: np.ndarray | None = None
    welfare: np.ndarray | None = None
    mu: float = 0.0
    eps_hat: float | np.ndarray = 0.0
    eps_plus: float | np.ndarray | None = None
    rho: float = math.inf
    strength: bool = False

    def __post_init__(self) -> None:
        if self.objective not in ("entropy", "gini"):
            raise ValueError(f"objective must be 'entropy' or 'gini', got {self.objective!r}")
        mu = _as_float(self.mu, "mu")
        rho = _as_float(self.rho, "rho")
        if mu < 0 or math.isinf(mu):
            raise ValueError(f"mu must be finite and >= 0, got {mu}")
        if rho <= 0:
            raise ValueError(f"rho must be > 0 (inf for hard constraints), got {rho}")
        if self.strength and math.isinf(rho):
            raise ValueError("strength=True (Maximum Strength) needs a finite rho")
        if self.objective == "gini" and (mu != 0 or self.target is not None or not math.isinf(rho)):
            raise ValueError("Max Gini takes no target, welfare weight or finite rho")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "rho", rho)
        if self.target is not None:
            target = np.asarray(self.target, dtype=np.float64)
            _check_distribution(target, "target")
            object.__setattr__(self, "target", target)
        if self.welfare is not None:
            welfare = np.asarray(self.welfare, dtype=np.float64)
            if not np.all(np.isfinite(welfare)):
                raise ValueError("welfare contains NaN or inf")
            object.__setattr__(self, "welfare", welfare)
        for name in ("eps_hat", "eps_plus"):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value, dtype=np.float64)
            if array.ndim > 1:
                raise ValueError(f"{name} must be a scalar or a [N] vector, got shape {array.shape}")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} must be finite, got {value!r}")
            object.__setattr__(self, name, array if array.ndim else float(array))
        if self.eps_plus is not None and self.hard:
            raise ValueError(
                f"eps_plus={self.eps_plus!r} bounds the approximation of soft constraints and is "
                "unused with rho=inf (hard constraints): pass a finite rho, or drop eps_plus"
            )
        if self.eps_plus is not None and not self.strength:
            if np.any(np.asarray(self.eps_plus) <= np.asarray(self.eps_hat)):
                raise ValueError(
                    f"eps_plus must be > eps_hat for every player, got eps_plus={self.eps_plus!r} "
                    f"and eps_hat={self.eps_hat!r}"
                )

    @property
    def hard(self) -> bool:
        """True when the approximation is pinned at ``eps_hat`` (``rho = inf``)."""
        return math.isinf(self.rho)

    # Presets -----------------------------------------------------------------------
    # Each preset takes only the parameters it uses (``PRESET_PARAMS``): a parameter
    # that would turn it into another criterion (``target=`` on "me" is MRE) or that it
    # would ignore (``eps_hat`` on "ms") is a ValueError, an unknown name a TypeError.
    # Combinations no preset names are built with ``Selection(...)`` directly.
    @classmethod
    def me(cls, eps_hat: float | np.ndarray = 0.0, **kw) -> Selection:
        """Maximum entropy (uniform target); ``eps_plus``/``rho`` for soft constraints."""
        _check_preset_params("me", kw)
        return cls(name="me", eps_hat=eps_hat, **kw)

    @classmethod
    def mre(cls, target: np.ndarray | None = None, eps_hat: float | np.ndarray = 0.0, **kw) -> Selection:
        """Minimum relative entropy to a full-support ``target: [A1..AN]``."""
        _check_preset_params("mre", kw)
        if target is None:
            raise ValueError("the 'mre' preset needs a target joint (target=...)")
        return cls(name="mre", target=target, eps_hat=eps_hat, **kw)

    @classmethod
    def mw(cls, mu: float = DEFAULT_WELFARE_WEIGHT, eps_hat: float | np.ndarray = 0.0, **kw) -> Selection:
        """Maximum (utilitarian) welfare, ties broken by entropy."""
        _check_preset_params("mw", kw)
        _check_welfare_weight("mw", mu)
        return cls(name="mw", mu=mu, eps_hat=eps_hat, **kw)

    @classmethod
    def mwme(
        cls,
        welfare: np.ndarray | None = None,
        mu: float = DEFAULT_WELFARE_WEIGHT,
        eps_hat: float | np.ndarray = 0.0,
        **kw,
    ) -> Selection:
        """Maximum welfare for a given ``welfare: [A1..AN]``, maximum entropy among ties."""
        _check_preset_params("mwme", kw)
        if welfare is None:
            raise ValueError("the 'mwme' preset needs a welfare tensor (welfare=...); use 'mw' for utilitarian welfare")
        _check_welfare_weight("mwme", mu)
        return cls(name="mwme", welfare=welfare, mu=mu, eps_hat=eps_hat, **kw)

    @classmethod
    def ms(cls, rho: float = DEFAULT_STRENGTH_WEIGHT, eps_plus: float | np.ndarray | None = None, **kw) -> Selection:
        """Maximum strength: the smallest approximation ``eps`` (negative = strict)."""
        _check_preset_params("ms", kw)
        if math.isinf(_as_float(rho, "rho")):
            raise ValueError("the 'ms' preset needs a finite rho (its penalty weight); got rho=inf")
        return cls(name="ms", rho=rho, eps_plus=eps_plus, strength=True, **kw)

    @classmethod
    def mg(cls, eps_hat: float | np.ndarray = 0.0, **kw) -> Selection:
        """Maximum Gini: minimise ``||sigma||_2^2`` (a QP)."""
        _check_preset_params("mg", kw)
        return cls(name="mg", objective="gini", eps_hat=eps_hat)


#: The keyword parameters each preset takes (``as_selection(name, **params)``).
PRESET_PARAMS: dict[str, tuple[str, ...]] = {
    "me": ("eps_hat", "eps_plus", "rho"),
    "mre": ("target", "eps_hat", "eps_plus", "rho"),
    "mw": ("mu", "eps_hat", "eps_plus", "rho"),
    "mwme": ("welfare", "mu", "eps_hat", "eps_plus", "rho"),
    "ms": ("rho", "eps_plus"),
    "mg": ("eps_hat",),
}

#: Why a ``Selection`` field is refused by a preset that does not take it.
_REFUSALS: dict[str, str] = {
    "target": "a target joint is minimum relative entropy: use selection='mre' with target=...",
    "mu": (
        "a welfare weight is maximum welfare: use selection='mw' (utilitarian welfare) or "
        "'mwme' (welfare=...) with mu=..."
    ),
    "welfare": "a welfare tensor is maximum welfare: use selection='mwme' with welfare=... (and mu=...)",
    "eps_hat": (
        "maximum strength sets eps_hat = -eps_plus, so eps_hat would be ignored: pass eps_plus "
        "(the bound on the approximation) and rho"
    ),
    "eps_plus": "Max Gini has hard constraints; eps_plus bounds soft ones",
    "rho": "Max Gini has hard constraints; rho weights soft ones",
    "strength": "strength=True is maximum strength: use selection='ms'",
    "objective": "the objective is fixed by the preset: use 'mg' for Max Gini",
    "name": "the name is the preset's",
}

_FIELDS = frozenset(
    ("name", "objective", "target", "welfare", "mu", "eps_hat", "eps_plus", "rho", "strength")
)


def _check_preset_params(preset: str, params: dict) -> None:
    """Refuses keyword parameters ``preset`` does not take (see ``PRESET_PARAMS``).

    Raises:
      TypeError: a name that is no parameter of any selection.
      ValueError: a ``Selection`` field the preset does not use (it would convert the
        preset into another criterion or be ignored); the message names the preset to use.
    """
    takes = PRESET_PARAMS[preset]
    for key in params:
        if key in takes:
            continue
        if key not in _FIELDS:
            raise TypeError(
                f"unexpected keyword argument {key!r} for the {preset!r} preset; "
                f"it takes {', '.join(takes)}"
            )
        if key == "target" and preset == "me":
            raise ValueError("the 'me' preset has a uniform target; for target=... use selection='mre'")
        raise ValueError(
            f"the {preset!r} preset does not take {key}=...: {_REFUSALS[key]} "
            f"(or build Selection(...) directly); {preset!r} takes {', '.join(takes)}"
        )


def _check_welfare_weight(preset: str, mu: object) -> None:
    if _as_float(mu, "mu") == 0.0:
        raise ValueError(f"the {preset!r} preset needs a welfare weight mu > 0; mu=0 is maximum entropy ('me')")


def _check_distribution(target: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(target)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(target <= 0):
        raise ValueError(
            f"{name} must have full support (every entry > 0) for relative entropy; "
            f"min entry is {target.min():.3g}"
        )
    total = target.sum()
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1, sums to {total:.6g}")


def as_selection(selection: str | Selection, **params) -> Selection:
    """A ``Selection`` from a preset name (with its keyword parameters) or as given.

    A parameter-free preset is built once and shared (a ``Selection`` is immutable), so
    per-selection caches (``resolve_cached``'s game-independent resolutions) hit on every
    call that names it, e.g. ``solve(game, "ce", "me")`` in a loop.
    """
    if isinstance(selection, Selection):
        if params:
            raise TypeError(
                f"pass parameters either in the Selection or as keywords, not both; got the "
                f"keyword argument(s) {', '.join(map(repr, params))} with a Selection"
            )
        return selection
    if not isinstance(selection, str):
        raise TypeError(f"selection must be a preset name {PRESETS} or a Selection, got {selection!r}")
    name = selection.lower()
    if name not in PRESETS:
        raise ValueError(f"unknown selection preset {selection!r}; expected one of {PRESETS}")
    if not params:
        return _preset(name)
    return getattr(Selection, name)(**params)


@functools.cache
def _preset(name: str) -> Selection:
    return getattr(Selection, name)()


class SelectionParams(NamedTuple):
    """A selection resolved against one normalised game (all in normalised units).

    Attributes:
      base_logits: ``[|A|]`` ``ln target + mu * W`` (flat joint order).
      eps_hat: ``[N]``; eps_plus: ``[N]`` (inf for hard constraints); rho: float.
      objective: "entropy" or "gini".
    """

    base_logits: np.ndarray
    eps_hat: np.ndarray
    eps_plus: np.ndarray
    rho: float
    objective: str


def _per_player(value: float | np.ndarray, num_players: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return np.full(num_players, float(array))
    if array.shape != (num_players,):
        raise ValueError(f"{name} has shape {array.shape}; expected a scalar or [{num_players}]")
    return array.copy()


def _fixed_logits(selection: Selection, shape: tuple[int, ...]) -> np.ndarray:
    """``[|A|]`` the payoff-independent part of ``base_logits``: ``ln target`` (uniform when
    None) plus ``mu`` times a given welfare tensor, normalised; validates their shapes."""
    num_joint = math.prod(shape)
    if selection.target is not None and selection.target.shape != shape:
        raise ValueError(f"target has shape {selection.target.shape}; the game's joint shape is {shape}")
    if selection.welfare is not None and selection.welfare.shape != shape:
        raise ValueError(f"welfare has shape {selection.welfare.shape}; the game's joint shape is {shape}")
    if selection.target is None:
        base = np.full(num_joint, -math.log(num_joint))
    else:
        base = np.log(selection.target.reshape(-1) / selection.target.sum())
    if selection.mu > 0 and selection.welfare is not None:
        # The payoffs' normaliser (overflow-safe, constant only at float64 resolution):
        # a welfare tensor x1e-13 or +1e13 is not zero welfare.
        try:
            welfare = normalise_batch(selection.welfare.reshape(1, 1, -1)).payoffs.reshape(-1)
        except ValueError as err:
            raise ValueError(f"welfare cannot be normalised: {err}") from None
        base = base + selection.mu * welfare
    return base


def _bounds(selection: Selection, scale: np.ndarray, num_joint: int) -> tuple[np.ndarray, np.ndarray]:
    """``(eps_hat, eps_plus)`` in normalised units for ``scale: [..., N]`` (one game or a batch)."""
    num_players = scale.shape[-1]
    z2 = math.sqrt(num_joint)
    if selection.eps_plus is None:
        eps_plus = np.full(scale.shape, 2.0 * z2 if not selection.hard else math.inf)
    else:
        eps_plus = _per_player(selection.eps_plus, num_players, "eps_plus") * scale
    if selection.strength:
        eps_hat = -eps_plus
    else:
        eps_hat = np.clip(_per_player(selection.eps_hat, num_players, "eps_hat") * scale, -z2, z2)
    if selection.hard:
        eps_plus = np.full(scale.shape, math.inf)
    elif np.any(eps_plus <= eps_hat):
        raise ValueError("eps_plus must be > eps_hat for every player")
    return eps_hat, eps_plus


def _resolve(selection: Selection, payoffs: np.ndarray, scale: np.ndarray) -> SelectionParams:
    """``resolve_selection`` of one game (``payoffs [N, A1..AN]``, ``scale [N]``) or a batch
    (``[B, N, A1..AN]``, ``[B, N]``: fields with a leading B axis, ``rho`` shared)."""
    batched = scale.ndim == 2
    shape = tuple(payoffs.shape[1 + batched:])
    num_players = payoffs.shape[batched]
    base = _fixed_logits(selection, shape)
    if selection.mu > 0 and selection.welfare is None:
        # Utilitarian welfare: each game's own normalised payoffs.
        flat = payoffs.reshape(payoffs.shape[:batched] + (num_players, -1))
        base = base + selection.mu * flat.sum(axis=-2)
    elif batched:
        base = np.broadcast_to(base, (payoffs.shape[0], base.shape[0]))
    eps_hat, eps_plus = _bounds(selection, scale, base.shape[-1])
    return SelectionParams(base, eps_hat, eps_plus, float(selection.rho), selection.objective)


def resolve_selection(selection: Selection, game: NormalisedGame) -> SelectionParams:
    """Maps a selection's parameters into the normalised game's units (DESIGN §5)."""
    return _resolve(selection, game.payoffs, np.asarray(game.scale))


def resolve_batch(selection: Selection, norm: NormalisedGame) -> SelectionParams:
    """``resolve_selection`` for a batch ``norm`` (``solvers.game.normalise_batch``): the same
    rules, vectorised; fields with a leading B axis (``rho`` shared)."""
    return _resolve(selection, norm.payoffs, np.asarray(norm.scale))


def game_independent(selection: Selection) -> bool:
    """True when ``resolve_selection`` does not look at the payoffs or the scales."""
    return (
        (selection.mu == 0 or selection.welfare is not None)
        and not np.any(np.asarray(selection.eps_hat))
        and selection.eps_plus is None
        and not selection.strength
    )


#: Resolutions that do not depend on the game's payoffs, per selection and shape.
_RESOLVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Selection -> {shape: params} | None


def resolve_cached(selection: Selection, norm: NormalisedGame) -> SelectionParams:
    """``resolve_selection``, memoised per shape for game-independent selections (the
    result is shared: never modify it)."""
    per_shape = _RESOLVED.get(selection)
    if per_shape is None:
        # None marks a selection that depends on the game (never cached).
        per_shape = {} if game_independent(selection) else None
        _RESOLVED[selection] = per_shape
    if per_shape is None:
        return resolve_selection(selection, norm)
    shape = norm.payoffs.shape
    params = per_shape.get(shape)
    if params is None:
        params = resolve_selection(selection, norm)
        per_shape[shape] = params
    return params
