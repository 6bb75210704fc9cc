"""``solvers.solve`` against the independent CVXPY reference on random games.

For every preset, concept and size: status optimal, normalised gap within tolerance
(hard constraints), the selection objective equal to the reference's (both evaluated by
the same function on the two joints), and a small non-negative reported duality gap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import solvers
from solvers import polish as P
from solvers.game import normalise
from solvers.selection import Selection, resolve_selection

#: Normalised (C)CE gap of an exact solve with hard constraints.
GAP_TOL = 1e-8
#: Agreement of the selection objective with the reference (normalised units).
OBJ_TOL = 1e-6
#: Agreement of the joints when the reference is a verified (Newton-refined) KKT point.
JOINT_TOL = 1e-6
#: The certificate may dip below zero only as far as the joint is infeasible (hard
#: constraints hold to GAP_TOL, so the primal value can exceed the optimum slightly).
DUALITY_GAP_FLOOR = -1e-8
DUALITY_GAP_CEIL = 1e-6

PRESETS = ("me", "mre", "mw", "mwme", "ms", "mg")


def make_selection(preset: str, shape: tuple[int, ...], rng: np.random.Generator) -> Selection:
    if preset == "mre":
        return Selection.mre(rng.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape))
    if preset == "mwme":
        return Selection.mwme(rng.normal(size=shape))
    return getattr(Selection, preset)()


CASES = (
    [((4, 4), c, p, s) for c in ("cce", "ce") for p in PRESETS for s in (0, 1)]
    + [((8, 8), c, p, s) for c in ("cce", "ce") for p in PRESETS for s in (0, 1)]
    + [((16, 16), c, p, 0) for c in ("cce", "ce") for p in PRESETS]
    + [((4, 4, 4), c, p, 0) for c in ("cce", "ce") for p in PRESETS]
    + [((32, 32), "cce", p, 0) for p in ("me", "mw")]
)


def case_id(case) -> str:
    shape, concept, preset, seed = case
    return f"{'x'.join(map(str, shape))}-{concept}-{preset}-{seed}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_solve_matches_reference(case):
    shape, concept, preset, seed = case
    rng = np.random.default_rng([seed, len(shape), shape[0], PRESETS.index(preset)])
    game = rng.normal(size=(len(shape),) + shape)
    selection = make_selection(preset, shape, rng)
    ng = normalise(game)
    params = resolve_selection(selection, ng)

    sol = solvers.solve(game, concept, selection)
    assert sol.status is solvers.Status.OPTIMAL, sol
    assert sol.joint.shape == shape
    assert np.all(sol.joint >= 0) and sol.joint.sum() == pytest.approx(1.0, abs=1e-12)
    assert math.isfinite(sol.duality_gap)
    assert DUALITY_GAP_FLOOR <= sol.duality_gap <= DUALITY_GAP_CEIL, sol.duality_gap

    if preset == "mg":
        ref = P.max_gini(ng.payoffs, concept, params.eps_hat)
        assert ref.status == "optimal"
        assert sol.normalised_gap <= GAP_TOL
        assert float(np.sum(sol.joint**2)) == pytest.approx(ref.objective, abs=OBJ_TOL)
        return

    ref = P.reference_solve(ng.payoffs, concept, params)
    assert ref.status.startswith("optimal"), ref.status
    if math.isinf(params.rho):
        assert sol.normalised_gap <= GAP_TOL
        eps = params.eps_hat
    else:
        eps = np.asarray(sol.eps) * sol.scale  # back to normalised units
        assert np.all(sol.gaps * sol.scale <= eps + GAP_TOL)
    value = P.entropy_objective(sol.joint, eps, params.base_logits, params.eps_hat, params.eps_plus, params.rho)
    ref_value = P.entropy_objective(ref.joint, ref.eps, params.base_logits, params.eps_hat, params.eps_plus, params.rho)
    assert value == pytest.approx(ref_value, abs=OBJ_TOL)
    assert sol.objective == pytest.approx(value, abs=OBJ_TOL)
    if ref.solver.endswith("+newton"):  # a verified KKT point: compare the joints too
        np.testing.assert_allclose(sol.joint, ref.joint, atol=JOINT_TOL)
