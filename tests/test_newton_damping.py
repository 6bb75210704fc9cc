"""The Levenberg damping shared by the dense and the block Newton directions."""

import numpy as np
import pytest

from solvers.newton import damped_direction
from solvers.newton_damping import DAMPING_POWER, damping_lambda, damping_scale, fill_held


def test_fill_held_writes_only_the_rows_outside_the_system():
    pos = np.array([-2, -1, 0, -1, 1])
    alpha = np.array([5.0, 0.25, 3.0, 0.0, 7.0])
    direction = np.full(5, np.nan)
    fill_held(pos, alpha, direction)
    # Inert rows stay put, rows held at the bound go straight to it; free rows untouched.
    assert direction[0] == 0.0 and direction[1] == -0.25 and direction[3] == 0.0
    assert np.isnan(direction[[2, 4]]).all()


@pytest.mark.parametrize("pgn", [0.0, 1e-9, 0.3, 4.0])
def test_damping_lambda_is_the_documented_formula(pgn):
    assert DAMPING_POWER == 2.0
    scale = damping_scale(pgn)
    assert scale == pgn * pgn
    assert damping_lambda(0.1, scale, 7.0) == 0.1 * pgn * pgn + 1e-12 * 8.0


def test_damped_direction_raises_the_multiplier_until_the_factor_succeeds():
    # H = diag(-1.5, 1): indefinite; with pgn = 1 the factor needs lam > 1.5, i.e. mult 1e1
    # from mult 1e-2 (three x10 steps), and then solves (H + lam I) d = rhs on the free rows.
    hess = np.diag([-1.5, 1.0])
    rhs = np.array([1.0, 2.0, 0.0])
    pos = np.array([0, -1, 1])
    alpha = np.array([0.0, 0.5, 0.0])
    direction = np.full(3, np.nan)
    ok, mult = damped_direction(hess, rhs, np.empty((2, 2)), np.empty(3), pos, alpha, direction, 1.0, 1.0, 1e-2,
                                1e10)
    assert ok and mult == pytest.approx(10.0)
    lam = damping_lambda(mult, 1.0, 1.0)
    np.testing.assert_allclose(direction, [1.0 / (lam - 1.5), -0.5, 2.0 / (lam + 1.0)], rtol=1e-12)
    # Past damping_max: not ok, direction untouched.
    direction[:] = np.nan
    ok, mult = damped_direction(hess, rhs, np.empty((2, 2)), np.empty(3), pos, alpha, direction, 1.0, 1.0, 1e-2,
                                1.0)
    assert not ok and mult > 1.0 and np.isnan(direction).all()
