"""Shards on disk for ``hybrid_nes.distributed``: input shards, result shards and run reports.

An input shard is a ``.npy`` file of games ``[B_i, N, A1..AN]``; its result shard an
``.npz`` file of the per-game arrays ``FIELDS`` (``solvers.solution.stack_solutions``) and
a ``META_KEY`` entry (JSON: source, games, shape, options and their fingerprint), written
atomically once every chunk of the shard is in (``Source``). ``is_complete`` says whether
a result shard already holds what a run would write, so that a re-run skips it.
``ShardReport`` / ``ChunkFailure`` say what ``solve_shards`` did. Dask is imported only
to fingerprint the options.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from solvers.atomic import atomic_path
from solvers.selection import Selection

__all__ = [
    "FIELDS",
    "META_KEY",
    "ChunkFailure",
    "ShardReport",
    "Source",
    "concat_chunks",
    "is_complete",
    "open_shard",
    "save_npz",
    "shard_files",
    "shard_meta",
]

#: Per-game result arrays, in the order of ``stack_solutions``.
FIELDS: tuple[str, ...] = (
    "joint", "duals", "eps", "gaps", "scale", "gap", "normalised_gap", "duality_gap", "objective",
    "iterations", "status", "method",
)
#: Key in result shards holding their metadata (JSON text).
META_KEY = "meta"


@dataclass(frozen=True)
class ChunkFailure:
    """A chunk whose task kept failing after its retries."""

    source: str  # the shard file (or input file) it came from
    chunk: int  # chunk index within the source
    games: tuple[int, int]  # [lo, hi) game indices within the source
    error: str

    def __str__(self) -> str:
        return f"{self.source} chunk {self.chunk} (games {self.games[0]}..{self.games[1] - 1}): {self.error}"


@dataclass
class ShardReport:
    """What ``solve_shards`` did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # complete from an earlier run
    failed: list[ChunkFailure] = field(default_factory=list)
    games: int = 0  # games solved in this run
    certified: int = 0  # of which status "optimal"
    seconds: float = 0.0  # the whole call
    warmup_seconds: float = 0.0  # of which warming the workers (``warm=True``)

    @property
    def ok(self) -> bool:
        """Every shard written (or already complete), no chunk failed."""
        return not self.failed


@dataclass
class Source:
    """Games to solve and where their results go."""

    name: str
    games: np.ndarray  # may be a read-only memory map: chunks are read as they are sent
    write: Callable[[dict[str, np.ndarray]], None]
    chunks: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    failed: bool = False

    @property
    def num(self) -> int:
        return int(self.games.shape[0])


def shard_meta(source: str, shape: tuple[int, ...], concept: str, sel: Selection, opts: Mapping) -> dict:
    import dask

    return {
        "source": source, "games": int(shape[0]), "shape": list(shape[1:]),
        "concept": concept, "selection": sel.name,
        "options": {k: v for k, v in opts.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "fingerprint": dask.base.tokenize(concept, sel, sorted(opts.items(), key=lambda kv: kv[0])),
    }


def is_complete(path: Path, meta: dict) -> bool:
    """True when ``path`` holds the results ``meta`` describes; ``ValueError`` when it holds
    results of other options (they are not silently replaced); False when absent/unreadable."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            old = json.loads(str(data[META_KEY]))
            rows = {data[k].shape[0] for k in FIELDS}
    except Exception:  # a foreign or damaged file: solve the shard again
        return False
    if old.get("fingerprint") != meta["fingerprint"]:
        raise ValueError(f"{path} holds results of other options ({old.get('concept')}, "
                         f"{old.get('selection')}, {old.get('options')}); use another out directory")
    return old.get("games") == meta["games"] and old.get("shape") == meta["shape"] and rows == {meta["games"]}


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def concat_chunks(chunks: Mapping[int, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    order = sorted(chunks)
    out = {k: np.concatenate([chunks[i][k] for i in order]) for k in FIELDS}
    # status / method as stack_solutions writes them (the narrowest str dtype)
    for key in ("status", "method"):
        out[key] = np.array(out[key].tolist())
    return out


def shard_files(in_dir: Path) -> list[Path]:
    if not in_dir.is_dir():
        raise FileNotFoundError(f"no shard directory {in_dir}")
    files = sorted(p for p in in_dir.iterdir() if p.suffix.lower() == ".npy" and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{in_dir} holds no .npy shards")
    return files


def open_shard(path: Path) -> np.ndarray:
    """The shard as a read-only memory map, its shape checked (values are checked by the task)."""
    games = np.load(path, mmap_mode="r", allow_pickle=False)
    if games.ndim < 4 or games.ndim != games.shape[1] + 2 or games.shape[0] < 1:
        raise ValueError(f"{path}: a shard must hold games [B, N, A1..AN] with B >= 1, got shape {games.shape}")
    if not np.issubdtype(games.dtype, np.number):
        raise TypeError(f"{path}: games must be numeric, got dtype {games.dtype}")
    return games

