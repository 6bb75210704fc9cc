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


def test_cvxpy_mre_baseline_solves_the_same_problem():
    import solvers
    from benchmarks.solvers_suite import _cvxpy_solve
    from solvers.selection import Selection, resolve_selection

    rng = np.random.default_rng(1)
    game = rng.normal(size=(2, 4, 4))
    target = rng.dirichlet(np.ones(16)).reshape(4, 4)
    sel = Selection.mre(target)
    norm = solvers.normalise(game)
    base = resolve_selection(sel, norm).base_logits
    ref = _cvxpy_solve(norm.payoffs, "cce", "CLARABEL", base)
    ours = solvers.solve(game, "cce", sel)
    assert ours.ok and ref["gap"] <= 1e-7
    np.testing.assert_allclose(ref["joint"], ours.joint.ravel(), atol=1e-5)
    # The target matters: the ME answer is a different joint.
    me = _cvxpy_solve(norm.payoffs, "cce", "CLARABEL")
    assert np.abs(me["joint"] - ref["joint"]).max() > 1e-3
