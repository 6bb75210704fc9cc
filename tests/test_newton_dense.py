"""The single-game Newton driver's kernels (solvers.newton_dense, newton.solve_into,
small._solve_small) against the kernels they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import solvers.small as sm
from solvers import kernels as kn
from solvers import newton as nt
from solvers.game import _TINY_NORM
from solvers.newton_dense import structural_zero_rows_vt


def _plan(shape, concept):
    small = sm.plan(shape, concept, "me", "auto", 1e-8, None, "auto", False)
    assert small is not None
    return small


def _normalised(shape, seed):
    raw = np.random.default_rng(seed).standard_normal((len(shape), int(np.prod(shape))))
    return raw, kn.normalise_one(raw, _TINY_NORM)[0]


def test_structural_zero_rows_from_transposed_gains():
    rng = np.random.default_rng(1)
    num, num_joint = 6, 20
    values = rng.standard_normal((num_joint, num))
    base = np.zeros(num_joint)
    base[::3] = -np.inf
    values[:, 1] = 0.0  # zero everywhere
    values[base == 0.0, 4] = 0.0  # non-zero only off the support
    values[5, 2] = np.nan  # NaN counts as a gain
    rows = np.tile(np.arange(num), (num_joint, 1)).astype(np.int64)
    expected = np.empty(num, dtype=bool)
    kn.structural_zero_rows_one(rows, values, base, expected)
    got = np.empty(num, dtype=bool)
    structural_zero_rows_vt(np.ascontiguousarray(values.T), base, got)
    assert np.array_equal(got, expected)
    assert got.tolist() == [False, True, False, False, True, False]


def test_rows_are_identity():
    rows = np.tile(np.arange(5), (7, 1)).astype(np.int64)
    assert kn.rows_are_identity(rows, 5)
    assert not kn.rows_are_identity(rows, 4)
    rows[6, 4] = 3
    assert not kn.rows_are_identity(rows, 5)


@pytest.mark.parametrize("shape,concept,max_iter", [((8, 8), "cce", 1000), ((4, 5), "ce", 1000),
                                                    ((3, 4, 2), "cce", 2), ((8, 8), "ce", 3)])
def test_solve_into_certificate_is_a_fresh_gains_pass(shape, concept, max_iter):
    # The certificate reuses Newton's last expected gains: they must be those of the
    # returned joint, also for a game stopped at the iteration cap.
    small = _plan(shape, concept)
    rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, _ = small.kernel_args
    opts = opts.copy()
    opts[1] = max_iter
    for seed in range(3):
        _, flat = _normalised(shape, seed)
        alpha = np.zeros(player.shape[0])
        joint, gaps, epsp, stats = nt.solve_single(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus,
                                                   rho, alpha, opts)
        values = kn.gain_values_serial(flat[None], slot_player, dev)[0]
        mean = np.empty(player.shape[0])
        kn.expected_gains_one(rows, values, joint, mean)
        fresh = np.empty(gaps.shape[0])
        kn.player_gaps_one(mean, player, fresh)
        assert np.array_equal(gaps, fresh)
        assert (stats[1] == nt.OPTIMAL) == (max_iter == 1000)


@pytest.mark.parametrize("shape,concept", [((8, 8), "cce"), ((4, 5), "ce")])
def test_one_workspace_per_chunk_is_a_fresh_one_per_game(shape, concept):
    small = _plan(shape, concept)
    rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, _ = small.kernel_args
    flats = np.array([_normalised(shape, seed)[1] for seed in range(6)])
    num, num_joint, players = player.shape[0], flats.shape[2], flats.shape[1]
    alpha = np.zeros((6, num))
    joint, gaps, eps, stats = np.empty((6, num_joint)), np.empty((6, players)), np.empty((6, players)), np.empty((6, 6))
    sm._batch_serial(flats, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, alpha, joint, gaps,
                     eps, stats)
    for b in range(6):
        a1 = np.zeros(num)
        j1, g1, e1, s1 = nt.solve_single(rows, slot_player, dev, player, flats[b], base, eps_hat, eps_plus, rho, a1,
                                         opts)
        for x, y in ((a1, alpha[b]), (j1, joint[b]), (g1, gaps[b]), (e1, eps[b]), (s1, stats[b])):
            assert np.array_equal(x, y)


def test_compiled_marginals_sum_the_joint_in_joint_order():
    shape = (3, 4, 2)
    small = _plan(shape, "cce")
    raw, _ = _normalised(shape, 5)
    buf = np.empty(small.cuts[-1])
    assert sm._solve_small(raw.reshape((3,) + shape), *small.packed_args, buf)[0] == 0
    joint = buf[small.cuts[4]:small.cuts[5]].reshape(shape)
    for p, (lo, hi) in enumerate(small.margin_cuts):
        axes = tuple(q for q in range(3) if q != p)
        np.testing.assert_allclose(buf[lo:hi], joint.sum(axis=axes), rtol=0, atol=1e-15)
    # Bit for bit against the same sums taken in joint order.
    flat = joint.ravel()
    second = np.zeros(4)
    for a in range(flat.shape[0]):
        second[(a // 2) % 4] += flat[a]
    lo, hi = small.margin_cuts[1]
    assert np.array_equal(buf[lo:hi], second)
