"""Evaluation games at leaderboard size: the matrix-free path against the previous default.

Agent-vs-task games (DESIGN §13) ``[3, T, A, A]`` from random scores, ME-CE and ME-CCE,
solved by ``solvers.solve`` (``method="auto"``, which takes "newton-cg" on large games)
and by the previous default path (``method="auto"`` with ``api.auto_matrix_free`` off:
the ELL gain layout), each in its own subprocess (peak RSS per run) under a time cap.
Also 2-player 256x256 CE and 5-player 8^5 CE by default.

Where polarix (DeepMind, PyPI) is importable, its ``ce_maxent`` (Adam on the ME-CE dual,
JAX, its defaults: tol 1e-5, l1 weight decay 1e-6, 100,000 iterations at most, terminal
test every 1,000) solves the same ME-CE games, built by ``polarix.agent_vs_task_game``
from the same score matrix (players [task, agent, agent], "ptp"), in its own subprocess
under ``--polarix-cap``; ours is solved again in another. Reported: both wall times, its
joint's CE gap in our normalised units (``normalised_ce_gap``), the L1 / max-abs distance
and entropy difference to our joint (``compare_joints``). polarix is in the ``compare``
extra (``pip install -e ".[compare]"``), not in the default set-up; it brings altair 5, pandas, chex and distrax, which needs ``jax>=0.7`` and
``tfp-nightly`` (``pip check`` clean with this venv's jax 0.10.2).

    python -m benchmarks.eval_suite [--sizes 8x10,20x30,...] [--cap 120] [--blas-threads 1]
    python -m benchmarks.eval_suite --polarix-only [--polarix-sizes 8x10,20x30,30x100]

Writes ``benchmarks/results/eval_suite.json`` and ``.md`` atomically (``--polarix-only``:
``eval_suite_polarix.{json,md}``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
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
POLARIX_SIZES = "8x10,20x30,30x100"
#: ``polarix.ce_maxent``'s default tolerance (its terminal test: CE gap and the norm of
#: the projected dual gradient both below it, in its ptp-normalised payoff units).
POLARIX_TOL = 1e-5


def eval_scores(agents: int, tasks: int, seed: int = 0) -> np.ndarray:
    """``[A, T]`` standard normal scores (agents as rows)."""
    return np.random.default_rng(seed).normal(size=(agents, tasks))


def eval_game(agents: int, tasks: int, seed: int = 0) -> np.ndarray:
    """``[3, T, A, A]``: players [task, agent, agent]; scores normalised per task by
    peak-to-peak; task payoff ``|s_t(a1) - s_t(a2)|``, agents ``+-(s_t(a1) - s_t(a2))``."""
    from solvers.evaluation_game import evaluation_game

    return evaluation_game(eval_scores(agents, tasks, seed), "ptp")


def ce_gaps(game: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """``[N]`` each player's CE gap at ``joint`` in payoff units:
    ``max(0, max_{a, a'} E[1{a_p = a} (G_p(a', a_-p) - G_p(a))])`` (``conditional_gains``)."""
    from solvers.ratings import conditional_gains

    return np.array([max(0.0, float(conditional_gains(game, joint, p).max())) for p in range(game.shape[0])])


def normalised_ce_gap(game: np.ndarray, joint: np.ndarray) -> float:
    """``max_p gap_p * s_p``: the CE gap in the normalised units of ``Solution.normalised_gap``."""
    from solvers.game import normalise

    return float(np.max(ce_gaps(game, joint) * normalise(game).scale))


def entropy(joint: np.ndarray) -> float:
    """Shannon entropy (nats) of a distribution."""
    p = np.asarray(joint, dtype=np.float64).reshape(-1)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def compare_joints(game: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Gap of each joint (normalised units), L1 and max-abs distance, entropy difference.

    ``theirs`` (e.g. polarix's float32 joint) is cast to float64 and renormalised to sum
    1 first; its sum defect is reported as ``theirs_sum_defect``."""
    theirs = np.asarray(theirs, dtype=np.float64)
    total = float(theirs.sum())
    theirs = theirs / total
    ours = np.asarray(ours, dtype=np.float64)
    if ours.shape != theirs.shape or ours.shape != game.shape[1:]:
        raise ValueError(f"joints must have the game's action shape {game.shape[1:]}, "
                         f"got {ours.shape} and {theirs.shape}")
    return {
        "theirs_gap_normalised": normalised_ce_gap(game, theirs),
        "theirs_gap_payoff": float(ce_gaps(game, theirs).max()),
        "ours_gap_normalised": normalised_ce_gap(game, ours),
        "l1": float(np.abs(theirs - ours).sum()), "max_abs": float(np.abs(theirs - ours).max()),
        "entropy_theirs": entropy(theirs), "entropy_ours": entropy(ours),
        "entropy_diff": entropy(theirs) - entropy(ours), "theirs_sum_defect": total - 1.0,
    }


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


