"""The table behind ``warm_start="auto"``: derived from a benchmark run, reviewed, then written.

``benchmarks/pipeline_suite.py`` only measures: per cell (concept, shape, preset) of its
random suite it records the fastest start (cold or warm) and dual method
(``best_key``). ``hybrid-nes policy --from benchmarks/results/pipeline_suite.json``
turns such a run into the table ``hybrid_nes.pipeline.plan_for`` reads
(``hybrid_nes/pretrained/auto_policy.json``, ``{"tol": .., "cells": {"ce/8x8/me":
{"warm": bool, "method": str}}}``): it prints the cells that would change and writes the
file (atomically) only with ``--write``.

By default the measured cells replace theirs and the other cells are kept (a quick run
measures ME only); a run at another ``tol`` than the table's must replace the whole table
(``replace=True``), so that one table never mixes tolerances.
"""

from __future__ import annotations

import json
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from hybrid_nes.pipeline import POLICY_FILE
from solvers.atomic import write_text_atomic

__all__ = [
    "Change",
    "changes",
    "default_policy_path",
    "load_results",
    "policy_from_results",
    "policy_from_rows",
    "read_policy",
    "updated_policy",
    "write_policy",
]


class Change(NamedTuple):
    """One entry of the table that differs: ``key`` is a cell (``"ce/8x8/me"``) or ``"tol"``;
    ``before`` / ``after`` are None where the entry is absent."""

    key: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.key}: {_describe(self.before)} -> {_describe(self.after)}"


def _describe(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def default_policy_path() -> Path:
    """The table shipped in the package, the one ``warm_start="auto"`` reads."""
    return Path(str(resources.files("hybrid_nes") / "pretrained" / POLICY_FILE))


def policy_from_rows(rows: list[dict], tol: float) -> dict:
    """``{"tol": tol, "cells": {"concept/shape/preset": {"warm": bool, "method": str}}}``:
    the ``best_key`` of every ``warm_start="auto"`` row of the random suite."""
    cells = {}
    for row in rows:
        if row["start"] == "auto" and row["cell"].startswith("random"):
            cells[f"{row['concept']}/{row['shape']}/{row['preset']}"] = row["best_key"]
    return {"tol": tol, "cells": cells}


def load_results(path: str | os.PathLike) -> dict:
    """A ``pipeline_suite.json`` run, checked for what ``policy_from_results`` reads.

    Raises:
      OSError: the file cannot be read.
      ValueError: not JSON, or without a finite ``tol`` and a list of ``rows``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not a pipeline_suite result (no 'rows' list)")
    tol = data.get("tol")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"{path}: 'tol' must be a positive number, got {tol!r}")
    return data


def policy_from_results(results: dict, source: str = "results") -> dict:
    """The table measured by a ``pipeline_suite`` run (``load_results``).

    Raises:
      ValueError: a row lacks a field, a ``best_key`` is not ``{"warm": bool, "method": str}``,
        or the run measured no cell (no ``warm_start="auto"`` row of the random suite).
    """
    try:
        policy = policy_from_rows(results["rows"], float(results["tol"]))
    except (KeyError, TypeError) as err:
        raise ValueError(f"{source}: a row lacks {err}") from None
    for key, cell in policy["cells"].items():
        if (not isinstance(cell, dict) or set(cell) != {"warm", "method"} or not isinstance(cell["warm"], bool)
                or not isinstance(cell["method"], str)):
            raise ValueError(f"{source}: cell {key}: best_key must be {{'warm': bool, 'method': str}}, got {cell!r}")
    if not policy["cells"]:
        raise ValueError(f"{source}: measures no cell (no warm_start='auto' row of the random suite)")
    return policy


def read_policy(path: str | os.PathLike) -> dict:
    """The table at ``path``; ``{}`` when there is none."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def updated_policy(current: dict, measured: dict, replace: bool = False) -> dict:
    """``current`` with ``measured``'s cells; only ``measured``'s with ``replace``.

    Raises:
      ValueError: ``measured`` was run at another ``tol`` than ``current`` and not ``replace``.
    """
    if replace or not current:
        return {"tol": measured["tol"], "cells": dict(measured["cells"])}
    if current.get("tol") != measured["tol"]:
        raise ValueError(f"the results were measured at tol {measured['tol']:g}, the table at tol "
                         f"{current.get('tol')}; replace the whole table (--replace) or measure at its tol")
    return {**current, "cells": {**current.get("cells", {}), **measured["cells"]}}


def changes(before: dict, after: dict) -> list[Change]:
    """Entries of ``after`` that differ from ``before``: ``tol`` first, then the cells in
    ``before``'s order followed by the new ones."""
    out = []
    if before.get("tol") != after.get("tol"):
        out.append(Change("tol", before.get("tol"), after.get("tol")))
    old, new = before.get("cells", {}), after.get("cells", {})
    for key in [*old, *(k for k in new if k not in old)]:
        if old.get(key) != new.get(key):
            out.append(Change(key, old.get(key), new.get(key)))
    return out


def write_policy(path: str | os.PathLike, policy: dict) -> Path:
    """Writes the table as indented JSON, atomically (``solvers.atomic``)."""
    return write_text_atomic(path, json.dumps(policy, indent=2) + "\n")
