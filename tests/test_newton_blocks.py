"""The block Newton direction of two-player CE (solvers.newton_blocks) against the dense one."""

from __future__ import annotations

import _kernels_reference as ref
import numpy as np
import pytest

from solvers import newton_blocks as nb
from solvers.dual import dual_hessian, dual_problem, joint_from_duals
from solvers.gains import gain_layout
from solvers.game import normalise
from solvers.newton import damped_direction
from solvers.selection import Selection, resolve_selection


def _problem(shape, seed, concept="ce"):
    rng = np.random.default_rng(seed)
    game = normalise(rng.normal(size=(len(shape),) + shape))
    problem = dual_problem(game, concept, resolve_selection(Selection.me(), game))
    alpha = np.abs(np.random.default_rng(100 + seed).uniform(-0.2, 0.6, problem.num_constraints))
    return problem, alpha


@pytest.mark.parametrize("shape,ok", [((8, 8), True), ((3, 5), True), ((2, 2), True), ((5, 1), True),
                                      ((2, 3, 2), False)])
def test_layout_recognises_two_player_ce(shape, ok):
    lay = gain_layout(shape, "ce")
    found, sizes, own, slot, order, starts = nb.ce2_layout(lay.rows, lay.player)
    assert found == ok
    if not ok:
        return
    assert tuple(sizes) == shape
    assert sorted(order) == list(range(lay.player.shape[0]))
    # Every row of a group touches only joints with its player's action = the group's.
    for g in range(shape[0] + shape[1]):
        p, a = (0, g) if g < shape[0] else (1, g - shape[0])
        for k in order[starts[g]:starts[g + 1]]:
            joints = np.nonzero((lay.rows == k).any(axis=1))[0]
            acts = joints // shape[1] if p == 0 else joints % shape[1]
            assert lay.player[k] == p and (acts == a).all() and len(joints) == shape[1 - p]
            assert (lay.rows[joints, slot[k]] == k).all()


def test_layout_rejects_cce_and_broken_rows():
    lay = gain_layout((4, 4), "cce")
    assert not nb.ce2_layout(lay.rows, lay.player)[0]
    lay = gain_layout((4, 4), "ce")
    rows = lay.rows.copy()
    rows[5, 0], rows[5, 1] = rows[5, 1], rows[5, 0]  # a row in two slots
    assert not nb.ce2_layout(rows, lay.player)[0]


@pytest.mark.parametrize("n,j0", [(1, 0), (5, 2), (13, 7), (36, 17), (37, 20)])
def test_factor_from_continues_a_partial_factor(n, j0):
    rng = np.random.default_rng(n)
    g = rng.normal(size=(n, 2 * n))
    mat = g @ g.T / n
    want = np.linalg.cholesky(mat + 1e-3 * np.eye(n))
    low = np.full((n, n), np.nan)
    low[:, :j0] = want[:, :j0]
    assert nb.cholesky_factor_from(mat, 1e-3, low, j0)
    np.testing.assert_allclose(np.tril(low), want, rtol=1e-12, atol=1e-12)
    assert not nb.cholesky_factor_from(mat - 10 * np.eye(n), 0.0, np.empty((n, n)), 0)


def _state(shape, seed, every):
    problem, alpha = _problem(shape, seed)
    num = problem.num_constraints
    sigma = joint_from_duals(problem, alpha)
    mean = ref.expected_gains(problem.rows, problem.values[None], sigma[None], num)[0]
    grad = mean - problem.eps_hat[problem.player]
    keep = np.arange(num) % every != 0 if every > 1 else np.ones(num, dtype=bool)
    pos = np.where(keep, np.cumsum(keep) - 1, -1)
    pos[~keep & (np.arange(num) % 3 == 0)] = -2
    return problem, alpha, sigma, mean, grad, pos, keep


@pytest.mark.parametrize("shape,seed,every", [((8, 8), 0, 1), ((8, 8), 1, 3), ((3, 5), 2, 2), ((6, 4), 3, 4),
                                              ((5, 1), 4, 2)])
def test_block_direction_matches_dense(shape, seed, every):
    problem, alpha, sigma, mean, grad, pos, keep = _state(shape, seed, every)
    num = problem.num_constraints
    n = int(keep.sum())
    hess = dual_hessian(problem, alpha)[np.ix_(keep, keep)]
    rhs = np.zeros(num)
    rhs[:n] = -grad[keep]
    pgn, mult = 0.3, 0.1
    want = np.zeros(num)
    ok, want_mult = damped_direction(hess, rhs, np.empty((n, n)), np.empty(num), pos, alpha, want, pgn,
                                     hess.diagonal().max(initial=0.0), mult, 1e10)
    assert ok
    layout = nb.ce2_layout(problem.rows, problem.player)
    assert layout[0]
    got = np.full(num, np.nan)
    code, got_mult = nb.ce2_direction(problem.values, problem.player, sigma, mean, grad, alpha, pos, layout,
                                      nb.ce2_scratch(num, layout[1]), np.empty(num * num), np.empty(num * num), pgn,
                                      mult, 1e10, got)
    assert code == 1 and got_mult == want_mult
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_block_direction_damps_and_falls_back():
    problem, alpha, sigma, mean, grad, pos, keep = _state((4, 4), 5, 1)
    num = problem.num_constraints
    layout = nb.ce2_layout(problem.rows, problem.player)
    args = (problem.values, problem.player, sigma, mean, grad, alpha, pos, layout, nb.ce2_scratch(num, layout[1]),
            np.empty(num * num), np.empty(num * num))
    out = np.full(num, np.nan)
    # A NaN probability breaks every factorisation: no damping helps (stalled).
    bad = sigma.copy()
    bad[3] = np.nan
    code, mult = nb.ce2_direction(*args[:2], bad, *args[3:], 0.3, 0.1, 1e3, out)
    assert code == 0 and mult > 1e3 and np.isnan(out).all()
    # Means far from sigma's (G - m m^T indefinite): the border pivot 1 - m^T (G + lam)^-1 m
    # is not positive, and the caller must take the dense Hessian (mult as given,
    # direction untouched).
    code, mult = nb.ce2_direction(*args[:3], mean + 1e6, *args[4:], 1e-6, 1e-10, 1e10, out)
    assert code == -1 and mult == 1e-10 and np.isnan(out).all()
