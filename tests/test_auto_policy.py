"""``hybrid-nes policy``: the auto-policy table changes only on --write, exactly as printed."""

from __future__ import annotations

import json

import pytest

from hybrid_nes import auto_policy
from hybrid_nes.cli import main


def _row(cell: str, concept: str, shape: str, preset: str, start: str, warm: bool, method: str) -> dict:
    return {"cell": cell, "concept": concept, "shape": shape, "preset": preset, "start": start,
            "method": "auto", "best_key": {"warm": warm, "method": method}}


def _results(tmp_path, tol=1e-8, rows=None):
    rows = rows if rows is not None else [
        _row("random 4x4", "cce", "4x4", "me", "auto", False, "newton"),  # unchanged
        _row("random 8x8", "ce", "8x8", "me", "auto", True, "newton"),  # changed
        _row("random 16x16", "ce", "16x16", "me", "auto", False, "gd"),  # new
        _row("random 16x16", "ce", "16x16", "me", "cold", True, "auto"),  # not an auto row: ignored
        _row("gamut PD", "ce", "8x8", "mre", "auto", True, "gd"),  # not the random suite: ignored
    ]
    path = tmp_path / "pipeline_suite.json"
    path.write_text(json.dumps({"mode": "quick", "tol": tol, "rows": rows}))
    return path


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "auto_policy.json"
    auto_policy.write_policy(path, {"tol": 1e-8, "cells": {
        "cce/4x4/me": {"warm": False, "method": "newton"},
        "ce/8x8/me": {"warm": False, "method": "auto"},
        "ce/8x8/mre": {"warm": False, "method": "auto"},  # not measured: kept
    }})
    return path


def _printed_keys(out: str) -> list[str]:
    return [line.strip().split(":")[0] for line in out.splitlines() if line.startswith("  ")]


def test_dry_run_prints_the_changes_and_writes_nothing(tmp_path, table, capsys):
    results = _results(tmp_path)
    before = table.read_bytes()
    assert main(["policy", "--from", str(results), "--policy", str(table)]) == 0
    out = capsys.readouterr().out
    assert _printed_keys(out) == ["ce/8x8/me", "ce/16x16/me"]
    assert "ce/8x8/me: warm=False method=auto -> warm=True method=newton" in out
    assert "ce/16x16/me: (absent) -> warm=False method=gd" in out
    assert "2 entries would change; pass --write" in out
    assert table.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto_policy.json", "pipeline_suite.json"]


def test_write_changes_exactly_the_printed_cells(tmp_path, table, capsys):
    results = _results(tmp_path)
    before = json.loads(table.read_text())
    assert main(["policy", "--from", str(results), "--policy", str(table), "--write"]) == 0
    printed = _printed_keys(capsys.readouterr().out)
    after = json.loads(table.read_text())
    assert after["tol"] == before["tol"]
    keys = set(before["cells"]) | set(after["cells"])
    changed = [k for k in keys if before["cells"].get(k) != after["cells"].get(k)]
    assert sorted(changed) == sorted(printed) == ["ce/16x16/me", "ce/8x8/me"]
    assert after["cells"]["ce/8x8/me"] == {"warm": True, "method": "newton"}
    assert after["cells"]["ce/8x8/mre"] == before["cells"]["ce/8x8/mre"]
    # A second run finds nothing left to change.
    assert main(["policy", "--from", str(results), "--policy", str(table)]) == 0
    assert "no change" in capsys.readouterr().out


def test_another_tol_must_replace_the_whole_table(tmp_path, table, capsys):
    results = _results(tmp_path, tol=1e-6)
    before = table.read_bytes()
    assert main(["policy", "--from", str(results), "--policy", str(table), "--write"]) == 2
    assert "tol" in capsys.readouterr().err
    assert table.read_bytes() == before
    assert main(["policy", "--from", str(results), "--policy", str(table), "--replace", "--write"]) == 0
    printed = _printed_keys(capsys.readouterr().out)
    assert printed == ["tol", "ce/8x8/me", "ce/8x8/mre", "ce/16x16/me"]
    after = json.loads(table.read_text())
    assert after == {"tol": 1e-6, "cells": {"cce/4x4/me": {"warm": False, "method": "newton"},
                                            "ce/8x8/me": {"warm": True, "method": "newton"},
                                            "ce/16x16/me": {"warm": False, "method": "gd"}}}


def test_bad_results_are_refused(tmp_path, table, capsys):
    before = table.read_bytes()
    bad = tmp_path / "bad.json"
    for text, message in (("{", "not JSON"), ('{"tol": 1e-8}', "no 'rows'"), ('{"rows": []}', "'tol'"),
                          ('{"tol": 1e-8, "rows": []}', "measures no cell")):
        bad.write_text(text)
        assert main(["policy", "--from", str(bad), "--policy", str(table), "--write"]) == 2
        assert message in capsys.readouterr().err
    rows = [_row("random 4x4", "cce", "4x4", "me", "auto", False, "newton")]
    rows[0]["best_key"] = {"warm": "no", "method": "newton"}
    assert main(["policy", "--from", str(_results(tmp_path, rows=rows)), "--policy", str(table)]) == 2
    assert "best_key" in capsys.readouterr().err
    assert main(["policy", "--from", str(tmp_path / "missing.json"), "--policy", str(table)]) == 2
    assert table.read_bytes() == before


def test_default_target_is_the_table_warm_start_auto_reads():
    from hybrid_nes import pipeline

    assert auto_policy.default_policy_path().name == pipeline.POLICY_FILE
    assert auto_policy.read_policy(auto_policy.default_policy_path()) == pipeline._policy()
