"""The pipeline suite's accuracy study: warm starts closer to the exact duals save iterations."""

import numpy as np

from benchmarks import pipeline_suite
from hybrid_nes.model import load_pretrained


def test_accuracy_study_rows():
    rows = pipeline_suite._accuracy_needed(load_pretrained("cce"), np.random.default_rng(0), quick=True)
    starts = ["cold", "network"] + [f"exact x (1 + U(-{d:g}, {d:g}))" for d in pipeline_suite.ACCURACY_NOISE]
    assert [(r["method"], r["start"]) for r in rows] == [(m, s) for m in pipeline_suite.METHODS for s in starts]
    for method in pipeline_suite.METHODS:
        mine = {r["start"]: r for r in rows if r["method"] == method}
        assert all(r["certified"] == 1.0 for r in mine.values())
        assert mine["cold"]["cold_over_start"] == 1.0
        # Within 1e-6 of the exact duals every method needs fewer iterations than cold.
        closest = mine[starts[-1]]
        assert closest["median_iters"] < mine["cold"]["median_iters"]
        assert closest["cold_over_start"] == mine["cold"]["median_iters"] / max(closest["median_iters"], 1.0)
