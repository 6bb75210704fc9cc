"""ME-CE ``solve_batch`` throughput of several source trees, side by side (issue #23, CE part).

``python -m benchmarks.ce_face_trees TREE [TREE ...] [--repeats R] [--inner I]`` runs, in
rotating order, one child process per tree (``PYTHONPATH=TREE``) that solves the same
random N(0, 1) games (4,096 8x8 and 64 32x32 ME-CE, tol 1e-8) ``--inner`` times after a
warm-up and reports its best wall-clock time, the statuses, the games that took the face
stage and the face-stage seconds, and the best process-CPU time of
``refine_batch(parallel=False)`` on the same games (one thread: the figure that load
distorts least). Prints games/s per tree (best over the repeats), the ratio to the first
tree, the largest joint difference to the second tree, and the load average (1 min)
before each child.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CASES = (("8x8", 4096), ("32x32", 64))

CHILD = r"""
import collections, json, sys, time
import numpy as np
from solvers import Selection, refine_batch, solve_batch
from solvers.game import normalise_batch
from solvers.selection import resolve_selection
cases, inner, out_dir = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
res = {}
for label, num in cases:
    shape = tuple(int(n) for n in label.split("x"))
    games = np.random.default_rng(2026).standard_normal((num, 2) + shape)
    solve_batch(games[:8], "ce")
    best = float("inf")
    for _ in range(inner):
        t = time.perf_counter()
        sols = solve_batch(games, "ce")
        best = min(best, time.perf_counter() - t)
    sols = list(sols)
    status = collections.Counter(str(getattr(s.status, "value", s.status)) for s in sols)
    face = sum(bool(s.info.get("face", False)) for s in sols) if hasattr(sols[0], "info") else -1
    face_s = sum(float(getattr(s, "timings", {}).get("face", 0.0)) for s in sols)
    np.save(f"{out_dir}/{label}.npy", np.stack([np.asarray(s.joint) for s in sols]))
    # One thread, process CPU seconds: what other processes' load inflates least.
    norm = normalise_batch(games)
    params = resolve_selection(Selection.me(), type(norm)(norm.payoffs[0], norm.scale[0], norm.offset[0]))
    cpu = cpu_face = float("inf")
    for _ in range(inner):
        t = time.process_time()
        out = refine_batch(norm.payoffs, "ce", params, parallel=False)
        cpu = min(cpu, time.process_time() - t)
        cpu_face = min(cpu_face, out.timings.get("face", 0.0))
    res[label] = {"rate": num / best, "status": dict(status), "face": face, "face_s": face_s, "games": num,
                  "cpu_rate": num / cpu, "cpu_face_s": cpu_face}
print("RESULT " + json.dumps(res))
"""


def run_tree(tree: str, inner: int, out_dir: str) -> dict:
    """One child process on ``tree``; its joints go to ``out_dir``."""
    env = dict(os.environ, PYTHONPATH=tree)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(CASES), str(inner), out_dir], env=env,
                          cwd=tree, capture_output=True, text=True, check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--repeats", type=int, default=3, help="child runs per tree (rotating order)")
    parser.add_argument("--inner", type=int, default=2, help="timings per child (best kept)")
    args = parser.parse_args(argv)
    trees = args.trees
    best: dict[str, dict] = {t: {} for t in trees}
    loads: list[float] = []
    dirs = {t: tempfile.mkdtemp(prefix="ce_face_") for t in trees}
    for rep in range(args.repeats):
        shift = rep % len(trees)
        for tree in trees[shift:] + trees[:shift]:
            loads.append(os.getloadavg()[0])
            for case, res in run_tree(tree, args.inner, dirs[tree]).items():
                cur = best[tree].setdefault(case, res)
                cur["rate"] = max(cur["rate"], res["rate"])
                cur["face_s"] = min(cur["face_s"], res["face_s"])
                cur["cpu_rate"] = max(cur["cpu_rate"], res["cpu_rate"])
                cur["cpu_face_s"] = min(cur["cpu_face_s"], res["cpu_face_s"])
    loads.append(os.getloadavg()[0])
    print(f"load average (1 min) before each child: {', '.join(f'{x:.2f}' for x in loads)}")
    print("| case | tree | games/s | vs first | 1-thread CPU games/s | vs first | statuses | face games "
          "| face s (wall, 2 thr) | face s (1 thr) | max joint diff vs second |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case, _ in CASES:
        ref = np.load(f"{dirs[trees[1 if len(trees) > 1 else 0]]}/{case}.npy")
        for tree in trees:
            r = best[tree][case]
            diff = float(np.max(np.abs(np.load(f"{dirs[tree]}/{case}.npy").reshape(ref.shape) - ref)))
            print(f"| {case} ME-CE x{r['games']} | {tree} | {r['rate']:.0f} | "
                  f"{r['rate'] / best[trees[0]][case]['rate']:.2f} | {r['cpu_rate']:.0f} | "
                  f"{r['cpu_rate'] / best[trees[0]][case]['cpu_rate']:.2f} | {r['status']} | {r['face']} | "
                  f"{r['face_s']:.3f} | {r['cpu_face_s']:.3f} | {diff:.1e} |")
    return {"best": best, "load": loads}


if __name__ == "__main__":
    main()
