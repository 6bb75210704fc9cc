"""The NumPy reference dual (solvers.dual): derivatives, certificate, gains."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from solvers.dual import (
    certificate,
    constraint_values,
    dual_gradient,
    dual_hessian,
    dual_loss,
    dual_problem,
    duals_eps,
    joint_from_duals,
    kkt_residual,
    primal_objective,
    restrict,
)
from solvers.gains import duals_by_player
from solvers.game import normalise
from solvers.selection import Selection, resolve_selection

SHAPES = [(3, 4), (2, 3, 2)]


def _problem(shape, concept, selection, seed):
    rng = np.random.default_rng(seed)
    game = normalise(rng.normal(size=(len(shape),) + shape))
    return dual_problem(game, concept, resolve_selection(selection, game)), game


def _soft():
    return Selection(name="me", rho=0.7, eps_hat=0.1, eps_plus=3.0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("soft", [False, True])
def test_gradient_matches_finite_differences(shape, concept, soft):
    problem, _ = _problem(shape, concept, _soft() if soft else Selection.me(eps_hat=0.05), 1)
    rng = np.random.default_rng(2)
    alpha = rng.uniform(0.0, 0.5, problem.num_constraints)
    grad = dual_gradient(problem, alpha)
    step = 1e-6
    numeric = np.array([
        (dual_loss(problem, alpha + step * e) - dual_loss(problem, alpha - step * e)) / (2 * step)
        for e in np.eye(problem.num_constraints)
    ])
    np.testing.assert_allclose(grad, numeric, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("soft", [False, True])
def test_hessian_matches_finite_differences(shape, concept, soft):
    problem, _ = _problem(shape, concept, _soft() if soft else Selection.me(), 3)
    rng = np.random.default_rng(4)
    alpha = rng.uniform(0.0, 0.5, problem.num_constraints)
    hess = dual_hessian(problem, alpha)
    step = 1e-6
    numeric = np.stack([
        (dual_gradient(problem, alpha + step * e) - dual_gradient(problem, alpha - step * e)) / (2 * step)
        for e in np.eye(problem.num_constraints)
    ])
    np.testing.assert_allclose(hess, numeric, atol=1e-7, rtol=1e-6)
    np.testing.assert_allclose(hess, hess.T, atol=1e-14)
    assert np.linalg.eigvalsh(hess).min() > -1e-10  # convex


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_certificate_nonnegative_at_feasible_points(concept):
    # Soft constraints: the certificate's eps' makes sigma(alpha) feasible for any alpha.
    for seed in range(5):
        problem, _ = _problem((3, 3), concept, _soft(), seed)
        alpha = np.random.default_rng(seed).exponential(0.5, problem.num_constraints)
        cert = certificate(problem, alpha)
        assert np.all(cert.violation == 0)
        assert cert.duality_gap >= -1e-12
        assert np.all(cert.eps >= duals_eps(problem, alpha) - 1e-15)


def test_duality_gap_is_complementarity_when_hard():
    # L(alpha) - P(sigma(alpha), eps_hat) = alpha . g(alpha): the closed form the kernels use.
    problem, _ = _problem((3, 4), "ce", Selection.me(eps_hat=0.2), 7)
    alpha = np.random.default_rng(8).uniform(0, 1, problem.num_constraints)
    sigma = joint_from_duals(problem, alpha)
    gap = dual_loss(problem, alpha) - primal_objective(problem, sigma, problem.eps_hat)
    assert gap == pytest.approx(alpha @ dual_gradient(problem, alpha), abs=1e-10)


def test_duality_gap_identity_when_soft():
    problem, _ = _problem((3, 4), "cce", _soft(), 9)
    alpha = np.random.default_rng(10).uniform(0, 1, problem.num_constraints)
    sigma = joint_from_duals(problem, alpha)
    eps = duals_eps(problem, alpha)
    gap = dual_loss(problem, alpha) - primal_objective(problem, sigma, eps)
    assert gap == pytest.approx(alpha @ dual_gradient(problem, alpha), abs=1e-10)


def _brute_force_gains(payoffs, sigma, concept):
    """Per-player ``[A_p]`` (CCE) / ``[A_p, A_p]`` (CE) expected gains by explicit loops."""
    shape = payoffs.shape[1:]
    out = []
    for p, n in enumerate(shape):
        block = np.zeros(n) if concept == "cce" else np.zeros((n, n))
        for a in itertools.product(*(range(m) for m in shape)):
            for dev in range(n):
                deviated = list(a)
                deviated[p] = dev
                gain = payoffs[(p,) + tuple(deviated)] - payoffs[(p,) + a]
                if concept == "cce":
                    block[dev] += sigma[a] * gain
                elif dev != a[p]:
                    block[dev, a[p]] += sigma[a] * gain
        out.append(block)
    return out


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_expected_gains_match_brute_force(concept):
    shape = (2, 3, 2)
    problem, game = _problem(shape, concept, Selection.me(), 11)
    sigma = np.random.default_rng(12).dirichlet(np.ones(12))
    flat = constraint_values(problem, sigma)
    got = duals_by_player(flat, shape, concept)
    want = _brute_force_gains(game.payoffs, sigma.reshape(shape), concept)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-13)


def test_kkt_residual_and_restrict():
    problem, _ = _problem((3, 3), "ce", Selection.me(), 13)
    support = np.ones(9, dtype=bool)
    support[4] = False
    free = np.zeros(problem.num_constraints, dtype=bool)
    free[0] = True
    face = restrict(problem, support, free)
    assert np.isneginf(face.base_logits[4]) and face.free[0]
    sigma = joint_from_duals(face, np.zeros(problem.num_constraints))
    assert sigma[4] == 0.0 and sigma.sum() == pytest.approx(1.0)
    grad = np.array([-2.0] + [1.0] * (problem.num_constraints - 1))
    alpha = np.zeros(problem.num_constraints)
    # Free row: |g|; bound rows at alpha = 0 with g > 0 are optimal.
    assert kkt_residual(face, alpha, grad) == 2.0
    assert math.isinf(primal_objective(face, np.full(9, 1 / 9), face.eps_hat)) is True
