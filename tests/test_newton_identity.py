"""solvers.newton_identity: the fused identity-layout Newton kernel gives newton.solve_into's
results bit for bit (the general path's kernels), at the cap, with hard constraints, from
a warm start, on games with constant players, and in a scratch at any alignment."""

from __future__ import annotations

import numpy as np
import pytest

import solvers.small as sm
from solvers import kernels as kn
from solvers import newton as nt
from solvers.game import _TINY_NORM
from solvers.newton_identity import fits, scratch_size, solve_identity


def _args(shape, rho=np.inf, max_iter=None):
    """``_solve_small``'s arguments of ME-CCE on ``shape`` (hard constraints), or with soft
    ones of weight ``rho`` (``eps_plus = eps_hat + 0.05``)."""
    small = sm.plan(shape, "cce", "me", "auto", 1e-8, max_iter, "never", False)
    assert small is not None
    args = list(small.kernel_args)
    if rho != np.inf:
        args[6] = args[5] + 0.05
        args[7] = rho
    return tuple(args)


def _both(kargs, flat, alpha0, offset=0):
    rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, _ = kargs
    num, num_joint, players = player.shape[0], dev.shape[0], eps_hat.shape[0]
    assert fits(rows, num, opts)
    a1 = alpha0.copy()
    expected = nt.solve_single(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, a1, opts)
    a2 = alpha0.copy()
    scratch = np.full(scratch_size(num, num_joint, players) + offset, np.nan)[offset:]
    got = (np.empty(num_joint), np.empty(players), np.empty(players), np.empty(6))
    solve_identity(slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, a2, opts, scratch, *got, np.nan)
    for x, y in zip((a1, *expected), (a2, *got), strict=True):
        assert np.array_equal(x, y, equal_nan=True)
    # The start given (small.pack's softmax of base): the same, from alpha = 0 only.
    a3 = alpha0.copy()
    start = (np.empty(num_joint), np.empty(players), np.empty(players), np.empty(6))
    lse = kn.softmax_one(base, start[0])
    solve_identity(slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, a3, opts, scratch, *start, lse)
    for x, y in zip((a1, *expected), (a3, *start), strict=True):
        assert np.array_equal(x, y, equal_nan=True)
    return got[3]


@pytest.mark.parametrize("shape", [(8, 8), (3, 4, 2), (2, 2)])
@pytest.mark.parametrize("rho", [np.inf, 0.5, 1e-3])
def test_bit_for_bit_against_solve_into(shape, rho):
    kargs = _args(shape, rho)
    num = kargs[3].shape[0]
    statuses = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        raw = rng.standard_normal((len(shape), int(np.prod(shape))))
        if seed % 4 == 3:
            raw[0] = 1.5  # a constant player: structural zero rows
        flat = kn.normalise_one(raw, _TINY_NORM)[0]
        stats = _both(kargs, flat, np.zeros(num), offset=seed % 8)
        statuses.add(int(stats[1]))
        # A warm start with negative entries (projected first).
        _both(kargs, flat, rng.standard_normal(num), offset=(seed + 3) % 8)
    assert nt.OPTIMAL in statuses


def test_at_the_iteration_cap():
    kargs = _args((8, 8), max_iter=2)
    flat = kn.normalise_one(np.random.default_rng(5).standard_normal((2, 64)), _TINY_NORM)[0]
    stats = _both(kargs, flat, np.zeros(kargs[3].shape[0]))
    assert stats[0] == 2 and stats[1] == nt.MAX_ITER


def test_not_for_other_layouts_or_a_block_limit():
    small = sm.plan((3, 4), "ce", "me", "auto", 1e-8, None, "auto", False)
    rows, *_, opts, _ = small.kernel_args
    assert not fits(rows, small.sizes[2], opts)
    rows, *_, opts, _ = _args((3, 4))
    limited = opts.copy()
    limited[12] = 3  # max_block below K: the buffers grow with the block (newton_core)
    assert fits(rows, 7, opts) and not fits(rows, 7, limited)
