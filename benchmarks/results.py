"""Atomic writers for benchmark results (JSON, markdown tables)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from solvers.atomic import atomic_path, write_text_atomic

__all__ = ["write_text_atomic", "write_json_atomic", "write_figure_atomic", "markdown_table"]


def _plain(value):
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json_atomic(path: Path, data: Mapping) -> None:
    """Writes ``data`` (NumPy values allowed) as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(_plain(data), indent=2, sort_keys=False) + "\n")


def write_figure_atomic(fig, path: Path, dpi: int = 110) -> None:
    """Saves the Matplotlib figure ``fig`` as PNG to ``path`` atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def _cell(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (dicts), columns in first-seen order."""
    if not rows:
        return "(no rows)\n"
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body]) + "\n"
