"""The Python around a small game's compiled solve, side by side for several checkouts.

For each tree, in fresh processes alternating tree by tree: ``solvers.solve`` on [2, 8, 8]
N(0, 1) games (ME-CCE, tol 1e-8, 64 games cycled, 1,000 calls a repeat) and, where the
tree has ``solvers.small._solve_small``, that compiled call alone replayed on the same
games' arguments (its dispatch included), alternating repeat by repeat with ``solve`` in
the same process. ``solve - kernel`` is the per-call Python (issue #23): the difference of
the least CPU times, and the median over the paired repeats (steadier on a loaded
machine). CPU time is ``time.thread_time`` (not counting other processes' time on the
core).

    python benchmarks/single_overhead.py /work/wt/base8d /work/main . --rounds 3

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
n, reps = int(sys.argv[1]), int(sys.argv[2])
games = np.random.default_rng(0).standard_normal((64, 2, 8, 8))
sm = getattr(solvers, "small", None)
calls = []
if sm is not None and hasattr(sm, "_solve_small"):
    real = sm._solve_small
    sm._solve_small = lambda *a: calls.append(a) or real(*a)
    for g in games:
        assert solvers.solve(g, "cce", "me").status == "optimal"
    sm._solve_small = real
for g in games[:8]:
    solvers.solve(g, "cce", "me")
solve_cpu, kernel_cpu = [], []
for _ in range(reps):
    c = time.thread_time()
    for i in range(n):
        sol = solvers.solve(games[i % 64], "cce", "me")
    solve_cpu.append((time.thread_time() - c) / n * 1e6)
    if calls:
        c = time.thread_time()
        for i in range(n):
            real(*calls[i % 64])
        kernel_cpu.append((time.thread_time() - c) / n * 1e6)
assert sol.status == "optimal"
print(json.dumps([solve_cpu, kernel_cpu]))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="checkouts to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    trees = [os.path.abspath(t) for t in args.trees]
    print("load average", os.getloadavg())
    found: dict[str, tuple[list, list]] = {t: ([], []) for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(args.calls), str(args.reps)], cwd=tree,
                                  env=dict(os.environ, PYTHONPATH=tree), capture_output=True, text=True, check=False)
            if proc.returncode:
                raise RuntimeError(f"{tree}: {proc.stderr[-2000:]}")
            solve_cpu, kernel_cpu = json.loads(proc.stdout.strip().splitlines()[-1])
            found[tree][0].extend(solve_cpu)
            found[tree][1].extend(kernel_cpu)
    for tree, (solve_cpu, kernel_cpu) in found.items():
        line = f"{tree:28s} solve {min(solve_cpu):6.1f} us/call"
        if kernel_cpu:
            paired = sorted(s - k for s, k in zip(solve_cpu, kernel_cpu, strict=True))
            line += (f"  _solve_small {min(kernel_cpu):6.1f}  Python: difference of minima "
                     f"{min(solve_cpu) - min(kernel_cpu):5.1f}, median of paired repeats {paired[len(paired) // 2]:5.1f}")
        print(line)
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