def _subprocess(worker_args: list[str], cap: float, blas_threads: int | None) -> dict:
    """``python -m benchmarks.eval_suite WORKER_ARGS`` under ``cap`` seconds; its last JSON line."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    if blas_threads:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(blas_threads)
    cmd = [sys.executable, "-m", "benchmarks.eval_suite", *worker_args]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return {"status": f"not finished after {cap:.0f} s", "seconds": None}
    if out.returncode != 0:
        return {"status": f"error rc={out.returncode}: {out.stderr.strip().splitlines()[-1:]}",
                "seconds": time.perf_counter() - t0}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run(spec: str, concept: str, path: str, cap: float, blas_threads: int | None, joint_file: str) -> dict:
    out = _subprocess(["--worker", spec, concept, path, joint_file], cap, blas_threads)
    if str(out.get("status", "")).startswith("not finished"):
        out["status"] = f"not done in {cap:.0f} s"
    return out


def _polarix_worker(size: str, joint_file: str, tol: str, max_iter: str) -> None:
    """polarix ``ce_maxent`` on ``eval_game(size)``'s scores in this process; prints a JSON line.

    Timed: building its game and ``polarix.solve`` (JIT compilation included; the first
    step, compilation and one Adam step, is also reported alone)."""
    import jax
    import polarix

    agents, tasks = (int(x) for x in size.split("x"))
    scores = eval_scores(agents, tasks)
    count = {"iterations": 0, "first_step_s": None}

    def counted(game):  # ce_maxent, counting its steps (polarix.solve drives it by next/send)
        gen = polarix.ce_maxent(game, tol=float(tol))
        value = next(gen)
        while True:
            count["iterations"] += 1
            if count["first_step_s"] is None:
                np.asarray(value.joint)  # wait for the asynchronous dispatch
                count["first_step_s"] = time.perf_counter() - t0
            value = gen.send((yield value))

    t0 = time.perf_counter()
    game = polarix.agent_vs_task_game(agents=[f"a{i}" for i in range(agents)], tasks=[f"t{j}" for j in range(tasks)],
                                      agent_vs_task=jax.numpy.asarray(scores), normalizer="ptp")
    result = polarix.solve(game, counted, max_num_iterations=int(max_iter), disable_progress_bar=True)
    joint = np.asarray(result.joint)
    wall = time.perf_counter() - t0
    np.save(joint_file, joint)
    payoff_diff = float(np.abs(np.asarray(game.payoffs, dtype=np.float64) - eval_game(agents, tasks)).max())
    print(json.dumps({
        "seconds": wall, "first_step_s": count["first_step_s"], "iterations": count["iterations"],
        "terminal": bool(result.is_terminal()), "status": "terminal" if result.is_terminal() else "max_iter",
        "own_ce_gap": float(result.extra["ce_gap"]), "residual_norm": float(result.extra["residual_norm"]),
        "dtype": str(joint.dtype), "payoff_max_diff": payoff_diff, "symmetry_groups": list(game.symmetry_groups),
        "version": polarix.__version__,
    }))


def polarix_compare(sizes: list[str], cap: float, blas_threads: int | None, tmp: str,
                    max_iter: int = 100_000) -> list[dict]:
    """Ours and polarix ``ce_maxent`` on each agents x tasks ME-CE game, each in a subprocess."""
    rows = []
    for size in sizes:
        ours_file, theirs_file = str(Path(tmp) / "ours.npy"), str(Path(tmp) / "polarix.npy")
        ours = _run(f"eval:{size}", "ce", "new", cap, blas_threads, ours_file)
        theirs = _subprocess(["--polarix-worker", size, theirs_file, str(POLARIX_TOL), str(max_iter)], cap, blas_threads)
        row = {"game": f"eval:{size}", "ours": ours, "polarix": theirs}
        if ours.get("seconds") and theirs.get("seconds") and Path(theirs_file).exists():
            row["polarix_over_ours"] = theirs["seconds"] / ours["seconds"]
            row.update(compare_joints(eval_game(*(int(x) for x in size.split("x"))), np.load(ours_file),
                                      np.load(theirs_file)))
        for f in (ours_file, theirs_file):
            Path(f).unlink(missing_ok=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _polarix_table(rows: list[dict]) -> list[dict]:
    nan = float("nan")
    table = []
    for r in rows:
        o, p = r["ours"], r["polarix"]
        table.append({
            "game": r["game"], "ours s": o.get("seconds") if o.get("seconds") is not None else nan,
            "ours status": o.get("status"), "ours gap (norm.)": r.get("ours_gap_normalised", o.get("gap_normalised", nan)),
            "polarix s": p.get("seconds") if p.get("seconds") is not None else nan,
            "polarix 1st step s": p.get("first_step_s", nan), "polarix iters": p.get("iterations", ""),
            "polarix status": p.get("status"), "polarix gap (norm.)": r.get("theirs_gap_normalised", nan),
            "polarix gap (payoff)": r.get("theirs_gap_payoff", nan),
            "polarix own gap": p.get("own_ce_gap", nan), "polarix/ours": r.get("polarix_over_ours", nan),
            "L1": r.get("l1", nan), "max abs": r.get("max_abs", nan), "H(polarix)-H(ours)": r.get("entropy_diff", nan),
        })
    return table


POLARIX_NOTES = """
"polarix s" is one fresh process: building its game and `polarix.solve(game, ce_maxent)`
with its defaults (tol 1e-5, l1 weight decay 1e-6, at most 100,000 Adam steps, terminal
test every 1,000 steps), JAX float32 (x64 off, as installed), JIT compilation included;
"1st step" is compilation plus one step. "ours s" excludes Numba compilation (a warm-up
solve first, as in the main table). "polarix gap (norm.)" is its joint's CE gap
recomputed in float64 by `eval_suite.normalised_ce_gap` (our normalised units, the
units of the "ours" gap), "(payoff)" the same in payoff units; "polarix own gap" is
the gap polarix reports for itself (payoff units, float32). L1 / max abs: distance
between the joints (polarix's renormalised to sum 1 in float64); H: entropy in nats.
XLA uses its own CPU threads (not limited by OPENBLAS_NUM_THREADS).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=SIZES, help="agents x tasks, comma-separated")
    parser.add_argument("--extra", default="shape:256x256,shape:8x8x8x8x8", help="other games (CE only)")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--new-cap", type=float, default=600.0, help="seconds per run of the new path")
    parser.add_argument("--blas-threads", type=int, default=1, help="OPENBLAS_NUM_THREADS (0: leave)")
    parser.add_argument("--skip-previous", default="", help="specs whose previous path is not run")
    parser.add_argument("--concepts", default="ce,cce")
    parser.add_argument("--out", default=None, help="results name (default eval_suite[_polarix])")
    parser.add_argument("--polarix-sizes", default=POLARIX_SIZES, help="agents x tasks for polarix ('': none)")
    parser.add_argument("--polarix-cap", type=float, default=120.0, help="seconds per polarix (and our) run")
    parser.add_argument("--polarix-only", action="store_true", help="only the polarix comparison")
    args = parser.parse_args(argv)
    out_name = args.out or ("eval_suite_polarix" if args.polarix_only else "eval_suite")
    blas = args.blas_threads or None
    if importlib.util.find_spec("polarix") is not None:  # imported (with JAX) by its worker only
        polarix_note = (f"polarix {importlib.metadata.version('polarix')} ce_maxent on the same games: "
                        "see the polarix table")
        polarix_sizes = [s for s in args.polarix_sizes.split(",") if s]
    else:
        polarix_note = "polarix is not installed: no ce_maxent comparison"
        polarix_sizes = []
    from benchmarks.results import markdown_table, write_json_atomic, write_text_atomic

    load_before = os.getloadavg()
    if args.polarix_only:
        with tempfile.TemporaryDirectory() as tmp:
            prows = polarix_compare(polarix_sizes, args.polarix_cap, blas, tmp)
        meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_average_before": load_before,
                "load_average": os.getloadavg(), "blas_threads": args.blas_threads, "cap_polarix_s": args.polarix_cap,
                "polarix": polarix_note, "polarix_tol": POLARIX_TOL, "tol": 1e-8, "selection": "me"}
        write_json_atomic(RESULTS / f"{out_name}.json", {"meta": meta, "polarix_rows": prows})
        write_text_atomic(RESULTS / f"{out_name}.md", (
            f"# polarix ce_maxent against ours on evaluation games (ME-CE)\n\n`python -m benchmarks.eval_suite "
            f"--polarix-only --polarix-sizes {args.polarix_sizes} --polarix-cap {args.polarix_cap:.0f}` "
            f"({meta['machine']}, {meta['cpus']} CPUs shared with other jobs, load average before "
            f"{tuple(round(x, 1) for x in load_before)}, after {tuple(round(x, 1) for x in meta['load_average'])}; "
            f"OPENBLAS_NUM_THREADS={args.blas_threads}; each run in its own process, capped at "
            f"{args.polarix_cap:.0f} s). {polarix_note}.\n\n" + markdown_table(_polarix_table(prows)) + POLARIX_NOTES))
        return
    specs = [(f"eval:{s}", c) for s in args.sizes.split(",") if s for c in args.concepts.split(",")]
    specs += [(s, "ce") for s in args.extra.split(",") if s]
    skip = set(filter(None, args.skip_previous.split(",")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, concept in specs:
            new_file = str(Path(tmp) / "new.npy")
            old_file = str(Path(tmp) / "old.npy")
            new = _run(spec, concept, "new", args.new_cap, blas, new_file)
            old = ({"status": "not run"} if spec in skip else
                   _run(spec, concept, "previous", args.cap, blas, old_file))
            row = {"game": spec, "concept": concept, "new": new, "previous": old}
            if new.get("seconds") and old.get("seconds") and "not" not in str(old.get("status")):
                row["speedup"] = old["seconds"] / new["seconds"]
                if Path(new_file).exists() and Path(old_file).exists():
                    row["joint_max_diff"] = float(np.abs(np.load(new_file) - np.load(old_file)).max())
            for f in (new_file, old_file):
                Path(f).unlink(missing_ok=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
        prows = polarix_compare(polarix_sizes, args.polarix_cap, blas, tmp)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "blas_threads": args.blas_threads, "cap_previous_s": args.cap, "cap_new_s": args.new_cap,
            "polarix": polarix_note, "polarix_tol": POLARIX_TOL, "cap_polarix_s": args.polarix_cap,
            "tol": 1e-8, "selection": "me"}
    write_json_atomic(RESULTS / f"{out_name}.json", {"meta": meta, "rows": rows, "polarix_rows": prows})
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
    if prows:
        text += (f"\n\n## polarix ce_maxent on the same ME-CE games (cap {args.polarix_cap:.0f} s)\n\n"
                 + markdown_table(_polarix_table(prows)) + POLARIX_NOTES)
    write_text_atomic(RESULTS / f"{out_name}.md", text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:6])
    elif len(sys.argv) > 1 and sys.argv[1] == "--polarix-worker":
        _polarix_worker(*sys.argv[2:6])
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
