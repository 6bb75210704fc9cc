"""Numba kernels (solvers.kernels) against the NumPy reference (solvers.dual)."""

from __future__ import annotations

import _kernels_reference as ref
import numpy as np
import pytest

from solvers import kernels as kn
from solvers.dual import (
    certificate,
    dual_gradient,
    dual_hessian,
    dual_loss,
    dual_problem,
    duals_eps,
    joint_from_duals,
    kkt_residual,
    logits,
    restrict,
)
from solvers.gains import gain_structure, gain_values_batch
from solvers.game import normalise, normalise_batch
from solvers.newton_dense import hessian_vt_one
from solvers.selection import Selection, resolve_selection

TOL = 1e-12


def _batch(shape, concept, selection, seeds, face=False):
    problems = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        game = normalise(rng.normal(size=(len(shape),) + shape))
        problem = dual_problem(game, concept, resolve_selection(selection, game))
        if face:
            support = rng.random(problem.rows.shape[0]) < 0.7
            support[0] = True
            problem = restrict(problem, support, rng.random(problem.num_constraints) < 0.3)
        problems.append(problem)
    p0 = problems[0]
    arrays = (
        p0.rows,
        np.stack([p.values for p in problems]),
        p0.player,
        np.stack([p.base_logits for p in problems]),
        np.stack([p.eps_hat for p in problems]),
        np.stack([p.eps_plus for p in problems]),
        np.array([p.rho for p in problems]),
    )
    free = np.stack([p.free for p in problems])
    alpha = np.stack([
        np.random.default_rng(100 + s).uniform(-0.2, 0.6, p0.num_constraints)
        for s, p in zip(seeds, problems, strict=True)
    ])
    alpha = np.where(free, alpha, np.abs(alpha))
    return problems, arrays, free, alpha


CASES = [
    ((3, 4), "cce", Selection.me(), False),
    ((3, 4), "ce", Selection.me(eps_hat=0.1), False),
    ((2, 3, 2), "ce", Selection(name="me", rho=0.5, eps_hat=0.1, eps_plus=2.0), False),
    ((2, 3, 2), "cce", Selection(name="me", rho=2.0), False),
    ((4, 3), "ce", Selection.me(), True),
]


@pytest.mark.parametrize("shape,concept,selection,face", CASES)
def test_kernels_match_reference(shape, concept, selection, face):
    problems, arrays, free, alpha = _batch(shape, concept, selection, [1, 2, 3], face)
    rows, values, player, base, eps_hat, eps_plus, rho = arrays
    lg = kn.logits(rows, values, base, alpha)
    sigma = kn.softmax(lg)
    lse = ref.log_partition(lg)
    mean = ref.expected_gains(rows, values, sigma, alpha.shape[1])
    loss = ref.dual_loss(*arrays, alpha)
    grad = ref.dual_gradient(*arrays, alpha)
    hess = ref.dual_hessian(*arrays, alpha)
    eps = ref.duals_eps(alpha, player, eps_hat, eps_plus, rho)
    measures = ref.stopping_measures(*arrays, free, alpha)
    joint, gaps, epsp, stats = kn.certify(*arrays, free, alpha)
    joint_s, gaps_s, epsp_s, stats_s = kn.certify_serial(*arrays, free, alpha)
    for b, problem in enumerate(problems):
        ref_lg = logits(problem, alpha[b])
        np.testing.assert_allclose(lg[b], ref_lg, atol=TOL)
        ref_sigma = joint_from_duals(problem, alpha[b])
        np.testing.assert_allclose(sigma[b], ref_sigma, atol=TOL)
        finite = ref_lg[np.isfinite(ref_lg)]
        assert lse[b] == pytest.approx(np.log(np.exp(finite - finite.max()).sum()) + finite.max(), abs=TOL)
        assert loss[b] == pytest.approx(dual_loss(problem, alpha[b]), abs=TOL)
        np.testing.assert_allclose(grad[b], dual_gradient(problem, alpha[b]), atol=TOL)
        np.testing.assert_allclose(hess[b], dual_hessian(problem, alpha[b]), atol=TOL)
        np.testing.assert_allclose(eps[b], duals_eps(problem, alpha[b]), atol=TOL)
        cert = certificate(problem, alpha[b])
        np.testing.assert_allclose(mean[b], cert.expected_gains, atol=TOL)
        np.testing.assert_allclose(joint[b], cert.joint, atol=TOL)
        np.testing.assert_allclose(gaps[b], cert.gaps, atol=TOL)
        np.testing.assert_allclose(epsp[b], cert.eps, atol=TOL)
        assert stats[b, 2] == pytest.approx(cert.duality_gap, abs=1e-10)
        assert stats[b, 3] == pytest.approx(cert.dual, abs=TOL)
        assert measures[b, 1] == pytest.approx(kkt_residual(problem, alpha[b], grad[b]), abs=TOL)
        assert measures[b, 0] == pytest.approx(max(0.0, -grad[b].min()), abs=TOL)
        np.testing.assert_array_equal(stats[b], stats_s[b])
        np.testing.assert_array_equal(joint[b], joint_s[b])


