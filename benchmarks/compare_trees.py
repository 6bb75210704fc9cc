"""Side-by-side batch throughput of two source trees in one run (ratios on a shared machine).

``python -m benchmarks.compare_trees TREE_A TREE_B [--repeats R]`` runs, alternating (ABBA), a
child process per tree (``PYTHONPATH=TREE``) that warms the kernels up and reports the
best of ``--inner`` timings of ``solve_batch`` and ``refine_batch`` (wall clock, all
threads) and of ``refine_batch(parallel=False)`` (process CPU seconds, one thread) on
4,096 8x8 ME-CCE and ME-CE games and 16 32x32 ME-CE games; prints games/s per tree (best
over the repeats), the ratios B/A and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = (("8x8", "cce", 4096), ("8x8", "ce", 4096), ("32x32", "ce", 16))

CALLS = ("solve_batch", "refine_batch", "refine_serial_cpu")

CHILD = r"""
import json, sys, time
import numpy as np
from benchmarks.games import l2_invariant_games
from solvers import Selection, refine_batch, solve_batch
from solvers.game import normalise_batch
from solvers.selection import resolve_selection
cases, inner = json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for label, concept, num in cases:
    shape = tuple(int(n) for n in label.split("x"))
    games = l2_invariant_games(np.random.default_rng(2026), num, shape)
    norm = normalise_batch(games)
    params = resolve_selection(Selection.me(), type(norm)(norm.payoffs[0], norm.scale[0], norm.offset[0]))
    solve_batch(games[:8], concept)
    refine_batch(norm.payoffs[:8], concept, params)
    best_s = best_r = float("inf")
    for _ in range(inner):
        t = time.perf_counter()
        sols = solve_batch(games, concept)
        best_s = min(best_s, time.perf_counter() - t)
        t = time.perf_counter()
        refine_batch(norm.payoffs, concept, params)
        best_r = min(best_r, time.perf_counter() - t)
    # One thread: process CPU seconds, which other processes' load inflates far less.
    best_c = float("inf")
    for _ in range(inner):
        t = time.process_time()
        refine_batch(norm.payoffs, concept, params, parallel=False)
        best_c = min(best_c, time.process_time() - t)
    optimal = sum(s.status.value == "optimal" for s in sols)
    out[f"{label} {concept}"] = {"solve_batch": num / best_s, "refine_batch": num / best_r,
                                 "refine_serial_cpu": num / best_c, "optimal": optimal, "games": num}
print("RESULT " + json.dumps(out))
"""


def run_tree(tree: str, inner: int, cases=CASES) -> dict:
    """One child process on ``tree``; returns ``{case: {call: games/s, ...}}``."""
    env = dict(os.environ, PYTHONPATH=tree)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases), str(inner)], env=env,
                          cwd=tree, capture_output=True, text=True, check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree_a")
    parser.add_argument("tree_b")
    parser.add_argument("--repeats", type=int, default=3, help="alternating child runs per tree")
    parser.add_argument("--inner", type=int, default=3, help="timings per child (best kept)")
    args = parser.parse_args(argv)
    best: dict[str, dict] = {args.tree_a: {}, args.tree_b: {}}
    loads = [os.getloadavg()]
    for rep in range(args.repeats):
        # A, B then B, A: a load that drifts during the run favours neither tree.
        for tree in (args.tree_a, args.tree_b)[:: 1 if rep % 2 == 0 else -1]:
            for case, res in run_tree(tree, args.inner).items():
                cur = best[tree].setdefault(case, dict(res))
                for call in CALLS:
                    cur[call] = max(cur[call], res[call])
                cur["optimal"] = min(cur["optimal"], res["optimal"])
            loads.append(os.getloadavg())
    print(f"load average (1 min) during the runs: {', '.join(f'{x[0]:.2f}' for x in loads)}")
    a, b = best[args.tree_a], best[args.tree_b]
    print(f"| case | call | A games/s | B games/s | B/A | optimal A, B |\nA = {args.tree_a}, B = {args.tree_b}")
    for case in a:
        for call in CALLS:
            print(f"| {case} | {call} | {a[case][call]:.0f} | {b[case][call]:.0f} | "
                  f"{b[case][call] / a[case][call]:.2f} | {a[case]['optimal']}, {b[case]['optimal']} of {a[case]['games']} |")
    return {"a": a, "b": b, "load": loads}


if __name__ == "__main__":
    main()
