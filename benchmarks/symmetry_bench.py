"""solve vs solve_batch and ``symmetry=`` off / on on evaluation-game ME-CEs, and the
per-pass cost of ``solvers.matrix_free.TiedGame`` (benchmarks/results/symmetry_batch.md).

Usage: ``python -m benchmarks.symmetry_bench [agents x tasks ...]`` (default 30x100 50x200).
Timings on a shared machine: read ratios of adjacent rows; each configuration runs in
order, then in reverse order.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import solvers
from solvers.evaluation_game import evaluation_game
from solvers.game import normalise
from solvers.matrix_free import MatrixFreeGame, TiedGame


def _load() -> str:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return fh.read().split()[0]


def end_to_end(agents: int, tasks: int) -> None:
    games = [evaluation_game(np.random.default_rng(s).normal(size=(agents, tasks)), "ptp") for s in (0, 1)]
    configs = [
        ("solve", lambda: [solvers.solve(g, "ce") for g in games]),
        ("solve sym", lambda: [solvers.solve(g, "ce", symmetry=[(1, 2)]) for g in games]),
        ("solve_batch", lambda: solvers.solve_batch(games, "ce")),
        ("solve_batch sym", lambda: solvers.solve_batch(games, "ce", symmetry=[(1, 2)])),
    ]
    ref = None
    for label, fn in configs + configs[::-1]:
        load = _load()
        t0 = time.perf_counter()
        sols = fn()
        dt = time.perf_counter() - t0
        ref = sols if ref is None else ref
        diff = max(float(np.abs(a.joint - b.joint).max()) for a, b in zip(sols, ref, strict=True))
        print(f"{agents}x{tasks} {label:16s} {dt:7.2f} s / 2 games  load {load}  {[s.method for s in sols]} "
              f"{[str(s.status) for s in sols]} iterations {[s.iterations for s in sols]}  |joint - first| {diff:.1e}",
              flush=True)


def per_pass(agents: int, tasks: int, reps: int = 5) -> None:
    g = normalise(evaluation_game(np.random.default_rng(0).normal(size=(agents, tasks)), "ptp")).payoffs
    full, tied = MatrixFreeGame(g, "ce"), TiedGame(g, "ce", ((1, 2),))
    v = tied.tie(np.random.default_rng(1).random(full.num_constraints) * 1e-3)
    sigma = np.exp(-tied.weighted_gains(v))
    sigma /= sigma.sum()
    mean, curv = full.expected_gains(sigma), np.zeros(3)
    times: dict[str, list[float]] = {"full": [], "tied": []}
    with threadpool_limits(1, "blas"):
        for _ in range(reps):
            for name, game in (("full", full), ("tied", tied)):
                t0 = time.perf_counter()
                game.hessian_vector(sigma, mean, curv, v)
                times[name].append(time.perf_counter() - t0)
    f, s = np.median(times["full"]), np.median(times["tied"])
    print(f"{agents}x{tasks} CE Hessian-vector product, median of {reps}: full {f * 1e3:.0f} ms, "
          f"tied {s * 1e3:.0f} ms, ratio {f / s:.2f}x  load {_load()}")


def main(argv: list[str]) -> None:
    sizes = [tuple(int(x) for x in arg.split("x")) for arg in argv] or [(30, 100), (50, 200)]
    solvers.solve(evaluation_game(np.random.default_rng(0).normal(size=(15, 20)), "ptp"), "ce")  # warm-up
    for agents, tasks in sizes:
        per_pass(agents, tasks)
    for agents, tasks in sizes:
        end_to_end(agents, tasks)


if __name__ == "__main__":
    main(sys.argv[1:])
