"""Tests for solvers.lp: max-welfare (C)CE, zero-sum Nash, the minimal face.

Checked against closed-form equilibria, the defining inequalities, and an independent
CVXPY model of the same LP.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from solvers.gains import dense_gains, gains
from solvers.lp import constraint_matrix, max_welfare, minimal_face, zero_sum_nash

MATCHING_PENNIES = np.array([[1.0, -1.0], [-1.0, 1.0]])
RPS = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
CHICKEN = np.stack([np.array([[6.0, 2.0], [7.0, 0.0]]), np.array([[6.0, 7.0], [2.0, 0.0]])])
PRISONERS = np.stack([np.array([[-1.0, -3.0], [0.0, -2.0]]), np.array([[-1.0, 0.0], [-3.0, -2.0]])])


def random_game(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(shape),) + shape)


def expected_gains(game: np.ndarray, joint: np.ndarray, concept: str) -> np.ndarray:
    """``[K]`` via ``solvers.gains`` (a construction independent of ``solvers.lp``)."""
    return dense_gains(gains(game, concept)) @ joint.ravel()


# --- zero-sum Nash -------------------------------------------------------------------


@pytest.mark.parametrize("matrix", [MATCHING_PENNIES, RPS], ids=["pennies", "rps"])
def test_zero_sum_classics_are_uniform_with_value_zero(matrix):
    n = matrix.shape[0]
    for game in (matrix, np.stack([matrix, -matrix]), (matrix, -matrix)):
        row, col, value = zero_sum_nash(game)
        np.testing.assert_allclose(row, np.full(n, 1 / n), atol=1e-9)
        np.testing.assert_allclose(col, np.full(n, 1 / n), atol=1e-9)
        assert value == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_zero_sum_random_satisfies_saddle_point(seed):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rng.integers(2, 7), rng.integers(2, 7)))
    res = zero_sum_nash(matrix)
    # The row strategy guarantees the value against every column, and vice versa.
    assert np.all(res.row @ matrix >= res.value - 1e-8)
    assert np.all(matrix @ res.col <= res.value + 1e-8)
    assert res.row @ matrix @ res.col == pytest.approx(res.value, abs=1e-8)
    assert res.row.sum() == pytest.approx(1.0) and np.all(res.row >= 0)


def test_zero_sum_constant_sum_and_value_of_dominance():
    """A constant-sum game with a saddle point: value is the saddle entry."""
    a = np.array([[3.0, 5.0], [1.0, 4.0]])  # row 0 dominates; column 0 is the best reply
    res = zero_sum_nash(np.stack([a, 10.0 - a]))
    np.testing.assert_allclose(res.row, [1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(res.col, [1.0, 0.0], atol=1e-9)
    assert res.value == pytest.approx(3.0)


def test_zero_sum_rejects_general_sum_and_three_players():
    with pytest.raises(ValueError, match="not zero-sum"):
        zero_sum_nash(CHICKEN)
    with pytest.raises(ValueError, match="two players"):
        zero_sum_nash(random_game(0, (2, 2, 2)))


# --- max welfare ---------------------------------------------------------------------


def test_max_welfare_coordination_is_the_good_pure_outcome():
    coord = np.stack([np.array([[2.0, 0.0], [0.0, 1.0]])] * 2)
    for concept in ("cce", "ce"):
        res = max_welfare(coord, concept)
        assert res.status == "optimal"
        np.testing.assert_allclose(res.joint, [[1.0, 0.0], [0.0, 0.0]], atol=1e-9)
        assert res.welfare == pytest.approx(4.0)
        assert res.gap <= 1e-9


def test_max_welfare_chicken_ce_closed_form():
    """CE constraints a <= 2b, a <= 2c, d <= b/2, d <= c/2; welfare 12a + 9b + 9c:
    d = 0 and a = 2b = 2c maximise it: sigma = [[1/2, 1/4], [1/4, 0]], welfare 10.5."""
    res = max_welfare(CHICKEN, "ce")
    np.testing.assert_allclose(res.joint, [[0.5, 0.25], [0.25, 0.0]], atol=1e-9)
    assert res.welfare == pytest.approx(10.5)
    # Every CE is a CCE: the CCE optimum can only be better.
    assert max_welfare(CHICKEN, "cce").welfare >= res.welfare - 1e-9


def test_max_welfare_prisoners_dilemma_is_defect_defect():
    for concept in ("cce", "ce"):
        res = max_welfare(PRISONERS, concept)
        np.testing.assert_allclose(res.joint, [[0.0, 0.0], [0.0, 1.0]], atol=1e-9)
        assert res.welfare == pytest.approx(-4.0)


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("shape", [(4, 4), (3, 3, 3)])
@pytest.mark.parametrize("eps_hat", [0.0, 0.1])
def test_max_welfare_matches_cvxpy_and_is_feasible(concept, shape, eps_hat):
    game = random_game(1, shape)
    res = max_welfare(game, concept, eps_hat=eps_hat)
    assert res.status == "optimal"
    gains_k = expected_gains(game, res.joint, concept)
    assert gains_k.max() <= eps_hat + 1e-9
    assert res.gap == pytest.approx(gains_k.max(), abs=1e-12)
    welfare = game.reshape(game.shape[0], -1).sum(axis=0)
    assert res.welfare == pytest.approx(welfare @ res.joint.ravel())
    # Independent LP model: same optimal value.
    x = cp.Variable(welfare.size, nonneg=True)
    dense = dense_gains(gains(game, concept))
    prob = cp.Problem(cp.Maximize(welfare @ x), [cp.sum(x) == 1, dense @ x <= eps_hat])
    prob.solve(solver="CLARABEL")
    assert res.welfare == pytest.approx(prob.value, abs=1e-7)


def test_max_welfare_per_player_eps_and_infeasible():
    game = random_game(2, (3, 3))
    res = max_welfare(game, "cce", eps_hat=np.array([0.0, 0.5]))
    assert res.gaps[0] <= 1e-9 and res.gaps[1] <= 0.5 + 1e-9
    assert max_welfare(game, "cce", eps_hat=-100.0).status == "infeasible"
    with pytest.raises(ValueError, match="eps_hat"):
        max_welfare(game, "cce", eps_hat=np.zeros(3))
    with pytest.raises(ValueError, match="concept"):
        max_welfare(game, "nash")


def test_max_welfare_scale_invariant_feasibility():
    """Scaling one player's payoffs scales its gaps: the LP stays feasible and optimal."""
    game = random_game(3, (4, 4))
    scaled = game.copy()
    scaled[1] *= 1e4
    res = max_welfare(scaled, "ce")
    assert res.status == "optimal"
    assert expected_gains(scaled, res.joint, "ce").max() <= 1e-9 * 1e4


