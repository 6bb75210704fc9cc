"""``solvers.solve`` on classic games with known (closed-form) equilibria.

Closed forms are derived in the docstrings; where none is at hand the answer is
compared with the independent CVXPY reference (``solvers.polish.reference_solve``).
"""

from __future__ import annotations

import numpy as np
import pytest

import solvers
from solvers import polish as P
from solvers.game import marginals, normalise
from solvers.lp import zero_sum_nash
from solvers.selection import Selection, resolve_selection

#: The solver's joints are exact to its tolerance (1e-8 on the gap); joints agree to this.
JOINT_TOL = 1e-7
#: The reference (interior point, then a verified Newton refinement) is exact to rounding.
REF_JOINT_TOL = JOINT_TOL

PRISONERS = np.stack([np.array([[-1.0, -3.0], [0.0, -2.0]]), np.array([[-1.0, 0.0], [-3.0, -2.0]])])
PENNIES = np.array([[1.0, -1.0], [-1.0, 1.0]])
RPS = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
SHAPLEY = np.stack([
    np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
    np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
])
#: Actions (Chicken, Dare): (C,C) = 6,6; (C,D) = 2,7; (D,C) = 7,2; (D,D) = 0,0.
CHICKEN = np.stack([np.array([[6.0, 2.0], [7.0, 0.0]]), np.array([[6.0, 7.0], [2.0, 0.0]])])


def zero_sum(matrix: np.ndarray) -> np.ndarray:
    return np.stack([matrix, -matrix])


def check_solution(sol: solvers.Solution, tol: float = 1e-8) -> None:
    assert sol.status is solvers.Status.OPTIMAL, sol
    assert sol.normalised_gap <= tol
    assert np.all(sol.joint >= 0)
    assert sol.joint.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("selection", ["me", "mw", "mg"])
def test_prisoners_dilemma_unique_defect_defect(concept, selection):
    """Defect strictly dominates: (D, D) is the only CE and the only CCE."""
    sol = solvers.solve(PRISONERS, concept, selection)
    check_solution(sol)
    np.testing.assert_allclose(sol.joint, [[0.0, 0.0], [0.0, 1.0]], atol=JOINT_TOL)


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("selection", ["me", "mw", "mg"])
def test_matching_pennies_unique_uniform(concept, selection):
    """Zero-sum: CCE marginals are the NE (uniform), and value 0 forces
    sigma = [[1/4 + d, 1/4 - d], [1/4 - d, 1/4 + d]] with 4d = 0: the CCE is unique."""
    sol = solvers.solve(zero_sum(PENNIES), concept, selection)
    check_solution(sol)
    np.testing.assert_allclose(sol.joint, np.full((2, 2), 0.25), atol=JOINT_TOL)


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("selection", ["me", "mg"])
@pytest.mark.parametrize(
    "game", [zero_sum(RPS), SHAPLEY], ids=["rock-paper-scissors", "shapley"]
)
def test_uniform_nash_gives_uniform_me_and_mg(game, concept, selection):
    """In RPS and Shapley's game every action earns 1/3 (or 0) against a uniform
    opponent, so the uniform product is an NE, hence a CE and a CCE; it maximises
    entropy and minimises ||sigma||_2 over the whole simplex, so ME and MG select it."""
    sol = solvers.solve(game, concept, selection)
    check_solution(sol)
    np.testing.assert_allclose(sol.joint, np.full((3, 3), 1 / 9), atol=JOINT_TOL)


def test_chicken_me_ce_closed_form():
    """ME CE of chicken. With sigma = [[a, b], [c, d]] the CE constraints are
    a <= 2b, a <= 2c (told C) and d <= b/2, d <= c/2 (told D). Uniform violates d <= b/2;
    the problem is symmetric under transposition so b = c, and with d = b/2 active the
    entropy on a + 2.5 b = 1 is stationary where 2.5 ln a = 2.5 ln b - 0.5 ln 2:
    a = 2^(-1/5) b, b = 1 / (2.5 + 2^(-1/5)), d = b/2 (and a <= 2b holds)."""
    b = 1.0 / (2.5 + 2.0**-0.2)
    expected = np.array([[2.0**-0.2 * b, b], [b, b / 2]])
    sol = solvers.solve(CHICKEN, "ce", "me")
    check_solution(sol)
    np.testing.assert_allclose(sol.joint, expected, atol=JOINT_TOL)


def test_chicken_me_cce_matches_reference():
    ng = normalise(CHICKEN)
    params = resolve_selection(Selection.me(), ng)
    ref = P.reference_solve(ng.payoffs, "cce", params)
    sol = solvers.solve(CHICKEN, "cce", "me")
    check_solution(sol)
    np.testing.assert_allclose(sol.joint, ref.joint, atol=REF_JOINT_TOL)
    value = P.entropy_objective(sol.joint, params.eps_hat, params.base_logits, params.eps_hat, params.eps_plus, params.rho)
    assert value == pytest.approx(ref.objective, abs=1e-8)


def test_chicken_max_gini_ce_closed_form():
    """Max Gini CE of chicken: with d = b/2 (and d = c/2) active and b = c by symmetry,
    minimise a^2 + 2 b^2 + b^2/4 on a + 2.5 b = 1: 2a = lambda, 4.5 b = 2.5 lambda, so
    b = 10a/9 and sigma = [[9, 10], [10, 5]] / 34 (KKT multipliers 4/34 >= 0)."""
    sol = solvers.solve(CHICKEN, "ce", "mg")
    check_solution(sol)
    np.testing.assert_allclose(sol.joint, np.array([[9.0, 10.0], [10.0, 5.0]]) / 34, atol=JOINT_TOL)


@pytest.mark.parametrize("seed", range(3))
def test_zero_sum_cce_marginals_are_nash(seed):
    """For two-player zero-sum games the marginals of any CCE form an NE (DESIGN §2):
    checked against the LP value of ``solvers.lp.zero_sum_nash``."""
    matrix = np.random.default_rng(seed).normal(size=(4, 5))
    sol = solvers.solve(zero_sum(matrix), "cce", "me")
    check_solution(sol)
    row, col = marginals(sol.joint)
    value = zero_sum_nash(matrix).value
    assert np.min(row @ matrix) == pytest.approx(value, abs=1e-7)
    assert np.max(matrix @ col) == pytest.approx(value, abs=1e-7)
