"""The 8x8 ME-CE Newton direction by blocks (``solvers.newton_blocks``) against the dense one.

On the free block of the solution of 32 [2, 8, 8] N(0, 1) games (rows with a positive
dual or a gradient ``<= 1e-9``, as ``kernel_profile.py``), times in compiled loops the
dense direction (``hessian_lower_one`` + ``newton.damped_direction``) and
``newton_blocks.ce2_direction``, alternating, and prints process CPU per call, the best
of ``--rounds``, with the largest relative difference of the two directions.

    python benchmarks/ce_blocks_bench.py [--rounds 5] [--reps 2000]

Results: benchmarks/results/solvers_suite_profile.md (section h-cechol).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from numba import njit

import solvers.small as sm
from benchmarks.kernel_profile import _free_block
from solvers import kernels as kn
from solvers import newton as nt
from solvers import newton_blocks as nb
from solvers.game import _TINY_NORM


@njit
def _dense(reps, rows, values, player, sigma, mean, grad, alpha, pos, curv, hess_flat, low_flat, scratch, vecs,
           direction):
    keep, loc = scratch
    val, rhs, sol = vecs
    num = pos.shape[0]
    n = 0
    for k in range(num):
        n += pos[k] >= 0
    for _ in range(reps):
        hess = hess_flat[: n * n].reshape((n, n))
        low = low_flat[: n * n].reshape((n, n))
        kn.hessian_lower_one(rows, values, player, sigma, mean, curv, pos, hess, keep, loc, val)
        j = 0
        for k in range(num):
            if pos[k] >= 0:
                rhs[j] = -grad[k]
                j += 1
        diag_max = 0.0
        for i in range(n):
            diag_max = max(diag_max, hess[i, i])
        nt.damped_direction(hess, rhs, low, sol, pos, alpha, direction, 1e-3, diag_max, 1e-3, 1e10)


@njit
def _blocks(reps, values, player, sigma, mean, grad, alpha, pos, layout, scratch, hess_flat, low_flat, direction):
    code = 0
    for _ in range(reps):
        code, _m = nb.ce2_direction(values, player, sigma, mean, grad, alpha, pos, layout, scratch, hess_flat,
                                    low_flat, 1e-3, nt.DAMPING_POWER, 1e-3, 1e10, direction)
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()
    small = sm.plan((8, 8), "ce", "me", "auto", 1e-8, None, "auto", False)
    rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, _ = small.kernel_args
    num = player.shape[0]
    layout = nb.ce2_layout(rows, player)
    scratch = nb.ce2_scratch(num, layout[1])
    states = []
    for g in np.random.default_rng(0).standard_normal((32, 2, 64)):
        flat, _, _ = kn.normalise_one(g, _TINY_NORM)
        alpha = np.zeros(num)
        nt.solve_single(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, alpha, opts)
        pos = _free_block(flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, alpha)
        values = np.empty(dev.shape)
        kn.gain_values_one(flat, slot_player, dev, values)
        lg, sigma = np.empty(base.shape[0]), np.empty(base.shape[0])
        mean, grad = np.empty(num), np.empty(num)
        ssum, eps = np.empty(eps_hat.shape[0]), np.empty(eps_hat.shape[0])
        kn.evaluate_one(rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, sigma, mean, ssum, eps, grad)
        states.append((values, sigma, mean, grad, alpha, pos))
    curv = np.zeros(eps_hat.shape[0])
    hess_flat, low_flat = np.empty(num * num), np.empty(num * num)
    dense_scratch = (np.empty(num, np.int64), np.empty(rows.shape[1], np.int64))
    vecs = (np.empty(num), np.empty(num), np.empty(num))
    d_dense, d_blocks = np.empty(num), np.empty(num)
    diff = 0.0
    for values, sigma, mean, grad, alpha, pos in states:
        _dense(1, rows, values, player, sigma, mean, grad, alpha, pos, curv, hess_flat, low_flat, dense_scratch, vecs,
               d_dense)
        assert _blocks(1, values, player, sigma, mean, grad, alpha, pos, layout, scratch, hess_flat, low_flat,
                       d_blocks) == 1
        diff = max(diff, np.abs(d_dense - d_blocks).max() / np.abs(d_dense).max())
    sizes = [int((s[5] >= 0).sum()) for s in states]
    print(f"free block: mean {np.mean(sizes):.1f} rows; largest relative difference of the directions {diff:.1e}")
    best = {"dense": np.inf, "blocks": np.inf}
    for _ in range(args.rounds):
        for name in best:
            c = time.process_time()
            for values, sigma, mean, grad, alpha, pos in states:
                if name == "dense":
                    _dense(args.reps, rows, values, player, sigma, mean, grad, alpha, pos, curv, hess_flat, low_flat,
                           dense_scratch, vecs, d_dense)
                else:
                    _blocks(args.reps, values, player, sigma, mean, grad, alpha, pos, layout, scratch, hess_flat,
                            low_flat, d_blocks)
            best[name] = min(best[name], (time.process_time() - c) / (len(states) * args.reps) * 1e6)
    print(f"dense (hessian_lower_one + damped_direction) {best['dense']:.2f} us/call, "
          f"blocks (ce2_direction) {best['blocks']:.2f} us/call, ratio {best['blocks'] / best['dense']:.2f}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
