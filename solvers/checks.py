"""Argument checks shared by ``solve``, ``solve_batch`` and ``refine_batch``: a clear
``TypeError`` / ``ValueError`` naming the argument and its value."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from solvers.gains import check_concept
from solvers.selection import Selection, as_selection

__all__ = [
    "FACE_MODES",
    "METHODS",
    "check_duals",
    "check_face",
    "check_max_iter",
    "check_method",
    "check_options",
    "check_polish",
    "check_tol",
]

METHODS: tuple[str, ...] = ("auto", "newton", "gd", "cvxpy", "newton-cg")
FACE_MODES: tuple[str, ...] = ("auto", "always", "never")


def check_method(method: object) -> str:
    """The lower-cased method name; ValueError naming ``METHODS`` otherwise."""
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return method.lower()


def check_tol(tol: float) -> float:
    try:
        value = float(tol)
    except (TypeError, ValueError) as err:
        raise TypeError(f"tol must be a positive number, got {tol!r}") from err
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"tol must be positive and finite, got {tol!r}")
    return value


def check_max_iter(max_iter: int | None) -> int | None:
    if max_iter is None:
        return None
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)):
        raise TypeError(f"max_iter must be a positive int or None, got {max_iter!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    return int(max_iter)


def check_face(face: object) -> str:
    if not isinstance(face, str) or face.lower() not in FACE_MODES:
        raise ValueError(f"unknown face mode {face!r}; expected one of {FACE_MODES}")
    return face.lower()


def check_options(
    concept: str,
    selection: str | Selection,
    selection_params: Mapping[str, object],
    method: str,
    tol: float,
    max_iter: int | None,
    face: str,
) -> tuple[str, Selection, str, float, int | None, str]:
    """The checked ``(concept, selection, method, tol, max_iter, face)`` of ``solve`` and
    ``solve_batch``, validated in that order."""
    concept = check_concept(concept)
    sel = as_selection(selection, **selection_params)
    method = check_method(method)
    tol = check_tol(tol)
    max_iter = check_max_iter(max_iter)
    face = check_face(face)
    return concept, sel, method, tol, max_iter, face


def check_polish(polish: object) -> bool:
    if not isinstance(polish, (bool, np.bool_)):
        raise TypeError(f"polish must be True or False, got {polish!r}")
    return bool(polish)


def check_duals(duals: object, shape: tuple[int, ...], name: str = "duals0") -> np.ndarray:
    """``duals`` as a finite non-negative float64 array of ``shape`` (flat duals, payoff units)."""
    array = np.asarray(duals)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}; expected {shape} (flat duals, layout of solvers.gains)")
    array = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains NaN or inf (a Solution's duals are inf where payoff units overflow "
            "float64, see its info['duals_overflow']: pass no warm start, or its "
            "info['normalised_duals'] to solvers.refine_batch)"
        )
    if np.any(array < 0):
        raise ValueError(f"{name} must be >= 0 (dual variables of <= constraints); min entry is {array.min():.3g}")
    return array