# --- minimal face --------------------------------------------------------------------


def test_minimal_face_prisoners_dilemma():
    matrix, _ = constraint_matrix(PRISONERS, "ce")
    face = minimal_face(matrix, np.zeros(matrix.shape[0]))
    assert face.feasible
    np.testing.assert_array_equal(face.support, [False, False, False, True])
    # Rows (deviate to D when told C) vanish at (D, D): tight on the whole polytope.
    # Rows (deviate to C when told D) are strictly negative there: -1 for both players.
    np.testing.assert_array_equal(face.equalities, [False, True, False, True])


def test_minimal_face_full_dimensional_and_infeasible():
    matrix, _ = constraint_matrix(CHICKEN, "ce")
    face = minimal_face(matrix, np.zeros(matrix.shape[0]))
    assert face.support.all() and not face.equalities.any()
    assert not minimal_face(matrix, np.full(matrix.shape[0], -10.0)).feasible


@pytest.mark.parametrize("seed", range(3))
def test_minimal_face_is_attained_by_a_feasible_point(seed):
    """Certificate: some feasible joint has full support on the face and strict slack off E."""
    game = random_game(20 + seed, (5, 5))
    matrix, _ = constraint_matrix(game, "ce")
    face = minimal_face(matrix, np.zeros(matrix.shape[0]))
    # Maximise the smallest support mass and off-E slack with a CVXPY LP.
    x = cp.Variable(matrix.shape[1], nonneg=True)
    t = cp.Variable()
    dense = matrix.toarray()
    cons = [cp.sum(x) == 1, dense @ x <= 0, x[~face.support] == 0, x[face.support] >= t]
    if (~face.equalities).any():
        cons.append(dense[~face.equalities] @ x <= -t)
    cp.Problem(cp.Maximize(t), cons).solve(solver="CLARABEL")
    assert t.value > 1e-6
