"""Accelerated projected gradient (solvers.gradient) on the dual."""

from __future__ import annotations

import numpy as np
import pytest

from solvers import kernels as kn
from solvers.dual import certificate, dual_hessian, dual_problem
from solvers.game import normalise
from solvers.gradient import GradientOptions, gradient_batch, lipschitz_bound, start_step
from solvers.newton import MAX_ITER, OPTIMAL, newton_batch
from solvers.selection import Selection, resolve_selection


def _arrays(shape, concept, selection, seeds):
    problems = []
    for seed in seeds:
        game = normalise(np.random.default_rng(seed).normal(size=(len(shape),) + shape))
        problems.append(dual_problem(game, concept, resolve_selection(selection, game)))
    p0 = problems[0]
    args = (p0.rows, np.stack([p.values for p in problems]), p0.player,
            np.stack([p.base_logits for p in problems]), np.stack([p.eps_hat for p in problems]),
            np.stack([p.eps_plus for p in problems]), np.array([p.rho for p in problems]),
            np.stack([p.free for p in problems]), np.zeros((len(problems), p0.num_constraints)))
    return problems, args


@pytest.mark.parametrize(
    "shape,concept,selection",
    [((5, 5), "cce", Selection.me()), ((3, 4), "ce", Selection(name="me", rho=1.0, eps_plus=4.0)),
     ((3, 3, 2), "cce", Selection.mw(mu=2.0))],
)
def test_matches_newton(shape, concept, selection):
    problems, args = _arrays(shape, concept, selection, range(3))
    gd = gradient_batch(*args, GradientOptions(tol=1e-9))
    nt = newton_batch(*args)
    for b, problem in enumerate(problems):
        assert gd.status[b] == OPTIMAL
        cert = certificate(problem, gd.alpha[b])
        assert cert.violation.max() <= 1e-9 and abs(cert.duality_gap) <= 1e-9
        np.testing.assert_allclose(gd.joint[b], nt.joint[b], atol=1e-6)


def test_iteration_cap_is_reported():
    _, args = _arrays((6, 6), "ce", Selection.me(), [0])
    res = gradient_batch(*args, GradientOptions(max_iter=5))
    assert res.status[0] == MAX_ITER and res.iterations[0] == 5
    assert res.violation[0] > 1e-8 or res.kkt[0] > 1e-8 or abs(res.duality_gap[0]) > 1e-8


def test_warm_start_at_optimum_stops_at_once():
    _, args = _arrays((4, 4), "cce", Selection.me(), [1])
    first = newton_batch(*args, )
    again = gradient_batch(*args[:-1], first.alpha)
    assert again.status[0] == OPTIMAL and again.iterations[0] == 0


def test_lipschitz_bound_dominates_hessian():
    problems, args = _arrays((3, 4), "ce", Selection(name="me", rho=0.5, eps_plus=3.0), [2])
    p = problems[0]
    bound = lipschitz_bound(p.values, p.player, p.eps_hat, p.eps_plus, p.rho)
    for seed in range(3):
        alpha = np.random.default_rng(seed).uniform(0, 1, p.num_constraints)
        assert np.linalg.eigvalsh(dual_hessian(p, alpha)).max() <= bound + 1e-12


def _evaluated(p, alpha):
    """``(joint, mean, ssum, grad)`` of ``p`` at ``alpha`` from the Numba kernels."""
    num_joint, num_players = p.base_logits.shape[0], p.eps_hat.shape[0]
    joint, lg = np.empty(num_joint), np.empty(num_joint)
    mean, grad = np.empty(p.num_constraints), np.empty(p.num_constraints)
    ssum, eps = np.empty(num_players), np.empty(num_players)
    kn.evaluate_one(p.rows, p.values, p.player, p.base_logits, p.eps_hat, p.eps_plus, p.rho, alpha,
                    lg, joint, mean, ssum, eps, grad)
    return joint, mean, ssum, grad


@pytest.mark.parametrize("selection", [Selection.me(), Selection(name="me", rho=0.5, eps_plus=3.0)])
def test_hessian_vector_product_matches_reference(selection):
    problems, _ = _arrays((3, 4), "ce", selection, [3])
    p = problems[0]
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0, 1, p.num_constraints)
    joint, mean, ssum, _ = _evaluated(p, alpha)
    curv = np.empty(2)
    kn.curvature_one(ssum, p.eps_hat, p.eps_plus, p.rho, curv)
    vec = rng.normal(size=p.num_constraints)
    out = np.empty(p.num_constraints)
    kn.hessian_vector_one(p.rows, p.values, p.player, joint, mean, curv, vec, np.empty(2), np.empty(joint.shape[0]), out)
    np.testing.assert_allclose(out, dual_hessian(p, alpha) @ vec, rtol=1e-10, atol=1e-12)


def test_start_step_estimates_the_curvature():
    problems, _ = _arrays((6, 6), "cce", Selection.me(), [4])
    p = problems[0]
    alpha = np.random.default_rng(1).uniform(0, 0.5, p.num_constraints)
    joint, mean, ssum, grad = _evaluated(p, alpha)
    args = (p.rows, p.values, p.player, p.eps_hat, p.eps_plus, p.rho, p.free, alpha, joint, mean, ssum, grad)
    lam = np.linalg.eigvalsh(dual_hessian(p, alpha)).max()
    safe = 1.0 / lipschitz_bound(p.values, p.player, p.eps_hat, p.eps_plus, p.rho)
    assert start_step(*args, 0) == safe
    # The Rayleigh quotient grows to the top eigenvalue: the step shrinks towards 1 / lambda.
    steps = [start_step(*args, k) for k in (1, 3, 50)]
    assert steps[0] >= steps[1] >= steps[2] >= 1.0 / lam * (1 - 1e-9)
    assert steps[2] == pytest.approx(1.0 / lam, rel=1e-3)
    assert steps[1] > 3 * safe  # the global bound is far too cautious here


def test_curvature_start_step_needs_fewer_iterations():
    _, args = _arrays((8, 8), "cce", Selection.me(), range(8))
    slow = gradient_batch(*args, GradientOptions(curvature_iters=0, check_every=1))
    fast = gradient_batch(*args, GradientOptions(check_every=1))
    assert np.all(slow.status == OPTIMAL) and np.all(fast.status == OPTIMAL)
    assert np.median(fast.iterations) < 0.85 * np.median(slow.iterations)
    np.testing.assert_allclose(fast.joint, slow.joint, atol=1e-7)


@pytest.mark.parametrize("curvature_iters", [0, 3])
def test_no_stall_at_the_rounding_floor(curvature_iters):
    # 32x32 ME-CCE: near the optimum the loss moves by less than its rounding error
    # (~1e-15) while the KKT residual is still ~1e-8; backtracking on that noise used to
    # collapse the step and stall some runs at the iteration cap.
    _, args = _arrays((32, 32), "cce", Selection.me(), range(12))
    res = gradient_batch(*args, GradientOptions(max_iter=1000, curvature_iters=curvature_iters))
    assert np.all(res.status == OPTIMAL), res.iterations
    assert np.all(res.kkt <= 1e-8) and np.all(np.abs(res.duality_gap) <= 1e-8)
