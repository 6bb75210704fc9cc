"""Projected Newton (solvers.newton) on the dual."""

from __future__ import annotations

import numpy as np
import pytest

from solvers.dual import certificate, dual_gradient, dual_problem, kkt_residual
from solvers.game import normalise
from solvers.newton import DIVERGED, MAX_ITER, OPTIMAL, NewtonOptions, cholesky_solve, newton_batch
from solvers.selection import Selection, resolve_selection


def _problems(shape, concept, selection, seeds):
    out = []
    for seed in seeds:
        game = normalise(np.random.default_rng(seed).normal(size=(len(shape),) + shape))
        out.append(dual_problem(game, concept, resolve_selection(selection, game)))
    return out


def _run(problems, alpha0=None, **options):
    p0 = problems[0]
    alpha0 = np.zeros((len(problems), p0.num_constraints)) if alpha0 is None else alpha0
    return newton_batch(
        p0.rows, np.stack([p.values for p in problems]), p0.player,
        np.stack([p.base_logits for p in problems]), np.stack([p.eps_hat for p in problems]),
        np.stack([p.eps_plus for p in problems]), np.array([p.rho for p in problems]),
        np.stack([p.free for p in problems]), alpha0, NewtonOptions(**options),
    )


SOFT = Selection(name="me", rho=0.5, eps_hat=0.05, eps_plus=4.0)


@pytest.mark.parametrize(
    "shape,concept,selection",
    [((5, 5), "cce", Selection.me()), ((4, 4), "ce", Selection.me()), ((3, 2, 3), "ce", SOFT),
     ((6, 4), "cce", Selection.mw()), ((4, 4), "ce", Selection.ms())],
)
def test_converges_to_kkt_point(shape, concept, selection):
    problems = _problems(shape, concept, selection, range(4))
    # CEs on a face of the simplex converge only linearly without facial reduction.
    res = _run(problems, tol=1e-10, max_iter=1000)
    for b, problem in enumerate(problems):
        assert res.status[b] == OPTIMAL
        alpha = res.alpha[b]
        assert np.all(alpha >= 0)
        grad = dual_gradient(problem, alpha)
        assert kkt_residual(problem, alpha, grad) <= 1e-10
        cert = certificate(problem, alpha)
        assert abs(cert.duality_gap) <= 1e-10
        assert cert.violation.max() <= 1e-10
        np.testing.assert_allclose(res.joint[b], cert.joint, atol=1e-14)
        assert res.loss[b] == pytest.approx(cert.dual, abs=1e-12)


def test_cce_needs_few_iterations():
    res = _run(_problems((8, 8), "cce", Selection.me(), range(8)))
    assert np.all(res.status == OPTIMAL)
    assert np.median(res.iterations) <= 8


def test_iteration_cap_is_reported():
    res = _run(_problems((4, 4), "ce", Selection.me(), [0]), max_iter=1)
    assert res.status[0] == MAX_ITER and res.iterations[0] == 1


def test_warm_start_at_optimum_takes_no_iteration():
    problems = _problems((5, 4), "cce", Selection.me(), [3])
    first = _run(problems)
    again = _run(problems, alpha0=first.alpha)
    assert again.status[0] == OPTIMAL and again.iterations[0] == 0
    np.testing.assert_array_equal(again.joint, first.joint)


def test_negative_start_is_projected():
    problems = _problems((3, 3), "cce", Selection.me(), [4])
    res = _run(problems, alpha0=-np.ones((1, problems[0].num_constraints)))
    assert res.status[0] == OPTIMAL and np.all(res.alpha >= 0)


def test_constant_player_gives_singular_hessian():
    game = np.random.default_rng(5).normal(size=(2, 4, 4))
    game[1] = 3.0  # every gain of player 1 is 0: zero rows and columns in the Hessian
    norm = normalise(game)
    problem = dual_problem(norm, "ce", resolve_selection(Selection.me(), norm))
    res = _run([problem])
    assert res.status[0] == OPTIMAL
    cert = certificate(problem, res.alpha[0])
    assert cert.violation.max() <= 1e-8


def test_unbounded_dual_is_not_reported_optimal():
    # eps_hat below every achievable gain: the primal is empty, the dual unbounded below.
    problem = _problems((3, 3), "cce", Selection.me(eps_hat=-3.0), [6])[0]
    res = _run([problem], max_iter=500)
    assert res.status[0] in (DIVERGED, MAX_ITER)
    assert res.violation[0] > 1e-3


def test_parallel_matches_serial():
    problems = _problems((4, 5), "ce", Selection.me(), range(5))
    p0 = problems[0]
    args = (p0.rows, np.stack([p.values for p in problems]), p0.player, np.stack([p.base_logits for p in problems]),
            np.stack([p.eps_hat for p in problems]), np.stack([p.eps_plus for p in problems]),
            np.array([p.rho for p in problems]), np.stack([p.free for p in problems]),
            np.zeros((5, p0.num_constraints)))
    par = newton_batch(*args, parallel=True)
    ser = newton_batch(*args, parallel=False)
    np.testing.assert_array_equal(par.alpha, ser.alpha)
    np.testing.assert_array_equal(par.iterations, ser.iterations)


def test_cholesky_solve():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(6, 6))
    mat = a @ a.T
    rhs = rng.normal(size=6)
    out = np.empty(6)
    assert cholesky_solve(mat, 0.1, rhs, np.empty((6, 6)), out)
    np.testing.assert_allclose((mat + 0.1 * np.eye(6)) @ out, rhs, atol=1e-10)
    assert not cholesky_solve(-mat, 0.0, rhs, np.empty((6, 6)), out)


@pytest.mark.parametrize("concept,max_block", [("cce", 0), ("ce", 0), ("ce", 7)])
def test_workspace_reuse_does_not_leak_between_games(concept, max_block):
    # Games share one workspace per chunk (and the parallel driver splits the batch into
    # chunks): each game must come out as if solved alone.
    problems = _problems((3, 4), concept, Selection.me(), range(9))
    p0 = problems[0]

    def stack(ps):
        return (p0.rows, np.stack([p.values for p in ps]), p0.player, np.stack([p.base_logits for p in ps]),
                np.stack([p.eps_hat for p in ps]), np.stack([p.eps_plus for p in ps]),
                np.array([p.rho for p in ps]), np.stack([p.free for p in ps]), np.zeros((len(ps), p0.num_constraints)))

    options = NewtonOptions(max_block=max_block)
    ser = newton_batch(*stack(problems), options, parallel=False)
    par = newton_batch(*stack(problems), options, parallel=True)
    for b, problem in enumerate(problems):
        alone = newton_batch(*stack([problem]), options, parallel=False)
        for res in (ser, par):
            np.testing.assert_array_equal(res.alpha[b], alone.alpha[0])
            np.testing.assert_array_equal(res.joint[b], alone.joint[0])
            assert res.iterations[b] == alone.iterations[0] and res.status[b] == alone.status[0]
