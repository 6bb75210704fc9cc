"""Evaluation games at leaderboard size: the matrix-free path against the previous default.

Agent-vs-task games (DESIGN §13) ``[3, T, A, A]`` from random scores, ME-CE and ME-CCE,
solved by ``solvers.solve`` (``method="auto"``, which takes "newton-cg" on large games)
and by the previous default path (``method="auto"`` with ``api.auto_matrix_free`` off:
the ELL gain layout), each in its own subprocess (peak RSS per run) under a time cap.
Also 2-player 256x256 CE and 5-player 8^5 CE by default. polarix is reported when it is
importable.

    python -m benchmarks.eval_suite [--sizes 8x10,20x30,...] [--cap 120] [--blas-threads 1]

Writes ``benchmarks/results/eval_suite.json`` and ``.md`` atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = "8x10,20x30,30x100,50x200"


def eval_game(agents: int, tasks: int, seed: int = 0) -> np.ndarray:
    """``[3, T, A, A]``: players [task, agent, agent]; scores normalised per task by
    peak-to-peak; task payoff ``|s_t(a1) - s_t(a2)|``, agents ``+-(s_t(a1) - s_t(a2))``."""
    from solvers.evaluation_game import evaluation_game

    return evaluation_game(np.random.default_rng(seed).normal(size=(agents, tasks)), "ptp")


def _game(spec: str) -> np.ndarray:
    kind, _, rest = spec.partition(":")
    if kind == "eval":
        agents, tasks = (int(x) for x in rest.split("x"))
        return eval_game(agents, tasks)
    shape = tuple(int(x) for x in rest.split("x"))
    return np.random.default_rng(0).normal(size=(len(shape),) + shape)


def _worker(spec: str, concept: str, path: str, joint_file: str) -> None:
    """One solve in this process; prints a JSON line."""
    import solvers
    from solvers import api

    if path == "previous":
        api.auto_matrix_free = lambda *args, **kwargs: False
    solvers.solve(eval_game(3, 3), concept, "me")  # compile / load the Numba caches
    game = _game(spec)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    sol = solvers.solve(game, concept, "me")
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    np.save(joint_file, sol.joint)
    print(json.dumps({
        "seconds": wall, "peak_rss_gib": rss / 2**30, "rss_before_gib": rss0 / 2**30,
        "status": str(sol.status.value if hasattr(sol.status, "value") else sol.status),
        "method": sol.method, "iterations": sol.iterations,
        "cg_iterations": sol.info.get("cg_iterations"),
        "gap_normalised": float(np.max(sol.gaps * sol.scale)),
        "violation": sol.info.get("violation"), "kkt": sol.info.get("kkt"),
        "duality_gap": sol.duality_gap, "duals": int(sol.duals.size), "joint_actions": int(sol.joint.size),
    }))


def fista_matrix_free(game: np.ndarray, concept: str, tol: float = 1e-8, max_iter: int = 20000,
                      time_cap: float = 300.0) -> dict:
    """FISTA (backtracking, adaptive restart) on the ME dual with the GEMM passes of
    ``solvers.matrix_free``: the first-order alternative to "newton-cg", measured only.
    Runs the library's ``solvers.newton_cg._fista`` and counts its GEMM passes (2 per
    ``evaluate``, 1 per ``loss``)."""
    from solvers.game import normalise_fast as _normalise_fast
    from solvers.matrix_free import MatrixFreeGame
    from solvers.newton_cg import _Dual, _fista
    from solvers.selection import as_selection
    from solvers.selection import resolve_cached as _resolve_cached

    class _CountingDual(_Dual):
        passes = 0

        def evaluate(self, alpha, lg=None):
            self.passes += 2
            return super().evaluate(alpha, lg)

        def loss(self, alpha):
            self.passes += 1
            return super().loss(alpha)

    t0 = time.perf_counter()
    norm = _normalise_fast(game)
    params = _resolve_cached(as_selection("me"), norm)
    dual = _CountingDual(MatrixFreeGame(norm.payoffs, concept), params.base_logits, params.eps_hat,
                         params.eps_plus, float(params.rho))
    _, it, certified = _fista(dual, np.zeros(dual.game.num_constraints), tol, max_iter, deadline=t0 + time_cap)
    return {"seconds": time.perf_counter() - t0, "status": "optimal" if certified else "max_iter",
            "iterations": it, "gemm_passes": dual.passes}


def _run(spec: str, concept: str, path: str, cap: float, blas_threads: int | None, joint_file: str) -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    if blas_threads:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(blas_threads)
    cmd = [sys.executable, "-m", "benchmarks.eval_suite", "--worker", spec, concept, path, joint_file]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return {"status": f"not done in {cap:.0f} s", "seconds": None}
    if out.returncode != 0:
        return {"status": f"error rc={out.returncode}: {out.stderr.strip().splitlines()[-1:]}",
                "seconds": time.perf_counter() - t0}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=SIZES, help="agents x tasks, comma-separated")
    parser.add_argument("--extra", default="shape:256x256,shape:8x8x8x8x8", help="other games (CE only)")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--new-cap", type=float, default=600.0, help="seconds per run of the new path")
    parser.add_argument("--blas-threads", type=int, default=1, help="OPENBLAS_NUM_THREADS (0: leave)")
    parser.add_argument("--skip-previous", default="", help="specs whose previous path is not run")
    parser.add_argument("--concepts", default="ce,cce")
    parser.add_argument("--out", default="eval_suite")
    args = parser.parse_args(argv)
    try:
        import polarix  # noqa: F401

        polarix_note = "polarix is importable but not benchmarked here"
    except ImportError:
        polarix_note = "polarix is not installed: no ce_maxent comparison"
    specs = [(f"eval:{s}", c) for s in args.sizes.split(",") if s for c in args.concepts.split(",")]
    specs += [(s, "ce") for s in args.extra.split(",") if s]
    skip = set(filter(None, args.skip_previous.split(",")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, concept in specs:
            new_file = str(Path(tmp) / "new.npy")
            old_file = str(Path(tmp) / "old.npy")
            new = _run(spec, concept, "new", args.new_cap, args.blas_threads or None, new_file)
            old = ({"status": "not run"} if spec in skip else
                   _run(spec, concept, "previous", args.cap, args.blas_threads or None, old_file))
            row = {"game": spec, "concept": concept, "new": new, "previous": old}
            if new.get("seconds") and old.get("seconds") and "not" not in str(old.get("status")):
                row["speedup"] = old["seconds"] / new["seconds"]
                if Path(new_file).exists() and Path(old_file).exists():
                    row["joint_max_diff"] = float(np.abs(np.load(new_file) - np.load(old_file)).max())
            for f in (new_file, old_file):
                Path(f).unlink(missing_ok=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "blas_threads": args.blas_threads, "cap_previous_s": args.cap, "cap_new_s": args.new_cap,
            "polarix": polarix_note, "tol": 1e-8, "selection": "me"}
    from benchmarks.results import markdown_table, write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / f"{args.out}.json", {"meta": meta, "rows": rows})
    table = []
    for r in rows:
        n, o = r["new"], r["previous"]
        table.append({
            "game": r["game"], "concept": r["concept"], "method": n.get("method", ""), "status": n.get("status"),
            "s": n.get("seconds") if n.get("seconds") is not None else float("nan"),
            "peak GiB": n.get("peak_rss_gib", float("nan")), "gap (norm.)": n.get("gap_normalised", float("nan")),
            "iters/CG": f"{n.get('iterations', '')}/{n.get('cg_iterations', '')}",
            "previous": o.get("method", o.get("status")),
            "previous s": o.get("seconds") if o.get("seconds") is not None else float("nan"),
            "previous GiB": o.get("peak_rss_gib", float("nan")),
            "speedup": r.get("speedup", float("nan")), "|joint diff|": r.get("joint_max_diff", float("nan")),
        })
    text = (f"# Evaluation games at leaderboard size\n\n`python -m benchmarks.eval_suite` "
            f"({meta['machine']}, {meta['cpus']} CPUs shared with other jobs, load average at the end "
            f"{tuple(round(x, 1) for x in meta['load_average'])}; OPENBLAS_NUM_THREADS={args.blas_threads}). "
            f"ME selection, tol 1e-8; each run in its own process (peak RSS includes the interpreter "
            f"and Numba, ~0.15-0.3 GiB); previous default path capped at {args.cap:.0f} s, new at "
            f"{args.new_cap:.0f} s. {polarix_note}.\n\n" + markdown_table(table))
    write_text_atomic(RESULTS / f"{args.out}.md", text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:6])
    elif len(sys.argv) > 1 and sys.argv[1] == "--fista":
        # --fista SPEC CONCEPT CAP: FISTA with GEMM passes against newton-cg, one process.
        import solvers

        spec, concept, cap = sys.argv[2], sys.argv[3], float(sys.argv[4])
        t_start = time.perf_counter()
        sol = solvers.solve(_game(spec), concept, "me", method="newton-cg")
        newton_s = time.perf_counter() - t_start
        print(json.dumps({"game": spec, "concept": concept, "newton_cg_s": newton_s, "newton_cg_status": sol.status.value,
                          "newton_cg_iterations": sol.iterations, "cg_iterations": sol.info["cg_iterations"],
                          "fista": fista_matrix_free(_game(spec), concept, time_cap=cap)}))
    else:
        main()
