"""``solvers.face_cert``: a face of the hard-constraint CE polytope guessed from Newton's
iterate and certified without the facial-reduction LP, against ``solvers.face``'s LP;
wrong guesses and margins below the perturbation bound must fail."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from solvers import face_cert
from solvers import kernels as kn
from solvers.dual import dual_problem
from solvers.face import minimal_face
from solvers.gains import gain_layout
from solvers.game import normalise
from solvers.newton import OPTIMAL, NewtonOptions, newton_one, options_array, solve_single
from solvers.selection import Selection, resolve_selection

SHAPE = (8, 8)
MASS = 1e-8
FACE_TOL = 1e-6


class _Game:
    """One 8x8 ME-CE (hard constraints) after Newton: layout, gains, iterate and LP face."""

    def __init__(self, payoffs: np.ndarray):
        game = normalise(payoffs)
        problem = dual_problem(game, "ce", resolve_selection(Selection.me(), game))
        self.layout = gain_layout(SHAPE, "ce")
        self.flat = np.ascontiguousarray(game.payoffs.reshape(len(SHAPE), -1))
        self.values = problem.values
        self.base = problem.base_logits
        self.num = problem.num_constraints
        self.alpha = np.zeros(self.num)
        self.eps_hat, self.eps_plus, self.rho = problem.eps_hat, problem.eps_plus, problem.rho
        assert not np.any(self.eps_hat) and self.rho == np.inf  # ME-CE: hard constraints
        self.joint, _, _, _ = solve_single(self.layout.rows, self.layout.slot_player, self.layout.dev,
                                           self.layout.player, self.flat, self.base, self.eps_hat, self.eps_plus,
                                           self.rho, self.alpha, options_array(NewtonOptions(tol=1e-10, max_iter=60)))
        self.lp = minimal_face(problem)
        self.st = face_cert.structure(self.layout.rows, self.layout.dev, self.layout.slot_player, self.num)
        self.eta = FACE_TOL * float(np.linalg.norm(self.flat))

    def dense(self) -> np.ndarray:
        """``M [K, |A|]``."""
        m = np.zeros((self.num, self.layout.rows.shape[0]))
        np.add.at(m, (self.layout.rows, np.arange(m.shape[1])[:, None]), self.values)
        return m


def _payoffs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(SHAPE),) + SHAPE)


@pytest.fixture(scope="module")
def face_game() -> _Game:
    game = _Game(_payoffs(0))  # seed 0: two of player 0's actions are never played
    assert 0 < game.lp.support.sum() < 64
    return game


def test_imports_without_jax():
    code = "import sys, solvers.face_cert; assert 'jax' not in sys.modules, sorted(sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_guess_and_certificate_match_the_lp_face(face_game):
    g = face_game
    support, equalities = face_cert.guess(g.layout.rows, g.st, g.joint, MASS)
    np.testing.assert_array_equal(support, g.lp.support)
    np.testing.assert_array_equal(equalities, g.lp.equalities)
    y = face_cert.certificate_ok(g.layout.rows, g.values, g.st, support, equalities, g.alpha, g.eta)
    assert y is not None
    # A certificate by definition: y >= 0 on the equality rows only, M^T y = 0 on the
    # support and >= 1 off it (checked on the dense matrix, not the ELL kernels).
    assert np.all(y >= 0) and np.all(y[~equalities] == 0)
    push = g.dense().T @ y
    np.testing.assert_allclose(push[support], 0.0, atol=1e-12)
    assert np.all(push[~support] >= 1 - 1e-12)


def test_certificate_fails_for_a_joint_of_the_support(face_game):
    g = face_game
    support, equalities = face_cert.guess(g.layout.rows, g.st, g.joint, MASS)
    wrong = support.copy()
    wrong[np.flatnonzero(support)[0]] = False  # claim a joint the ME-CE plays is never played
    eq = ~face_cert.touched(g.st, wrong)  # the rows that touch nothing of the wrong face
    assert face_cert.certificate_ok(g.layout.rows, g.values, g.st, wrong, eq, g.alpha, g.eta) is None
    # No y at all: the covering LP is infeasible or its y fails the check.
    cover = face_cert.cover_lp(face_cert.off_block(g.layout.rows, g.values, wrong, eq))
    if cover is not None:
        full = np.zeros(g.num)
        full[eq] = cover
        assert face_cert.certificate_ok(g.layout.rows, g.values, g.st, wrong, eq, full, g.eta) is None


def test_certificate_margin_below_the_perturbation_fails():
    payoffs = _payoffs(2)  # an interior ME-CE ...
    payoffs[0, 7] = payoffs[0, 6] - 1e-9  # ... with player 0's action 7 dominated by 1e-9 only
    g = _Game(payoffs)
    support, equalities, y = g.lp.support, g.lp.equalities, g.lp.certificate  # the LP's face and certificate
    assert not support.reshape(SHAPE)[7].any()  # player 0's action 7 (and what that dominates) is off
    assert face_cert.certificate_ok(g.layout.rows, g.values, g.st, support, equalities, y, 0.0) is not None
    assert face_cert.certificate_ok(g.layout.rows, g.values, g.st, support, equalities, y, g.eta) is None
    payoffs[0, 7] = payoffs[0, 6] - 1e-3  # a clear margin: the same face, certified
    g = _Game(payoffs)
    assert face_cert.certificate_ok(g.layout.rows, g.values, g.st, g.lp.support, g.lp.equalities, g.lp.certificate,
                                    g.eta) is not None


def _face_optimum(g: _Game, support, equalities):
    """Newton on the face: joint, duals, the active rows and ``-H_AA^{-1}``."""
    rows, player = g.layout.rows, g.layout.player
    alpha = np.where(equalities, 0.0, g.alpha)
    joint = np.empty(rows.shape[0])
    o = NewtonOptions(tol=1e-10)
    out = newton_one(rows, g.values, player, np.where(support, g.base, -np.inf), g.eps_hat, g.eps_plus, g.rho,
                     equalities, alpha, *[int(v) if isinstance(v, int) else float(v) for v in o], joint)
    assert int(out[1]) == OPTIMAL
    active = ~equalities & (alpha > 1e-7) & face_cert.touched(g.st, support)
    m = g.dense()[active]
    mean = m @ joint
    hess = (m * joint) @ m.T - np.outer(mean, mean)
    return joint, active, -np.linalg.inv(hess)


def test_slater_point_on_the_face_and_not_beyond(face_game):
    g = face_game
    support, equalities = face_cert.guess(g.layout.rows, g.st, g.joint, MASS)
    joint, active, neg_inv = _face_optimum(g, support, equalities)
    assert face_cert.slater_ok(g.layout.rows, g.values, g.st, support, equalities, joint, active, neg_inv, g.eta)
    # The whole simplex is not the face: no point with every joint > 0 satisfies the
    # rows that the face's certificate makes tight.
    everything = np.ones_like(support)
    assert not face_cert.slater_ok(g.layout.rows, g.values, g.st, everything, np.zeros_like(equalities), joint,
                                   active, neg_inv, g.eta)


def test_interior_game_has_no_guessed_face():
    g = _Game(_payoffs(2))  # seed 2: an interior 8x8 ME-CE
    assert g.lp.support.all() and g.joint.min() > MASS
    assert face_cert.guess(g.layout.rows, g.st, g.joint, MASS) is None


def test_cover_lp():
    block = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 3.0]])
    y = face_cert.cover_lp(block)
    assert y is not None and np.all(y >= 0) and np.all(block.T @ y >= 1 - 1e-9)
    # least sum: against the vertices of the 2-variable LP
    candidates = [np.linalg.solve(block.T[[i, j]], np.ones(2)) for i, j in ((0, 1), (0, 2), (1, 2))]
    best = min(c.sum() for c in candidates if np.all(c >= 0) and np.all(block.T @ c >= 1 - 1e-9))
    assert y.sum() == pytest.approx(best, rel=1e-9)
    assert face_cert.cover_lp(-np.abs(block)) is None  # no y >= 0 makes a negative column >= 1


def test_touched_and_structure_match_the_dense_matrix(face_game):
    g = face_game
    rng = np.random.default_rng(3)
    mask = rng.random(g.layout.rows.shape[0]) < 0.3
    # structural touch: the slot's gain is not identically 0 (random gains are non-zero)
    dense = np.zeros((g.num, g.layout.rows.shape[0]))
    values = np.empty(g.layout.rows.shape)
    kn.gain_values_one(rng.standard_normal(g.flat.shape), g.layout.slot_player, g.layout.dev, values)
    np.add.at(dense, (g.layout.rows, np.arange(dense.shape[1])[:, None]), values)
    np.testing.assert_array_equal(face_cert.touched(g.st, mask), np.any(dense[:, mask] != 0, axis=1))


def test_multiplicative_slater_step_certifies_where_the_additive_one_stops(monkeypatch):
    g = _Game(_payoffs(13))  # seed 13: the additive step's cap leaves margins at 0.6x the bound
    support, equalities = face_cert.guess(g.layout.rows, g.st, g.joint, MASS)
    np.testing.assert_array_equal(support, g.lp.support)
    np.testing.assert_array_equal(equalities, g.lp.equalities)
    joint, active, neg_inv = _face_optimum(g, support, equalities)
    args = (g.layout.rows, g.values, g.st, support, equalities, joint, active, neg_inv, g.eta)
    assert face_cert.slater_ok(*args)
    monkeypatch.setattr(face_cert, "TAU_MULTIPLES", face_cert.TAU_MULTIPLES[:0])
    assert not face_cert.slater_ok(*args)


def test_a_reused_highs_instance_keeps_each_lps_time_limit():
    """HiGHS counts ``time_limit`` over an instance's life (ERGO-Code/HiGHS#1331): the per-thread
    instance must give every LP its own limit, not fail all LPs once earlier ones add up to it."""
    from solvers.face import highs_instance

    rng = np.random.default_rng(0)
    block = rng.uniform(0.1, 1.0, (20, 60))
    highs = highs_instance()
    limit = 0.05
    first = face_cert.cover_lp(block, time_limit=limit)
    assert first is not None
    start = highs.getRunTime()
    while highs.getRunTime() < start + 3 * limit:
        out = face_cert.cover_lp(block, time_limit=limit)
        assert out is not None
        np.testing.assert_allclose(out, first, atol=1e-9)
    assert highs.getRunTime() > 3 * limit  # the clock did pass the limit several times over
