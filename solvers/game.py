"""Games: validation, L2-invariant normalisation and the map back to payoff units.

A normal-form game is a float64 tensor ``payoffs: [N, A1..AN]``; ``payoffs[p, a]`` is
player p's payoff under joint action ``a``. See DESIGN.md §1 and §5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numba import get_num_threads, njit, prange

from solvers import kernels as kn

__all__ = [
    "CONSTANT_ULPS",
    "NormalisedGame",
    "as_game",
    "as_game_batch",
    "as_game_fast",
    "normalise_fast",
    "normalise_group",
    "is_float64_game",
    "normalise",
    "normalise_batch",
    "normalise_games",
    "marginals",
]


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(array)):
        bad = "NaN" if np.any(np.isnan(array)) else "inf"
        raise ValueError(f"{name} contains {bad} values; payoffs must be finite")


def _check_real_dtype(array: np.ndarray, name: str) -> None:
    """Payoffs are real numbers: integer, float or bool (read as 0/1) dtypes.

    One rule for ``as_game`` and ``as_game_batch`` (so for ``solve`` and every form of
    ``solve_batch``): complex payoffs are a TypeError, never cast to their real part.
    """
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real, got complex dtype {array.dtype}")
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")


_FLOAT64 = np.dtype(np.float64)


def is_float64_game(game: object) -> bool:
    """True for a float64 ndarray of a game's shape ``[N, A1..AN]`` (N >= 2, every A_p >= 1).

    The structural checks of ``as_game`` in one expression, for its fast paths; finiteness
    is left to the caller (``as_game`` checks it, as do the compiled solvers' fast paths).
    """
    # ``dtype is _FLOAT64`` first: NumPy's native float64 dtype is one object, and
    # comparing a dtype with the scalar type converts the type on every call (~0.4 us).
    return (
        type(game) is np.ndarray
        and (game.dtype is _FLOAT64 or game.dtype == np.float64)
        and game.ndim >= 3
        and game.ndim == game.shape[0] + 1
        and game.size > 0  # every A_p >= 1 (N >= 2 by the line above)
    )


def as_game(game: np.ndarray | Sequence[np.ndarray], name: str = "game") -> np.ndarray:
    """Validates a game and returns it as a float64 tensor ``[N, A1..AN]``.

    Args:
      game: a payoff tensor ``[N, A1..AN]`` (N >= 2 players, every A_p >= 1), or a
        bimatrix pair ``(A, B)`` of two ``[A1, A2]`` matrices (row and column player).
      name: the argument's name, used in error messages.

    Returns:
      ``[N, A1..AN]`` float64 array (a copy when the input was not already one).

    Raises:
      TypeError: the input is not real numbers (complex, object, string dtypes); bool
        payoffs are read as 0/1.
      ValueError: wrong rank or shape, zero actions, NaN or inf payoffs.
    """
    if is_float64_game(game) and np.isfinite(game).all():  # the common case, fewer calls
        return game.copy()
    if isinstance(game, (tuple, list)) and len(game) == 2 and all(
        np.ndim(g) == 2 for g in game
    ):
        row, col = (np.asarray(g) for g in game)
        if row.shape != col.shape:
            raise ValueError(
                f"{name}: bimatrix pair has mismatched shapes {row.shape} and {col.shape}"
            )
        game = np.stack([row, col])
    array = np.asarray(game)
    _check_real_dtype(array, name)
    if array.ndim < 3:
        raise ValueError(
            f"{name} must have shape [N, A1..AN] with N >= 2 players, got shape {array.shape}"
        )
    num_players = array.shape[0]
    if array.ndim != num_players + 1:
        raise ValueError(
            f"{name} has {num_players} players on axis 0 but {array.ndim - 1} action axes "
            f"(shape {array.shape}); expected shape [N, A1..AN] with N == number of action axes"
        )
    if any(n < 1 for n in array.shape[1:]):
        raise ValueError(f"{name}: every player needs at least one action, got shape {array.shape}")
    array = np.array(array, dtype=np.float64)
    _check_finite(array, name)
    return array


def as_game_batch(games: np.ndarray, name: str = "games", copy: bool = True) -> np.ndarray:
    """Validates a batch of games of one shape, ``[B, N, A1..AN]`` float64.

    The dtype rule is ``as_game``'s: integer, float or bool (0/1) payoffs; complex ones
    are a TypeError. ``copy=False``: a float64 input is returned as it is (for callers
    that neither keep nor edit it, e.g. ``solve_batch``: a batch of 4,096 8x8 games is a
    4 MB copy), a view of it where it was another array type.
    """
    array = np.asarray(games)
    if array.ndim < 4:
        raise ValueError(f"{name} must have shape [B, N, A1..AN], got shape {array.shape}")
    if array.shape[0] < 1:
        raise ValueError(f"{name} is an empty batch")
    num_players = array.shape[1]
    if array.ndim != num_players + 2:
        raise ValueError(
            f"{name} has {num_players} players on axis 1 but {array.ndim - 2} action axes "
            f"(shape {array.shape}); expected [B, N, A1..AN]"
        )
    if any(n < 1 for n in array.shape[2:]):
        raise ValueError(f"{name}: every player needs at least one action, got shape {array.shape}")
    _check_real_dtype(array, name)
    array = np.array(array, dtype=np.float64, copy=True if copy else None)
    _check_finite(array, name)
    return array


class NormalisedGame(NamedTuple):
    """A game mapped to the L2-invariant space (DESIGN §5).

    Attributes:
      payoffs: ``[N, A1..AN]`` normalised payoffs; each player's slice has mean 0 and
        L2 norm ``sqrt(|A|)`` (or is all zero for a constant-payoff player).
      scale: ``[N]`` factor ``s_p = sqrt(|A|) / ||G_p - mean(G_p)||`` (1 for a
        constant-payoff player); normalised gains are ``s_p`` times payoff gains.
      offset: ``[N]`` the per-player means that were subtracted.
    """

    payoffs: np.ndarray
    scale: np.ndarray
    offset: np.ndarray


#: A player whose payoffs span at most this many units of float64 resolution (machine
#: epsilon) of its own largest magnitude is constant: ``max G_p - min G_p <=
#: CONSTANT_ULPS * eps * max |G_p|``. Such differences are the rounding of the payoffs
#: themselves (``0.1 + 0.2`` vs ``0.3``), not payoff information. Anything wider is
#: resolved exactly: a prisoner's dilemma ``+1e13`` (spread 3, 1e13 * eps = 2e-3) is not
#: constant, nor is one scaled by ``1e-300``.
CONSTANT_ULPS = 4.0
_EPS = float(np.finfo(np.float64).eps)
_HALF_MAX = float(np.finfo(np.float64).max) / 2


def normalise_batch(games: np.ndarray) -> NormalisedGame:
    """Normalises a validated batch ``[B, N, A1..AN]``; fields gain a leading B axis.

    Overflow- and underflow-safe for every finite game (payoffs up to ``1.8e308`` in
    magnitude): each player's slice is centred on its midrange ``c`` (exact for an
    offset game: Sterbenz), divided by its own largest deviation ``r`` from it, and only
    then centred on its mean and put on the sphere, so no intermediate leaves
    ``[-2, 2] sqrt(|A|)``. ``s_p = (sqrt(|A|) / ||e||) / r`` with ``e = (G_p - c) / r - mean``.

    Raises:
      ValueError: where float64 cannot represent the normalised problem: a player whose
        payoff spread ``max - min`` overflows (its gains in payoff units are not finite),
        or whose spread is so small (below ~1e-306) that ``s_p`` overflows.
    """
    b, n = games.shape[:2]
    flat = games.reshape(b, n, -1)
    num_joint = flat.shape[-1]
    hi = flat.max(axis=-1)
    lo = flat.min(axis=-1)
    half = 0.5 * hi - 0.5 * lo  # half the spread: never overflows
    if np.any(half > _HALF_MAX):
        g, p = np.argwhere(half > _HALF_MAX)[0]
        raise ValueError(
            f"player {p} of game {g} has payoffs from {lo[g, p]:.6g} to {hi[g, p]:.6g}: the spread "
            "overflows float64, so its deviation gains cannot be represented; rescale the game"
        )
    top = np.maximum(np.abs(hi), np.abs(lo))
    tiny = half <= (0.5 * CONSTANT_ULPS * _EPS) * top
    centre = 0.5 * hi + 0.5 * lo
    # max |G - c|: subtracting c is monotone in floating point, so the extremes of
    # ``G - c`` are ``hi - c`` and ``lo - c`` (no pass over the payoffs).
    radius = np.maximum(hi - centre, centre - lo)
    tiny |= radius == 0.0
    safe_radius = np.where(tiny, 1.0, radius)
    # One buffer, edited in place (the batch path runs on thousands of games at once).
    centred = flat - centre[..., None]  # exact when G_p = x + offset with a large offset
    centred /= safe_radius[..., None]  # in [-1, 1]
    mean_unit = centred.mean(axis=-1)
    centred -= mean_unit[..., None]
    norm = np.sqrt(np.einsum("bpj,bpj->bp", centred, centred))
    tiny |= norm == 0.0
    factor = np.sqrt(num_joint) / np.where(tiny, 1.0, norm)
    with np.errstate(over="ignore"):
        scale = np.where(tiny, 1.0, factor / safe_radius)
    if not np.all(np.isfinite(scale)):
        g, p = np.argwhere(~np.isfinite(scale))[0]
        raise ValueError(
            f"player {p} of game {g} has payoffs that differ by at most {2 * half[g, p]:.3g}: the "
            "normalisation factor sqrt(|A|) / spread overflows float64 (its duals and scale in "
            "payoff units cannot be represented); multiply the game by a larger factor"
        )
    centred *= factor[..., None]
    if tiny.any():
        centred[tiny] = 0.0
    payoffs = centred
    offset = centre + np.where(tiny, 0.0, radius) * mean_unit
    return NormalisedGame(payoffs.reshape(games.shape), scale, offset)


def normalise(game: np.ndarray) -> NormalisedGame:
    """Normalises one validated game ``[N, A1..AN]`` (DESIGN §5)."""
    out = normalise_batch(game[None])
    return NormalisedGame(out.payoffs[0], out.scale[0], out.offset[0])


#: ``normalise_batch``'s constant-player threshold: spread relative to max |payoff|
#: (``CONSTANT_ULPS`` machine epsilons).
_TINY_NORM = CONSTANT_ULPS * _EPS


def normalise_fast(payoffs: np.ndarray) -> NormalisedGame:
    """``normalise`` of one validated game, compiled (one call, no temporaries)."""
    num_players = payoffs.shape[0]
    out, scale, offset = kn.normalise_one(payoffs.reshape(num_players, -1), _TINY_NORM)
    if not kn.all_finite(scale):
        return normalise(payoffs)  # raises the ValueError that says why
    return NormalisedGame(out.reshape(payoffs.shape), scale, offset)


@njit(cache=True)
def _normalise_range(lo, hi, flat, tiny_rel, out, scale, offset):
    """``kernels.normalise_one`` of games ``lo..hi-1`` of ``flat: [B, N, |A|]`` into the outputs."""
    for b in range(lo, hi):
        o, s, f = kn.normalise_one(flat[b], tiny_rel)
        out[b] = o
        scale[b] = s
        offset[b] = f


@njit(cache=True, parallel=True)
def _normalise_parallel(flat, tiny_rel, out, scale, offset, chunks):
    num_games = flat.shape[0]
    for c in prange(chunks):
        _normalise_range(c * num_games // chunks, (c + 1) * num_games // chunks, flat, tiny_rel, out, scale, offset)


#: ``normalise_games`` uses all threads from this many payoffs (``B N |A|``) on: below it a
#: thread-pool launch costs more than the ~5 ns a payoff of the serial pass.
PARALLEL_MIN_PAYOFFS = 1 << 16


def normalise_games(games: np.ndarray) -> NormalisedGame:
    """``normalise_batch`` of a validated ``[B, N, A1..AN]`` by ``solve``'s own compiled
    formula, game by game (``kernels.normalise_one``, in parallel over games): each game
    normalised bit for bit as ``solve`` normalises it alone, in one pass without
    ``[B, N, |A|]`` temporaries (``solve_batch``; ``normalise_batch`` itself, whose
    rounding the NES pipeline's inputs were made with, is unchanged). Where a game cannot
    be normalised, ``normalise_batch`` raises the ValueError that says why."""
    b, n = games.shape[:2]
    flat = np.ascontiguousarray(games).reshape(b, n, -1)
    out = np.empty(flat.shape)
    scale = np.empty((b, n))
    offset = np.empty((b, n))
    if flat.size >= PARALLEL_MIN_PAYOFFS and b > 1:
        _normalise_parallel(flat, _TINY_NORM, out, scale, offset, min(b, 4 * get_num_threads()))
    else:
        _normalise_range(0, b, flat, _TINY_NORM, out, scale, offset)
    if not kn.all_finite(scale.reshape(-1)):
        return normalise_batch(games)  # raises
    return NormalisedGame(out.reshape(games.shape), scale, offset)


def normalise_group(games: np.ndarray) -> NormalisedGame:
    """``normalise_batch`` of a validated ``[B, N, A1..AN]``; one game (B = 1) by
    ``normalise_games``, as ``solvers.solve`` normalises it."""
    return normalise_games(games) if games.shape[0] == 1 else normalise_batch(games)


def as_game_fast(game: object) -> np.ndarray:
    """``as_game`` without the copy for a well-formed finite float64 tensor (the common
    case); anything else goes through ``as_game`` and its error messages."""
    if is_float64_game(game) and kn.all_finite(game.reshape(-1)):
        return game
    return as_game(game)


def marginals(joint: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-player marginals of a joint ``[A1..AN]``: a tuple of N arrays ``[A_p]``."""
    axes = tuple(range(joint.ndim))
    return tuple(joint.sum(axis=axes[:p] + axes[p + 1 :]) for p in axes)
