"""Reading and writing games: NumPy ``.npy`` / ``.npz`` and Gambit ``.nfg`` files.

``.nfg`` goes through pygambit (extra ``openspiel`` installs it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from solvers.atomic import atomic_path
from solvers.game import as_game, as_game_batch

__all__ = ["load_game", "load_games", "save_game"]

NPZ_KEYS: tuple[str, ...] = ("payoffs", "game", "arr_0")


def _pygambit():
    try:
        import pygambit
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading or writing .nfg files needs pygambit: pip install 'hybrid_nes[openspiel]'"
        ) from err
    return pygambit


def _load_npz(path: Path, keys: tuple[str, ...] = NPZ_KEYS) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        for key in keys:
            if key in data:
                return data[key]
        if len(data.files) == 1:
            return data[data.files[0]]
        raise ValueError(f"{path}: .npz holds {data.files}; expected one array or a key in {keys}")


def _load_nfg(path: Path) -> np.ndarray:
    game = _pygambit().read_nfg(str(path))
    arrays = game.to_arrays(dtype=float)
    return np.stack([np.asarray(a, dtype=np.float64) for a in arrays])


def _read_array(path: Path, what: str, npz_keys: tuple[str, ...], nfg: bool) -> np.ndarray:
    """The raw array of a ``.npy`` / ``.npz`` (/ ``.nfg`` when ``nfg``) file."""
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        return _load_npz(path, npz_keys)
    if suffix == ".nfg" and nfg:
        return _load_nfg(path)
    types = ".npy, .npz or .nfg" if nfg else ".npy or .npz"
    raise ValueError(f"{path}: unknown {what} file type {suffix!r}; use {types}")


def load_game(path: str | os.PathLike) -> np.ndarray:
    """Reads a game file into a validated ``[N, A1..AN]`` float64 tensor.

    Supports ``.npy`` (the tensor), ``.npz`` (key ``payoffs``/``game`` or a single array)
    and Gambit ``.nfg`` (strategic form, any number of players).
    """
    path = Path(path)
    return as_game(_read_array(path, "game", NPZ_KEYS, nfg=True), name=str(path))


def load_games(path: str | os.PathLike) -> np.ndarray:
    """Reads a batch of games of one shape, ``[B, N, A1..AN]`` float64, from ``.npy`` or
    ``.npz`` (key ``payoffs``/``games``/``game`` or a single array).

    The batch axis is required: ``[N, A1..AN]`` is ambiguous (a ``[3, 2, 4, 4]`` array is
    both one 3-player game and three 2-player ones); add it with ``array[None]``.
    """
    path = Path(path)
    return as_game_batch(_read_array(path, "games", ("games",) + NPZ_KEYS, nfg=False), name=str(path))


def save_game(game: np.ndarray, path: str | os.PathLike, title: str = "hybrid_nes game") -> None:
    """Writes ``game: [N, A1..AN]`` as ``.npy``, ``.npz`` or ``.nfg``, atomically."""
    game = as_game(game)
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix == ".npy":
            np.save(tmp, game)
        elif suffix == ".npz":
            np.savez(tmp, payoffs=game)
        elif suffix == ".nfg":
            gbt = _pygambit()
            written = gbt.Game.from_arrays(*game, title=title)
            tmp.write_text(written.to_nfg())
        else:
            raise ValueError(f"{path}: unknown game file type {suffix!r}; use .npy, .npz or .nfg")