def test_hessian_block_and_inert_rows():
    problems, arrays, free, alpha = _batch((3, 4), "ce", Selection.me(), [5])
    rows, values, player, base, eps_hat, eps_plus, rho = arrays
    full = dual_hessian(problems[0], alpha[0])
    sigma = joint_from_duals(problems[0], alpha[0])
    mean = ref.expected_gains(rows, values, sigma[None], alpha.shape[1])[0]
    keep = np.arange(alpha.shape[1]) % 3 != 0
    pos = np.where(keep, np.cumsum(keep) - 1, -1)
    block = np.empty((keep.sum(), keep.sum()))
    num = alpha.shape[1]
    scratch = (np.empty(num, dtype=np.int64), np.empty(num, dtype=np.int64), np.empty(num))
    kn.hessian_one(rows, values[0], player, sigma, mean, np.zeros(2), pos, block, *scratch)
    np.testing.assert_allclose(block, full[np.ix_(keep, keep)], atol=TOL)
    second = np.empty(alpha.shape[1])
    ref.second_moments_one(rows, values[0], sigma, second)
    np.testing.assert_allclose(second - mean**2, np.diag(full), atol=TOL)


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_gain_values_match_foundation(concept):
    payoffs = normalise_batch(np.random.default_rng(6).normal(size=(3, 3, 2, 3, 2))).payoffs
    _, slot_player, dev = gain_structure((2, 3, 2), concept)
    want = gain_values_batch(payoffs, concept)
    flat = payoffs.reshape(3, 3, -1)
    np.testing.assert_array_equal(kn.gain_values(flat, slot_player, dev), want)
    np.testing.assert_array_equal(kn.gain_values_serial(flat, slot_player, dev), want)


def test_normalise_one_matches_foundation():
    rng = np.random.default_rng(7)
    game = rng.normal(size=(3, 2, 3, 4)) * [[[[5.0]]], [[[1e-3]]], [[[1.0]]]] + 7.0
    game[2] = 4.0  # a constant player
    ref = normalise(game)
    out, scale, offset = kn.normalise_one(game.reshape(3, -1), 1e-12)
    np.testing.assert_allclose(out, ref.payoffs.reshape(3, -1), atol=1e-12)
    np.testing.assert_allclose(scale, ref.scale, rtol=1e-12)
    np.testing.assert_allclose(offset, ref.offset, rtol=1e-12)
    assert scale[2] == 1.0 and not out[2].any()


def test_dense_hessian_for_the_cce_layout():
    problems, arrays, free, alpha = _batch((3, 4), "cce", Selection(name="me", rho=0.5, eps_plus=3.0), [8])
    rows, values, player, base, eps_hat, eps_plus, rho = arrays
    num = alpha.shape[1]
    assert kn.rows_are_identity(rows, num)
    assert not kn.rows_are_identity(_batch((3, 4), "ce", Selection.me(), [8])[1][0], 12)
    full = dual_hessian(problems[0], alpha[0])
    sigma = joint_from_duals(problems[0], alpha[0])
    mean = ref.expected_gains(rows, values, sigma[None], num)[0]
    ssum = np.array([alpha[0][player == p].sum() for p in range(2)])
    curv = np.empty(2)
    kn.curvature_one(ssum, eps_hat[0], eps_plus[0], rho[0], curv)
    keep = np.arange(num) % 4 != 1
    pos = np.where(keep, np.cumsum(keep) - 1, -1)
    block = np.empty((keep.sum(), keep.sum()))
    hessian_vt_one(np.ascontiguousarray(values[0].T), player, sigma, mean, curv, pos, block,
                   np.empty((num, rows.shape[0])), np.empty(num, dtype=np.int64))
    np.testing.assert_allclose(block, full[np.ix_(keep, keep)], atol=TOL)
    assert np.array_equal(block, block.T)


def test_identity_layout_kernels_are_bit_identical():
    # newton's CCE kernels sum in the same order as the generic ELL kernels, so the
    # certificate (generic kernels) sees exactly the logits and gains Newton saw.
    from solvers.newton import gains_identity_one, logits_identity_one

    problems, arrays, free, alpha = _batch((3, 5), "cce", Selection.me(), [9])
    rows, values, player, base, eps_hat, eps_plus, rho = arrays
    assert kn.rows_are_identity(rows, alpha.shape[1])
    base = base[0].copy()
    base[[1, 6]] = -np.inf
    want = np.empty(rows.shape[0])
    kn.logits_one(rows, values[0], base, alpha[0] * 3.0, want)
    got = np.empty_like(want)
    logits_identity_one(np.ascontiguousarray(values[0].T), base, alpha[0] * 3.0, got)
    np.testing.assert_array_equal(got, want)
    # The plain loop, in Python (IEEE doubles, same order): logits_one's 4-way unrolling
    # changes nothing.
    plain = [base[a] if base[a] == -np.inf else base[a] for a in range(rows.shape[0])]
    for a in range(rows.shape[0]):
        if plain[a] != -np.inf:
            for j in range(rows.shape[1]):
                plain[a] -= alpha[0][rows[a, j]] * 3.0 * values[0][a, j]
    np.testing.assert_array_equal(want, np.array(plain))
    sigma = np.empty_like(want)
    kn.softmax_one(want, sigma)
    assert sigma[1] == 0.0 and sigma.sum() == pytest.approx(1.0, abs=1e-15)
    mean_g = np.empty(alpha.shape[1])
    mean_i = np.empty(alpha.shape[1])
    kn.expected_gains_one(rows, values[0], sigma, mean_g)
    gains_identity_one(values[0], sigma, mean_i)
    np.testing.assert_array_equal(mean_i, mean_g)
