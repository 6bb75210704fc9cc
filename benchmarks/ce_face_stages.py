"""Per-stage counts and CPU of ``solve_batch`` 8x8 ME-CE in several checkouts, side by side.

For each tree (a fresh process with that tree on ``PYTHONPATH``, its own Numba cache,
warmed up first) and each seed: how many games end after the first Newton pass, how many
take the face stage, how many of those run the facial-reduction LP
(``support_face`` or ``minimal_face`` where ``refine_batch`` calls it, counted by wrapping it) and how many faces were certified
without it (``solvers.face_guess``), the Newton iterations, the statuses, ``solve_batch``'s
process CPU per game (both threads) and its wall-clock throughput (best of ``--repeats``),
and the largest L1 distance of each game's joint from the first tree's.

    python benchmarks/ce_face_stages.py /work/wt/base8d /work/main . --games 4096 --seeds 0 2026

Results: benchmarks/results/solvers_suite_ce_face.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r'''
import sys, time, json, os
from collections import Counter
import numpy as np
import solvers
try:
    from solvers import refine as mod
except ImportError:  # 8d89437: refine_batch lives in solvers.api
    from solvers import api as mod
num, seed, reps, shape, out_path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
shape = tuple(int(s) for s in shape.split("x"))
games = np.random.default_rng(seed).standard_normal((num, 2) + shape)
calls = [0]
real = getattr(mod, "support_face", None) or getattr(mod, "minimal_face")
def counted(problem, *args, **kwargs):
    calls[0] += 1
    return real(problem, *args, **kwargs)
setattr(mod, real.__name__, counted)
solvers.solve_batch(games[:min(num, 64)], "ce", "me")
best, cpu = 0.0, float("inf")
for _ in range(reps):
    calls[0] = 0
    load = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    batch = solvers.solve_batch(games, "ce", "me")
    best = max(best, num / (time.perf_counter() - t))
    cpu = min(cpu, (time.process_time() - c) / num * 1e6)
methods = Counter(s.method for s in batch)
face = sum("face" in s.method for s in batch)
np.save(out_path, np.stack([np.asarray(s.joint).ravel() for s in batch]))
print(json.dumps({"games_s": best, "cpu_us": cpu, "methods": dict(methods), "face": face, "lp": calls[0],
                  "iterations": int(sum(s.iterations for s in batch)), "load": load,
                  "status": dict(Counter(str(s.status) for s in batch))}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--games", type=int, default=4096)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shape", default="8x8")
    args = parser.parse_args()
    print("load average", os.getloadavg())
    print("| seed | tree | games/s (wall, best) | CPU us/game | after Newton | face stage | face LPs | "
          "faces without LP | iterations | statuses | max L1 vs first tree |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            first = None
            for i, tree in enumerate(args.trees):
                path = os.path.abspath(tree)
                out = os.path.join(tmp, f"{seed}_{i}.npy")
                proc = subprocess.run([sys.executable, "-c", CHILD, str(args.games), str(seed), str(args.repeats),
                                       args.shape, out], env=dict(os.environ, PYTHONPATH=path), cwd=path,
                                      capture_output=True, text=True, check=False)
                if proc.returncode:
                    raise RuntimeError(f"{tree}: {proc.stderr[-2000:]}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                joints = np.load(out)
                first = joints if first is None else first
                diff = float(np.abs(joints - first).sum(axis=1).max())
                newton_only = r["methods"].get("newton", 0)
                print(f"| {seed} | {tree} | {r['games_s']:,.0f} | {r['cpu_us']:.0f} | {newton_only} | {r['face']} | "
                      f"{r['lp']} | {r['face'] - r['lp']} | {r['iterations']:,} | {r['status']} | {diff:.1e} |")
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
