"""Facial reduction (solvers.face): support, implicit equalities, certificate, lift."""

from __future__ import annotations

import numpy as np
import pytest

from solvers.dual import DualProblem, dual_problem, joint_from_duals
from solvers.face import lift_duals, minimal_face, restrict_to_face
from solvers.game import normalise
from solvers.newton import OPTIMAL, NewtonOptions, newton_batch
from solvers.selection import Selection, resolve_selection

PRISONERS_DILEMMA = np.array([[[-1.0, -3.0], [0.0, -2.0]], [[-1.0, 0.0], [-3.0, -2.0]]])


def _problem(payoffs, concept, selection=None):
    game = normalise(payoffs)
    return dual_problem(game, concept, resolve_selection(selection or Selection.me(), game))


def _homogenised(problem: DualProblem) -> np.ndarray:
    num_joint = problem.rows.shape[0]
    dense = np.zeros((problem.num_constraints, num_joint))
    np.add.at(dense, (problem.rows, np.broadcast_to(np.arange(num_joint)[:, None], problem.rows.shape)), problem.values)
    return dense - problem.eps_hat[problem.player][:, None]


def _check_certificate(problem, face):
    m = _homogenised(problem)
    y = face.certificate
    z = m.T @ y
    assert np.all(y >= 0)
    np.testing.assert_allclose(z[face.support], 0.0, atol=1e-9)
    assert np.all(z[~face.support] >= 1 - 1e-9)
    np.testing.assert_allclose(y[~face.equalities], 0.0, atol=1e-9)
    assert np.all(y[face.equalities] >= 1 - 1e-9)


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_prisoners_dilemma_face_is_defect_defect(concept):
    problem = _problem(PRISONERS_DILEMMA, concept)
    face = minimal_face(problem)
    assert face.feasible
    np.testing.assert_array_equal(face.support, [False, False, False, True])  # (D, D) only
    # Every deviation gain vanishes at (D, D) except deviations to C, strictly negative.
    assert face.equalities.any()
    _check_certificate(problem, face)


def test_dominated_action_gets_no_mass_in_ce():
    rng = np.random.default_rng(0)
    payoffs = rng.normal(size=(2, 3, 3))
    payoffs[0, 2] = payoffs[0, 0] - 1.0  # row action 2 strictly dominated by row action 0
    problem = _problem(payoffs, "ce")
    face = minimal_face(problem)
    support = face.support.reshape(3, 3)
    assert not support[2].any()
    assert support[:2].any()
    _check_certificate(problem, face)


def test_full_support_when_interior_exists():
    # Random games have full-support CCEs (DESIGN §4b: 50 of 50 at 8x8).
    payoffs = np.random.default_rng(1).normal(size=(2, 4, 4))
    problem = _problem(payoffs, "cce")
    face = minimal_face(problem)
    assert face.support.all() and not face.equalities.any()


def test_infeasible_when_eps_hat_too_small():
    problem = _problem(PRISONERS_DILEMMA, "cce", Selection.me(eps_hat=-5.0))
    face = minimal_face(problem)
    assert not face.feasible and not face.support.any()


def test_restricted_newton_converges_and_lift_keeps_the_joint():
    problem = _problem(PRISONERS_DILEMMA + np.random.default_rng(2).normal(0, 0.01, (2, 2, 2)), "ce")
    face = minimal_face(problem)
    restricted = restrict_to_face(problem, face)
    res = newton_batch(
        restricted.rows, restricted.values[None], restricted.player, restricted.base_logits[None],
        restricted.eps_hat[None], restricted.eps_plus[None], np.array([restricted.rho]),
        restricted.free[None], np.zeros((1, restricted.num_constraints)), NewtonOptions(tol=1e-10),
    )
    assert res.status[0] == OPTIMAL
    joint = res.joint[0]
    assert np.all(joint[~face.support] == 0)
    lifted = lift_duals(problem, face, res.alpha[0])
    assert np.all(lifted >= 0)
    np.testing.assert_allclose(joint_from_duals(problem, lifted), joint, atol=1e-12)


def test_lift_of_random_ce_face():
    for seed in range(3, 12):
        problem = _problem(np.random.default_rng(seed).normal(size=(2, 5, 5)), "ce")
        face = minimal_face(problem)
        if face.support.all():
            continue
        _check_certificate(problem, face)
        restricted = restrict_to_face(problem, face)
        alpha = np.random.default_rng(seed).normal(size=problem.num_constraints)
        alpha = np.where(face.equalities, alpha, np.abs(alpha))
        lifted = lift_duals(problem, face, alpha)
        assert np.all(lifted >= 0)
        np.testing.assert_allclose(
            joint_from_duals(problem, lifted), joint_from_duals(restricted, alpha), atol=1e-10
        )
        # Moving along the flat direction y of the restricted loss changes nothing.
        drifted = lift_duals(problem, face, alpha + 1e4 * face.certificate)
        np.testing.assert_allclose(drifted, lifted, rtol=1e-6, atol=1e-6)
        return
    pytest.fail("no random 5x5 game with a CE on a proper face among the seeds")
