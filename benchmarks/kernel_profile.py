"""Where the compiled solve of a small game spends its time (issue #23).

Replays ``solvers.small._solve_small`` (normalisation, gains, projected Newton and the
certificate of one game) on 256 [2, 8, 8] N(0, 1) games in a compiled loop, then splits
it into parts: each part's kernel is timed alone in a compiled loop on the state of a
real solve, and the counts of each call per game come from running Newton's Python
source (``py_func``) with counting wrappers on the same games. Prints the per-game
figures (process CPU time, best of ``--reps``) and the sum of the parts against the whole.
With ``--concept ce`` the parts are the ELL (CE) kernels, the Hessian on the free block
of the solution (rows with a positive dual or a non-positive gradient) and the Cholesky
on the mean free block; the distribution of the free block over the trajectories
(mean, percentiles, cube mean) is printed too.

    python benchmarks/kernel_profile.py [--concept cce|ce] [--games 256] [--reps 7]

Results: benchmarks/results/solvers_suite_profile.md.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

import numpy as np
from numba import njit

import solvers
import solvers.small as sm
from solvers import kernels as kn
from solvers import newton as nt
from solvers import newton_blocks as nb
from solvers import newton_step as ns
from solvers.game import _TINY_NORM
from solvers.newton_dense import hessian_vt_one

#: Newton's ELL (CE) Hessian kernel (the full block in trees before ``hessian_lower_one``).
ELL_HESSIAN = getattr(kn, "hessian_lower_one", kn.hessian_one)


@njit
def _replay(games, ints, floats, buf, reps):
    for _ in range(reps):
        for b in range(games.shape[0]):
            sm._solve_small(games[b], ints, floats, buf)


@njit
def _part(which, reps, flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, alpha, n, tiny, dense,
          pos):
    """Runs one part ``reps`` times on one game at its solution ``alpha``.

    ``dense``: the identity (CCE) layout; ``pos: [K]`` the free block of the ELL (CE)
    Hessian (the identity layout's block is the first ``n`` rows).
    """
    num_joint, width = dev.shape
    num = alpha.shape[0]
    values = np.empty((num_joint, width))
    kn.gain_values_one(flat, slot_player, dev, values)
    vt = np.empty((num if dense else 0, num_joint))
    if dense:
        for a in range(num_joint):
            for j in range(num):
                vt[j, a] = values[a, j]
    lg = np.empty(num_joint)
    ex = np.empty(num_joint)
    sigma = np.empty(num_joint)
    mean = np.empty(num)
    grad = np.empty(num)
    ssum = np.empty(eps_hat.shape[0])
    eps = np.empty(eps_hat.shape[0])
    gaps = np.empty(eps_hat.shape[0])
    curv = np.zeros(eps_hat.shape[0])
    if dense:
        pos = np.full(num, -1, dtype=np.int64)
        for i in range(n):
            pos[i] = i
    else:
        n = 0
        for k in range(num):
            n += pos[k] >= 0
    loc = np.empty(width, dtype=np.int64)
    val = np.empty(max(num, width))
    hess = np.empty((n, n))
    low = np.empty((n, n))
    wcols = np.empty((num, num_joint))
    keep = np.empty(num, dtype=np.int64)
    rhs = np.ones(n)
    sol = np.empty(n)
    free = np.zeros(num, dtype=np.bool_)
    trial = np.empty(num)
    direction = np.full(num, 1e-3)
    if dense:
        ns.logits_identity_one(vt, base, alpha, lg)
    else:
        kn.logits_one(rows, values, base, alpha, lg)
    kn.softmax_one(lg, sigma)
    if dense:
        ns.gains_identity_one(values, sigma, mean)
    else:
        kn.expected_gains_one(rows, values, sigma, mean)
    acc = 0.0
    sink = 0.0
    for _ in range(reps):
        if which == 0:  # normalisation
            out, scale, offset = kn.normalise_one(flat, tiny)
            sink += out[0, 0]
        elif which == 1:  # gains ELL values + the transpose
            kn.gain_values_one(flat, slot_player, dev, values)
            if dense:
                for a in range(num_joint):
                    for j in range(num):
                        vt[j, a] = values[a, j]
        elif which == 2:  # workspace + solve_single's buffers
            ws = nt.newton_workspace(num, num_joint, eps_hat.shape[0], num, dense)
            v2 = np.empty((num_joint, width))
            j2 = np.empty(num_joint)
            sink += ws[4].shape[0] + v2.shape[0] + j2.shape[0]
        elif which == 3:  # logits
            if dense:
                ns.logits_identity_one(vt, base, alpha, lg)
            else:
                kn.logits_one(rows, values, base, alpha, lg)
        elif which == 4:  # shifted exps
            top, acc = ns.shifted_exps_one(lg, ex)
            sink += top
        elif which == 5:  # accepted point: softmax from exps, gains, gradient
            ns.evaluate_exps(dense, rows, values, player, eps_hat, eps_plus, rho, alpha, ex, 1.0, sigma, mean, ssum,
                             eps, grad)
        elif which == 6:  # Hessian block n x n
            if dense:
                hessian_vt_one(vt, player, sigma, mean, curv, pos, hess, wcols, keep)
            else:
                ELL_HESSIAN(rows, values, player, sigma, mean, curv, pos, hess, keep, loc, val)
        elif which == 7:  # Cholesky solve n x n
            for i in range(n):
                for j in range(n):
                    hess[i, j] = 1.0 if i == j else 0.01
            nt.cholesky_solve(hess, 1e-6, rhs, low, sol)
        elif which == 8:  # per-iteration bookkeeping: gaps, measures, dgap, projected step
            kn.player_gaps_one(mean, player, gaps)
            v, k = kn.measures_one(alpha, grad, free)
            sink += v + k + kn.dgap_one(alpha, grad, ssum, eps, gaps, eps_hat, eps_plus, rho, free)
            sink += ns.projected_step_one(alpha, direction, 1.0, free, grad, trial)
        elif which == 9:  # the certificate's own gains pass (ELL; reused from Newton since kcce)
            kn.expected_gains_one(rows, values, sigma, mean)
            kn.player_gaps_one(mean, player, gaps)
            kn.player_sums_one(alpha, player, ssum)
            kn.eps_and_penalty_one(ssum, eps_hat, eps_plus, rho, eps)
        elif which == 11:  # Newton direction by blocks (2-player CE), pos's free block
            if not dense:
                layout = nb.ce2_layout(rows, player)
                if layout[0]:
                    bscratch = nb.ce2_scratch(num, layout[1])
                    hf = np.empty(num * num)
                    lf = np.empty(num * num)
                    nb.ce2_direction(values, player, sigma, mean, grad, alpha, pos, layout, bscratch, hf, lf, 1e-3,
                                     nt.DAMPING_POWER, 1e-3, 1e10, direction)
                    for _ in range(reps - 1):
                        nb.ce2_direction(values, player, sigma, mean, grad, alpha, pos, layout, bscratch, hf, lf,
                                         1e-3, nt.DAMPING_POWER, 1e-3, 1e10, direction)
                    sink += direction[0]
                    break
        elif which == 10:  # full loss_at (logits + exps + penalty)
            lt, acc = ns.loss_at(dense, vt, rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, ex, ssum,
                                 eps)
            sink += lt
    return sink + acc


def _free_block(flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, alpha):
    """``pos: [K]`` of Newton's free block near the solution ``alpha`` (ELL layout): the
    rows with a positive dual or a gradient ``<= 1e-9``, in row order (the real sparsity
    pattern of a late iteration)."""
    values = np.empty(dev.shape)
    kn.gain_values_one(flat, slot_player, dev, values)
    lg = np.empty(base.shape[0])
    sigma = np.empty(base.shape[0])
    num = alpha.shape[0]
    mean, grad = np.empty(num), np.empty(num)
    ssum, eps = np.empty(eps_hat.shape[0]), np.empty(eps_hat.shape[0])
    kn.evaluate_one(rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, sigma, mean, ssum, eps, grad)
    keep = (alpha > 0.0) | (grad <= 1e-9)
    pos = np.full(num, -1, dtype=np.int64)
    pos[keep] = np.arange(int(keep.sum()))
    return pos


PARTS = ("normalise", "gains+transpose", "allocations", "logits", "exp", "accept (softmax+gains+grad)", "hessian",
         "cholesky", "bookkeeping", "certificate", "loss_at", "direction by blocks")


def _counts(args_list):
    """Per-game call counts and mean free block, from the Python source of Newton."""
    calls: Counter = Counter()
    blocks = []
    saved = {name: getattr(nt, name) for name in ("newton_core", "loss_at", "evaluate_exps", "cholesky_solve",
                                                  "damped_direction")}
    saved_kn = nt.hessian_vt_one
    saved_nb = nb.ce2_direction
    ell_name = ELL_HESSIAN.__name__
    saved_ell = getattr(kn, ell_name)

    def counted(name, fn):
        def wrapper(*a):
            calls[name] += 1
            return fn(*a)
        return wrapper

    def hess(*a):
        calls["hessian"] += 1
        blocks.append(a[6].shape[0])  # hess [n, n]
        return saved_kn(*a)

    def hess_ell(*a):
        calls["hessian"] += 1
        blocks.append(a[7].shape[0])  # hess [n, n]
        return saved_ell(*a)

    nt.newton_core = nt.newton_core.py_func
    nt.loss_at = counted("loss_at", saved["loss_at"])
    nt.evaluate_exps = counted("accept", saved["evaluate_exps"])
    nt.cholesky_solve = counted("cholesky", saved["cholesky_solve"])
    nt.damped_direction = nt.damped_direction.py_func  # calls cholesky_solve through the module
    def blocks_dir(*a):
        out = saved_nb(*a)
        if out[0] >= 0:  # -1: the dense Hessian and Cholesky follow (counted there)
            calls["direction by blocks"] += 1
            blocks.append(int((a[6] >= 0).sum()))  # pos [K]
        return out

    nt.hessian_vt_one = hess
    nb.ce2_direction = blocks_dir
    setattr(kn, ell_name, hess_ell)
    iters = []
    try:
        for a in args_list:
            flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts = a
            num_joint, width = dev.shape
            values = np.empty((num_joint, width))
            kn.gain_values_one(flat, slot_player, dev, values)
            alpha = np.zeros(player.shape[0])
            out = nt.newton_one.py_func(rows, values, player, base, eps_hat, eps_plus, rho,
                                        np.zeros(alpha.shape[0], dtype=bool), alpha, opts[0], int(opts[1]), opts[2],
                                        opts[3], opts[4], opts[5], opts[6], opts[7], opts[8], opts[9], opts[10],
                                        opts[11], int(opts[12]), np.empty(num_joint))
            iters.append(out[0])
    finally:
        for name, fn in saved.items():
            setattr(nt, name, fn)
        nt.hessian_vt_one = saved_kn
        nb.ce2_direction = saved_nb
        setattr(kn, ell_name, saved_ell)
    n = len(args_list)
    sizes = np.array(blocks, dtype=np.float64)
    print(f"free block per Hessian: mean {sizes.mean():.1f}, p10/p50/p90 {np.percentile(sizes, [10, 50, 90])}, "
          f"cube mean {np.mean(sizes ** 3) ** (1 / 3):.1f} (the size whose Cholesky costs the mean)")
    return {k: v / n for k, v in calls.items()}, float(np.mean(iters)), float(np.mean(blocks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concept", default="cce")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--games", type=int, default=256)
    parser.add_argument("--certificate", type=int, default=0, help="1: the tree's certificate runs its own gains pass")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((args.games, 2, 8, 8))
    small = sm.plan((8, 8), args.concept, "me", "auto", 1e-8, None, "auto", False)
    assert small is not None
    games = np.ascontiguousarray(raw.reshape(args.games, 2, 64))
    buf = np.empty(small.cuts[-1])
    ka = small.kernel_args
    _replay(games[:2], *small.packed_args, buf, 1)
    best = np.inf
    inner = max(1, 2000 // args.games)
    for _ in range(args.reps):
        c = time.process_time()
        _replay(games, *small.packed_args, buf, inner)
        best = min(best, (time.process_time() - c) / (args.games * inner) * 1e6)
    print(f"load average {os.getloadavg()}")
    print(f"_solve_small {args.concept} 8x8: {best:.2f} us/game (process CPU, best of {args.reps})")
    assert all(solvers.solve(g, args.concept, "me").status == "optimal" for g in raw[:16])
    # State at the solution for the parts.
    rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, opts, actions = ka
    dense = bool(kn.rows_are_identity(rows, player.shape[0]))
    states = []
    for g in games[:64]:
        flat, _, _ = kn.normalise_one(g, _TINY_NORM)
        alpha = np.zeros(player.shape[0])
        nt.solve_single(rows, slot_player, dev, player, flat, base, eps_hat, eps_plus, rho, alpha, opts)
        states.append((flat, alpha, _free_block(flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho,
                                                 alpha)))
    count_args = [(kn.normalise_one(g, _TINY_NORM)[0], rows, slot_player, dev, player, base, eps_hat, eps_plus, rho,
                   opts) for g in games[:32]]
    calls, iters, block = _counts(count_args)
    print(f"per game: {iters:.2f} iterations, calls {dict(calls)}, mean free block {block:.1f}")
    if not dense:
        print(f"ELL parts on the free block of the solution: mean n {np.mean([(s[2] >= 0).sum() for s in states[:16]]):.1f}")
    nblock = max(1, int(round(block)))
    per = {}
    reps = 2000
    for which, name in enumerate(PARTS):
        t_best = np.inf
        for _ in range(args.reps):
            c = time.process_time()
            for flat, alpha, pos in states[:16]:
                _part(which, reps, flat, rows, slot_player, dev, player, base, eps_hat, eps_plus, rho, alpha,
                      nblock, _TINY_NORM, dense, pos)
            t_best = min(t_best, (time.process_time() - c) / (16 * reps) * 1e6)
        per[name] = t_best
    mult = {"normalise": 1, "gains+transpose": 1, "allocations": 1, "logits": calls["loss_at"] + 1,
            "exp": calls["loss_at"] + 1, "accept (softmax+gains+grad)": calls["accept"] + 1,
            "hessian": calls.get("hessian", 0.0), "cholesky": calls.get("cholesky", 0.0), "bookkeeping": iters + 1,
            "certificate": args.certificate,
            "direction by blocks": calls.get("direction by blocks", 0.0)}
    total = 0.0
    print(f"{'part':30s} {'us/call':>8s} {'calls':>6s} {'us/game':>8s}")
    for name, m in mult.items():
        total += per[name] * m
        print(f"{name:30s} {per[name]:8.3f} {m:6.2f} {per[name] * m:8.2f}")
    print(f"{'sum of parts':30s} {'':8s} {'':6s} {total:8.2f}  (whole: {best:.2f})")
    print(f"loss_at alone {per['loss_at']:.3f} us")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
