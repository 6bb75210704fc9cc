"""Validation of ``hybrid_nes.diff``'s inputs: clear errors naming the argument."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_nes.diff.status import DIFF_PRESETS, ON_DEGENERATE, Config
from solvers.gains import check_concept
from solvers.selection import DEFAULT_STRENGTH_WEIGHT, DEFAULT_WELFARE_WEIGHT

__all__ = ["Prepared", "as_float_array", "check_tangent", "prepare"]


class Prepared(NamedTuple):
    """Validated inputs: the static part (``cfg``, ``preset``, ``plus``) and the arrays."""

    cfg: Config
    preset: str
    plus: tuple[float, ...] | None
    payoffs: jax.Array
    target: jax.Array | None
    welfare: jax.Array | None
    mu: jax.Array | None
    eps_hat: jax.Array | None
    mode: jax.Array  # int32: on_degenerate's index in ON_DEGENERATE

    @property
    def arrays(self) -> tuple:
        return (self.payoffs, self.target, self.welfare, self.mu, self.eps_hat)


def as_float_array(value: Any, name: str) -> jax.Array:
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a real array, got {value!r}")
    try:
        array = jnp.asarray(value)
    except TypeError as err:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}") from err
    if not (jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)
            or array.dtype == jnp.bool_):
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    return array.astype(jnp.result_type(float))


def _static_float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError) as err:
        raise TypeError(f"{name} must be a Python float (it is static: no gradient), got {value!r}") from err


def _static_float_vector(value: Any, num_players: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, jax.errors.TracerArrayConversionError) as err:
        raise TypeError(f"eps_plus must be a static float or [N] vector, got {value!r}") from err
    if array.ndim > 1 or (array.ndim == 1 and array.shape != (num_players,)):
        raise ValueError(f"eps_plus must be a scalar or [{num_players}], got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("eps_plus must be finite")
    return array


def check_concrete(cond_fn, array: jax.Array, message: str) -> None:
    """Value checks where the value is concrete (skipped under tracing)."""
    try:
        concrete = np.asarray(array)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if not cond_fn(concrete):
        raise ValueError(message)


def check_tangent(value: Any, primal: jax.Array | None, name: str) -> jax.Array | None:
    """A tangent of ``primal`` (None: zero), same shape; a tangent of an absent parameter
    is an error."""
    if value is None:
        return None if primal is None else jnp.zeros_like(primal)
    if primal is None:
        raise ValueError(f"{name} is given but the selection has no such parameter")
    tangent = as_float_array(value, name)
    if tangent.shape != primal.shape:
        raise ValueError(f"{name} has shape {tangent.shape}; its primal has shape {primal.shape}")
    check_concrete(lambda a: np.all(np.isfinite(a)), tangent, f"{name} contains NaN or inf")
    return tangent.astype(primal.dtype)


def prepare(payoffs: Any, concept: str, selection: str, target: Any, welfare: Any, mu: Any, eps_hat: Any,
            eps_plus: Any, rho: Any, tol: Any, max_iter: int | None, degenerate_tol: Any, face_tol: Any,
            on_degenerate: str) -> Prepared:
    """Checks every argument of ``solve`` (TypeError / ValueError naming it)."""
    concept = check_concept(concept)
    if not isinstance(selection, str):
        raise TypeError(f"selection must be a preset name {DIFF_PRESETS}, got {selection!r}")
    preset = selection.lower()
    if preset == "mg":
        raise ValueError("Max Gini ('mg') has no gradient here: it is a QP outside the entropy dual; "
                         f"use one of {DIFF_PRESETS}")
    if preset not in DIFF_PRESETS:
        raise ValueError(f"unknown selection preset {selection!r}; expected one of {DIFF_PRESETS}")
    if on_degenerate not in ON_DEGENERATE:
        raise ValueError(f"on_degenerate must be one of {ON_DEGENERATE}, got {on_degenerate!r}")
    payoffs = as_float_array(payoffs, "payoffs")
    if payoffs.ndim < 3 or payoffs.ndim != payoffs.shape[0] + 1 or min(payoffs.shape[1:]) < 1:
        raise ValueError(f"payoffs must have shape [N, A1..AN] with N >= 2 players, got {payoffs.shape}")
    check_concrete(lambda a: np.all(np.isfinite(a)), payoffs, "payoffs contain NaN or inf")
    shape = tuple(int(n) for n in payoffs.shape[1:])
    num_players = len(shape)

    if preset == "mre" and target is None:
        raise ValueError("the 'mre' preset needs a target joint (target=...)")
    if preset == "mwme" and welfare is None:
        raise ValueError("the 'mwme' preset needs a welfare tensor (welfare=...)")
    if target is not None and preset != "mre":
        raise ValueError(f"target is a parameter of 'mre', not {preset!r}")
    if welfare is not None and preset != "mwme":
        raise ValueError(f"welfare is a parameter of 'mwme', not {preset!r}")
    if mu is not None and preset not in ("mw", "mwme"):
        raise ValueError(f"mu is a parameter of 'mw'/'mwme', not {preset!r}")
    if rho is None:
        rho_f = DEFAULT_STRENGTH_WEIGHT if preset == "ms" else math.inf
    else:
        rho_f = _static_float(rho, "rho")
    if not rho_f > 0:
        raise ValueError(f"rho must be > 0 (inf for hard constraints), got {rho_f}")
    if preset == "ms" and math.isinf(rho_f):
        raise ValueError("'ms' (Maximum Strength) needs a finite rho")
    tol = _static_float(tol, "tol")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    degenerate_tol = _static_float(degenerate_tol, "degenerate_tol")
    face_tol = _static_float(face_tol, "face_tol")
    if degenerate_tol < 0 or face_tol < 0:
        raise ValueError("degenerate_tol and face_tol must be >= 0")

    t = wa = mu_a = eh = None
    if target is not None:
        t = as_float_array(target, "target")
        if t.shape != shape:
            raise ValueError(f"target has shape {t.shape}; the game's joint shape is {shape}")
        check_concrete(lambda a: np.all(np.isfinite(a)) and np.all(a > 0), t,
                       "target must be finite with full support (every entry > 0)")
        check_concrete(lambda a: abs(a.sum() - 1.0) <= 1e-6, t, "target must sum to 1")
    if preset in ("mw", "mwme"):
        mu_a = as_float_array(DEFAULT_WELFARE_WEIGHT if mu is None else mu, "mu")
        if mu_a.ndim != 0:
            raise ValueError(f"mu must be a scalar, got shape {mu_a.shape}")
        check_concrete(lambda a: np.isfinite(a) and a >= 0, mu_a, "mu must be finite and >= 0")
    if welfare is not None:
        wa = as_float_array(welfare, "welfare")
        if wa.shape != shape:
            raise ValueError(f"welfare has shape {wa.shape}; the game's joint shape is {shape}")
        check_concrete(lambda a: np.all(np.isfinite(a)), wa, "welfare contains NaN or inf")
    hard = math.isinf(rho_f)
    plus = None if (hard or eps_plus is None) else tuple(
        np.broadcast_to(_static_float_vector(eps_plus, num_players), (num_players,)).tolist())
    if preset != "ms":
        eh = as_float_array(eps_hat, "eps_hat")
        if eh.ndim > 1 or (eh.ndim == 1 and eh.shape != (num_players,)):
            raise ValueError(f"eps_hat must be a scalar or [{num_players}], got shape {eh.shape}")
        check_concrete(lambda a: np.all(np.isfinite(a)), eh, "eps_hat must be finite")
    cfg = Config(concept, shape, rho_f, tol, max_iter, degenerate_tol, face_tol)
    mode = jnp.asarray(ON_DEGENERATE.index(on_degenerate), dtype=jnp.int32)
    return Prepared(cfg, preset, plus, payoffs, t, wa, mu_a, eh, mode)
