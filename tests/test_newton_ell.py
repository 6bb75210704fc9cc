"""Newton's ELL (CE) kernels (solvers.newton_ell) and its Cholesky against NumPy references."""

from __future__ import annotations

import _kernels_reference as ref
import numpy as np
import pytest

from solvers import kernels as kn
from solvers.dual import dual_hessian, dual_problem, joint_from_duals
from solvers.game import normalise
from solvers.newton import cholesky_factor, cholesky_solve
from solvers.newton_ell import hessian_lower_one
from solvers.selection import Selection, resolve_selection

TOL = 1e-12


def _problem(shape, selection, seed):
    rng = np.random.default_rng(seed)
    game = normalise(rng.normal(size=(len(shape),) + shape))
    problem = dual_problem(game, "ce", resolve_selection(selection, game))
    alpha = np.abs(np.random.default_rng(100 + seed).uniform(-0.2, 0.6, problem.num_constraints))
    return problem, alpha


@pytest.mark.parametrize("shape,selection,every", [
    ((3, 4), Selection.me(), 3),
    ((8, 8), Selection.me(), 2),
    ((2, 3, 2), Selection(name="me", rho=0.5, eps_plus=3.0), 4),  # soft: curvature on player blocks
    ((4, 3), Selection(name="me", rho=0.5, eps_plus=3.0), 1),  # every row in the block
])
def test_hessian_lower_matches_reference_block(shape, selection, every):
    problem, alpha = _problem(shape, selection, 3)
    num = problem.num_constraints
    full = dual_hessian(problem, alpha)
    sigma = joint_from_duals(problem, alpha)
    rows, values, player = problem.rows, problem.values, problem.player
    mean = ref.expected_gains(rows, values[None], sigma[None], num)[0]
    ssum = np.array([alpha[player == p].sum() for p in range(len(shape))])
    curv = np.empty(len(shape))
    kn.curvature_one(ssum, problem.eps_hat, problem.eps_plus, problem.rho, curv)
    assert (curv > 0).all() == (problem.rho != np.inf)
    keep = np.arange(num) % every != every - 1 if every > 1 else np.ones(num, dtype=bool)
    pos = np.where(keep, np.cumsum(keep) - 1, -1)
    n = int(keep.sum())
    block = np.full((n, n), 7.0)  # the upper triangle must stay as it was
    scratch = (np.empty(num, dtype=np.int64), np.empty(rows.shape[1], dtype=np.int64), np.empty(num))
    hessian_lower_one(rows, values, player, sigma, mean, curv, pos, block, *scratch)
    want = full[np.ix_(keep, keep)]
    low = np.tril_indices(n)
    np.testing.assert_allclose(block[low], want[low], atol=TOL)
    assert (block[np.triu_indices(n, 1)] == 7.0).all()
    # The full-block kernel agrees with it on the lower triangle and is symmetric.
    whole = np.empty((n, n))
    kn.hessian_one(rows, values, player, sigma, mean, curv, pos, whole, *scratch)
    np.testing.assert_allclose(whole, want, atol=TOL)
    np.testing.assert_allclose(block[low], whole[low], atol=TOL)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 13, 36, 61])
def test_cholesky_matches_numpy(n):
    rng = np.random.default_rng(n)
    g = rng.normal(size=(n, 3 * n))
    mat = g @ g.T / n
    junk = np.triu(rng.normal(size=(n, n)), 1)  # the upper triangle of mat is never read
    low = np.full((n, n), np.nan)
    assert cholesky_factor(mat + junk, 1e-3, low)
    want = np.linalg.cholesky(mat + 1e-3 * np.eye(n))
    np.testing.assert_allclose(np.tril(low), want, rtol=1e-12, atol=1e-12)
    rhs = rng.normal(size=n)
    out = np.empty(n)
    assert cholesky_solve(mat + junk, 1e-3, rhs, np.empty((n, n)), out)
    np.testing.assert_allclose(out, np.linalg.solve(mat + 1e-3 * np.eye(n), rhs), rtol=1e-10, atol=1e-12)


def test_cholesky_rejects_indefinite_and_lost_pivots():
    n = 9
    rng = np.random.default_rng(1)
    g = rng.normal(size=(n, n - 3))
    singular = g @ g.T  # rank n - 3: a pivot is lost to cancellation
    out = np.empty(n)
    assert not cholesky_solve(singular, 0.0, np.ones(n), np.empty((n, n)), out)
    assert cholesky_solve(singular, 1e-6, np.ones(n), np.empty((n, n)), out)
    indefinite = singular - 0.5 * np.eye(n)
    assert not cholesky_factor(indefinite, 0.0, np.empty((n, n)))
    nan = singular + np.eye(n)
    nan[5, 2] = np.nan
    assert not cholesky_factor(nan, 0.0, np.empty((n, n)))
