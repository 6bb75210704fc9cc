"""Checkpoints and weight files: one ``.npz`` (no pickle), written atomically.

Layout of the archive:

    meta                       JSON (config, step, history, ...) as a 0-d unicode array
    params/<module>/<name>     network parameters
    state/<module>/<name>      BatchNorm state at the last step
    stats/<A1xA2..>/<module>/<name>   BatchNorm statistics calibrated per game shape
    opt/<i>                    optimiser state leaves (training checkpoints only)

``meta["checksum"]`` is the SHA-256 of every array (sorted by key); ``load`` rejects a
file whose arrays do not match it, or any NaN/inf array entry. ``save`` writes a temporary file in the same
directory, reads it back and verifies it, and only then ``os.replace``-s it over the
target: an interrupted or corrupt write never replaces a good checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from solvers.atomic import atomic_path

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "save",
    "load",
    "shape_key",
    "parse_shape_key",
    "flatten",
    "unflatten",
]


class CheckpointError(ValueError):
    """A weight or checkpoint file is missing, corrupt or does not fit."""


class Checkpoint(NamedTuple):
    """The contents of a checkpoint.

    Attributes:
      meta: JSON-able dict (config, step, history, ...).
      params: nested ``{module: {name: array}}`` (haiku params).
      state: nested BatchNorm state at the last training step.
      stats: ``{shape: nested state}`` calibrated BatchNorm statistics per game shape.
      opt: optimiser state leaves (empty in shipped weights).
    """

    meta: dict[str, Any]
    params: dict[str, dict[str, np.ndarray]]
    state: dict[str, dict[str, np.ndarray]]
    stats: dict[tuple[int, ...], dict[str, dict[str, np.ndarray]]]
    opt: list[np.ndarray]


def shape_key(shape: tuple[int, ...]) -> str:
    """``(8, 8) -> "8x8"``."""
    return "x".join(str(int(n)) for n in shape)


def parse_shape_key(key: str) -> tuple[int, ...]:
    """``"8x8" -> (8, 8)``."""
    return tuple(int(n) for n in key.split("x"))


def flatten(tree: Mapping[str, Mapping[str, Any]], prefix: str) -> dict[str, np.ndarray]:
    """``{module: {name: array}} -> {"prefix/module/name": array}``."""
    return {f"{prefix}/{m}/{n}": np.asarray(v) for m, leaves in tree.items() for n, v in leaves.items()}


def unflatten(flat: Mapping[str, np.ndarray], prefix: str) -> dict[str, dict[str, np.ndarray]]:
    """Inverse of ``flatten`` for the keys under ``prefix``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    start = prefix + "/"
    for key, value in flat.items():
        if not key.startswith(start):
            continue
        module, name = key[len(start) :].rsplit("/", 1)
        out.setdefault(module, {})[name] = value
    return out


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _arrays(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    arrays = {**flatten(ckpt.params, "params"), **flatten(ckpt.state, "state")}
    for shape, tree in ckpt.stats.items():
        arrays.update(flatten(tree, f"stats/{shape_key(shape)}"))
    for i, leaf in enumerate(ckpt.opt):
        arrays[f"opt/{i:05d}"] = np.asarray(leaf)
    return arrays


def _check_finite(flat: Mapping[str, np.ndarray], path: Path) -> None:
    """Every floating-point array is finite: a NaN or inf parameter (a diverged run saved
    with a valid checksum) would load and predict NaN duals for every game."""
    for key in sorted(flat):
        value = flat[key]
        if np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            kind = "NaN" if np.any(np.isnan(value)) else "inf"
            raise CheckpointError(
                f"weight file {str(path)!r}: parameter {key!r} has {bad} non-finite ({kind}) "
                f"entries of {np.size(value)}; the weights are unusable (a diverged run?)"
            )


def save(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Writes ``ckpt`` to ``path`` atomically (tmp + verify + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(ckpt)
    meta = dict(ckpt.meta)
    meta["checksum"] = _checksum(arrays)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        load(tmp)  # verify before it can replace anything
    return path


def load(path: str | os.PathLike) -> Checkpoint:
    """Reads and verifies a checkpoint or weight file.

    Raises:
      CheckpointError: missing file, not an npz archive, missing metadata, arrays that
        do not match the stored checksum (truncated or corrupt file), or a NaN/inf entry
        in any array (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            flat = {k: archive[k] for k in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:
        raise CheckpointError(f"weight file {str(path)!r} is corrupt or not an .npz archive: {err}") from err
    if "meta" not in flat:
        raise CheckpointError(f"weight file {str(path)!r} has no 'meta' entry; not a hybrid_nes checkpoint")
    try:
        meta = json.loads(str(flat.pop("meta")))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"weight file {str(path)!r} has corrupt metadata: {err}") from err
    expected = meta.get("checksum")
    if expected is None or _checksum(flat) != expected:
        raise CheckpointError(f"weight file {str(path)!r} fails its checksum (corrupt or edited)")
    _check_finite(flat, path)
    stats: dict[tuple[int, ...], dict] = {}
    for key in flat:
        if key.startswith("stats/"):
            skey = key.split("/")[1]
            if parse_shape_key(skey) not in stats:
                stats[parse_shape_key(skey)] = unflatten(flat, f"stats/{skey}")
    opt_keys = sorted(k for k in flat if k.startswith("opt/"))
    return Checkpoint(
        meta=meta,
        params=unflatten(flat, "params"),
        state=unflatten(flat, "state"),
        stats=stats,
        opt=[flat[k] for k in opt_keys],
    )
