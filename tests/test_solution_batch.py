"""SolutionBatch: solve_batch's stacked result behaves as the list of Solutions it replaces."""

import pickle

import numpy as np
import pytest

from solvers import Solution, SolutionBatch, Status, solve, solve_batch
from solvers.solution import stack_solutions
from solvers.solution_batch import _honest_status
from solvers.units import payoff_batch


def _games(seed, num, shape=(3, 3)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num, len(shape)) + shape) * rng.uniform(0.1, 10.0, size=(num, len(shape)) + (1,) * len(shape))


@pytest.fixture(scope="module")
def batch():
    return solve_batch(_games(0, 5), "ce")


def test_sequence_protocol(batch):
    assert isinstance(batch, SolutionBatch)
    assert len(batch) == 5
    sols = list(batch)
    assert all(isinstance(s, Solution) for s in sols)
    assert batch[0] is sols[0] and batch[-1] is sols[4]  # built once, cached
    assert batch[np.int64(2)] is sols[2]
    assert batch[1:4] == sols[1:4] and isinstance(batch[1:4], list)
    assert batch[::-2] == sols[::-2]
    assert batch == sols and sols == list(batch)
    assert batch != sols[:4]
    assert sols[3] in batch and batch.index(sols[3]) == 3
    with pytest.raises(IndexError):
        batch[5]
    with pytest.raises(IndexError):
        batch[-6]
    with pytest.raises(TypeError):
        batch["0"]
    with pytest.raises(TypeError):
        hash(batch)


def test_arrays_match_the_solutions_and_solve(batch):
    games = _games(0, 5)
    for i, sol in enumerate(batch):
        ref = solve(games[i], "ce")
        np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-9)
        np.testing.assert_array_equal(batch.joints[i], sol.joint)
        np.testing.assert_array_equal(batch.duals[i], sol.duals)
        np.testing.assert_array_equal(batch.eps[i], sol.eps)
        np.testing.assert_array_equal(batch.gaps[i], sol.gaps)
        np.testing.assert_array_equal(batch.scale[i], sol.scale)
        for p in range(2):
            np.testing.assert_allclose(batch.marginals[p][i], sol.marginals[p], atol=1e-15)
        assert batch.gap[i] == sol.gap and batch.duality_gap[i] == sol.duality_gap
        assert batch.objective[i] == sol.objective and batch.iterations[i] == sol.iterations
        assert batch.status[i] == sol.status.value and batch.method[i] == sol.method
        assert batch.normalised_gap[i] == pytest.approx(sol.normalised_gap, rel=1e-15)
    assert batch.ok.all() and batch.joints.shape == (5, 3, 3) and batch.duals.shape[0] == 5
    stacked = stack_solutions(batch)
    listed = stack_solutions(list(batch))
    assert stacked.keys() == listed.keys()
    for key in stacked:
        np.testing.assert_array_equal(stacked[key], listed[key])


def test_pickle_round_trip(batch):
    again = pickle.loads(pickle.dumps(batch))
    assert isinstance(again, SolutionBatch) and len(again) == len(batch)
    np.testing.assert_array_equal(again.joints, batch.joints)
    assert again[0].info == batch[0].info and dict(again[0].timings) == dict(batch[0].timings)
    with pytest.raises(TypeError):
        again[0].timings["total"] = 0.0  # still read-only


def test_mixed_shapes_keep_input_order():
    small, big = _games(1, 3, (2, 2)), _games(2, 2, (3, 2))
    games = [small[0], big[0], small[1], big[1], small[2]]
    out = solve_batch(games, "cce")
    assert isinstance(out, SolutionBatch) and len(out) == 5
    for g, sol in zip(games, out, strict=True):
        np.testing.assert_allclose(sol.joint, solve(g, "cce").joint, atol=1e-9)
    assert out.status.shape == (5,) and out.iterations.shape == (5,)
    assert [s.status.value for s in out] == out.status.tolist()
    with pytest.raises(ValueError, match="several shapes"):
        _ = out.joints


def test_per_game_routes_return_a_batch_too():
    games = _games(3, 2)
    out = solve_batch(games, "ce", "mg")  # Max Gini: game by game (CVXPY)
    assert isinstance(out, SolutionBatch) and len(out) == 2
    np.testing.assert_array_equal(out.joints[1], out[1].joint)
    assert out.method.tolist() == [s.method for s in out]


def test_status_honesty_matches_solution():
    out = solve_batch(_games(4, 3), "cce")
    pb = out.groups[0].payoff
    # A joint that does not sum to 1 labelled optimal: the batch and its Solution say "inaccurate".
    bad = pb.result._replace(joint=pb.result.joint * np.array([1.0, 1.0 + 1e-6, 1.0])[:, None, None])
    broken = SolutionBatch.from_result(bad, pb.scale, pb.player, "cce", out[0].selection, {"total": 0.0})
    assert broken.status.tolist() == ["optimal", "inaccurate", "optimal"]
    assert broken[1].status is Status.INACCURATE and "status_reason" in broken[1].info
    # A sum off by less than the tolerance but more than the screen's margin: the exact check.
    near = pb.result._replace(joint=pb.result.joint * np.array([1.0, 1.0 + 0.7e-10, 1.0])[:, None, None])
    assert _honest_status(payoff_batch(near, pb.scale, pb.player))[1] is Status.OPTIMAL
    # A small negative duality gap is rounding, reported as 0 by both.
    dgap = pb.result.duality_gap.copy()
    dgap[0] = -1e-14
    rounded = SolutionBatch.from_result(pb.result._replace(duality_gap=dgap), pb.scale, pb.player, "cce",
                                        out[0].selection, {})
    assert rounded.duality_gap[0] == 0.0 == rounded[0].duality_gap and rounded.status[0] == "optimal"


@pytest.mark.parametrize("factor", [1.0, 1e-200, 1e200])
def test_one_solution_equals_the_batch_converter(factor):
    """``units.one_solution`` (solve's converter, which skips np.errstate for moderate
    scales) gives the Solution ``units.solution`` builds from the stacked arrays."""
    from solvers.units import one_solution, solution

    out = solve_batch(_games(5, 2) * factor, "ce")
    pb = out.groups[0].payoff
    res = pb.result._replace(joint=pb.result.joint[:1], alpha=pb.result.alpha[:1], eps=pb.result.eps[:1],
                             gaps=pb.result.gaps[:1], violation=pb.result.violation[:1], kkt=pb.result.kkt[:1],
                             duality_gap=pb.result.duality_gap[:1], objective=pb.result.objective[:1],
                             iterations=pb.result.iterations[:1], status=pb.result.status[:1],
                             stages=pb.result.stages[:1], face=pb.result.face[:1],
                             restricted_alpha=pb.result.restricted_alpha[:1])
    one = one_solution(res, pb.scale[0], pb.player, "ce", out[0].selection, {"total": 1.0})
    ref = solution(pb, 0, "ce", out[0].selection, {"total": 1.0})
    for name in ("joint", "duals", "eps", "gaps", "scale"):
        np.testing.assert_array_equal(getattr(one, name), getattr(ref, name))
    for p in range(2):
        np.testing.assert_allclose(one.marginals[p], ref.marginals[p], rtol=1e-15)
    assert (one.gap, one.duality_gap, one.objective, one.iterations, one.status, one.method) == (
        ref.gap, ref.duality_gap, ref.objective, ref.iterations, ref.status, ref.method)
    assert dict(one.info) == dict(ref.info) and dict(one.timings) == {"total": 1.0}
