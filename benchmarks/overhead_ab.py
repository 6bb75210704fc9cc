"""Side-by-side per-call cost of two checkouts of the solvers (issue #23's overhead targets).

Runs the same calls in fresh processes, alternating the two trees round by round (each
tree its own Numba cache, warmed up first), and reports the best wall-clock figure and
the least CPU time (``time.thread_time`` for single calls, ``time.process_time`` for a
batch: CPU time does not count the time other processes take the core, the figure to
compare on a loaded machine).

Modes: ``single`` (``solvers.solve`` on [2, 8, 8] N(0, 1) games, ME-CCE, 2,000 calls a
repeat), ``batch-cce`` (``solvers.solve_batch`` on 4,096 such games), ``batch-ce``
(512 games, ME-CE), ``kernel-cce`` / ``kernel-ce`` (the compiled part of ``solve`` alone,
``solvers.small._solve_small`` replayed on the arguments of 256 8x8 games: the Newton
kernel's own cost). Every result is checked "optimal".

    python benchmarks/overhead_ab.py --base /work/wt/base8d --tree . single batch-cce
    python benchmarks/overhead_ab.py --base /work/wt/base8d --tree . --threads 1 batch-cce

``--threads N`` runs both trees with ``NUMBA_NUM_THREADS=N`` (strong scaling side by side).

Results: benchmarks/results/solvers_suite_overhead.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r'''
import sys, time, json
import numpy as np
import solvers
mode, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
out = []
if mode == "single":
    games = rng.standard_normal((64, 2, 8, 8))
    for g in games[:8]:
        solvers.solve(g, "cce", "me")
    for _ in range(reps):
        t, c = time.perf_counter(), time.thread_time()
        for i in range(n):
            sol = solvers.solve(games[i % 64], "cce", "me")
        out.append(((time.perf_counter() - t) / n * 1e6, (time.thread_time() - c) / n * 1e6))
    assert sol.status == "optimal"
elif mode.startswith("kernel"):
    import solvers.small as sm
    games = rng.standard_normal((n, 2, 8, 8))
    calls, real = [], sm._solve_small
    sm._solve_small = lambda *a: calls.append(a) or real(*a)
    for g in games:
        assert solvers.solve(g, mode.split("-")[1], "me").status == "optimal"
    sm._solve_small = real
    for _ in range(reps):
        c = time.thread_time()
        for a in calls:
            real(*a)
        out.append((0.0, (time.thread_time() - c) / n * 1e6))
else:
    concept = mode.split("-")[1]
    games = rng.standard_normal((n, 2, 8, 8))
    solvers.solve_batch(games[:64], concept, "me")
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        batch = solvers.solve_batch(games, concept, "me")
        out.append((n / (time.perf_counter() - t), (time.process_time() - c) / n * 1e6))
    assert all(str(s.status) == "optimal" for s in batch)
print(json.dumps(out))
'''
ARGS = {"single": ("2000", "5"), "batch-cce": ("4096", "3"), "batch-ce": ("512", "2"),
        "kernel-cce": ("256", "20"), "kernel-ce": ("256", "5")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="checkout of the baseline (e.g. commit 8d89437)")
    parser.add_argument("--tree", default=".", help="checkout to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="NUMBA_NUM_THREADS for both trees")
    parser.add_argument("modes", nargs="*", default=["single", "batch-cce"])
    args = parser.parse_args()
    trees = {"base": os.path.abspath(args.base), "tree": os.path.abspath(args.tree)}
    print("load average", os.getloadavg(), "NUMBA_NUM_THREADS", args.threads or "default")
    for mode in args.modes:
        found: dict[str, list] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, path in trees.items():
                env = dict(os.environ, PYTHONPATH=path)
                if args.threads is not None:
                    env["NUMBA_NUM_THREADS"] = str(args.threads)
                proc = subprocess.run([sys.executable, "-c", CHILD, mode, *ARGS[mode]], env=env, cwd=path,
                                      capture_output=True, text=True, check=False)
                if proc.returncode:
                    raise RuntimeError(f"{name} {mode}: {proc.stderr[-2000:]}")
                found[name] += json.loads(proc.stdout.strip().splitlines()[-1])
        for name, runs in found.items():
            wall = [w for w, _ in runs]
            cpu = min(c for _, c in runs)
            if mode.startswith("kernel"):
                print(f"{mode:9s} {name:4s} CPU {cpu:6.1f} us/game (compiled solve alone)")
            elif mode == "single":
                print(f"{mode:9s} {name:4s} wall best {min(wall):8.1f} us/call  CPU {cpu:6.1f} us/call")
            else:
                print(f"{mode:9s} {name:4s} wall best {max(wall):8.0f} games/s  CPU {cpu:6.1f} us/game")
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
