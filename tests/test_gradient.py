"""Accelerated projected gradient (solvers.gradient) on the dual."""

from __future__ import annotations

import numpy as np
import pytest

from solvers.dual import certificate, dual_problem
from solvers.game import normalise
from solvers.gradient import GradientOptions, gradient_batch, lipschitz_bound
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
    from solvers.dual import dual_hessian

    p = problems[0]
    bound = lipschitz_bound(p.values, p.player, p.eps_hat, p.eps_plus, p.rho)
    for seed in range(3):
        alpha = np.random.default_rng(seed).uniform(0, 1, p.num_constraints)
        assert np.linalg.eigvalsh(dual_hessian(p, alpha)).max() <= bound + 1e-12
