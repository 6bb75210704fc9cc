"""The accelerator suite (run by hand on GPU hosts, not by `tox -e bench`) still runs."""

import json

from benchmarks import accelerator_suite


def test_accelerator_suite_times_cold_and_warm_end_to_end(tmp_path):
    rows = accelerator_suite.main(games=3, out_dir=tmp_path, cells=(("cce", (4, 4)), ("ce", (3, 3))), rounds=1)
    assert [(r["concept"], r["shape"]) for r in rows] == [("cce", "4x4"), ("ce", "3x3")]
    for row in rows:
        assert row["games"] == 3
        assert row["cold_certified"] == row["warm_certified"] == row["cold_auto_certified"] == 1.0
        assert row["cold_ms_per_game"] > 0 and row["warm_ms_per_game"] > 0 and row["cold_auto_ms_per_game"] > 0
        best_cold = min(row["cold_ms_per_game"], row["cold_auto_ms_per_game"])
        assert row["speedup_vs_best_cold"] == best_cold / row["warm_ms_per_game"]
        assert 0.0 < row["warm_inference_share"] < 1.0
        assert row["speedup"] == row["cold_ms_per_game"] / row["warm_ms_per_game"]
    written = json.loads((tmp_path / "accelerator_suite.json").read_text())
    assert written["rows"] == rows
