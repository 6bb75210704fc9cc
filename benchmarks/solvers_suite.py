"""Exact solver benchmark: ``solvers.solve`` against CVXPY + Clarabel / ECOS.

For each shape (8x8, 16x16, 32x32) and concept (ME-CCE, ME-CE), hard constraints,
``tol=1e-8``, cold start: the median wall-clock seconds of one ``solve`` call against a
plain CVXPY model of the same problem (built here, per game, as a user would:
``max H(sigma) s.t. simplex, M sigma <= 0``) solved by Clarabel and by ECOS, on the same
games in the same run. Also: games per second of ``solve_batch`` (and of the low-level
``refine_batch``) on 1,000 8x8 games; ``solve_batch`` throughput against the batch size
(1 to 16,384 games: 8x8 ME-CCE and ME-CE; 32x32 ME-CE to 256) and strong scaling over 1
and 2 Numba threads (``numba.set_num_threads``, at most ``NUMBA_NUM_THREADS``), with wall
clock, process CPU time per game and the load average of each row, and a figure of both
(``solvers_suite_throughput.png``).

Run ``python -m benchmarks.solvers_suite [--quick]``; results go to
``benchmarks/results/solvers_suite.{json,md}`` (written atomically); ``--throughput`` runs
the batch-size and scaling tables alone into ``solvers_suite_throughput.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sps

from benchmarks.games import l2_invariant_games
from benchmarks.results import (
    markdown_table,
    write_figure_atomic,
    write_json_atomic,
    write_text_atomic,
)
from solvers import Selection, refine_batch, solve, solve_batch
from solvers.gains import gain_layout
from solvers.game import normalise_batch
from solvers.selection import resolve_selection

__all__ = ["main", "throughput_main"]

TOL = 1e-8
#: Games per (shape, concept): (full, quick).
NUM_GAMES = {(8, 8): (20, 6), (16, 16): (8, 2), (32, 32): (3, 1)}
#: Batch throughput: games (full, quick) and repeats.
BATCH_GAMES = (1000, 300)
BATCH_REPEATS = 3
#: Throughput against the batch size: sizes (full, quick) per case (shape, concept); a
#: batch is timed repeatedly until ``SIZE_SECONDS`` have passed and at least
#: ``MIN_REPEATS`` times (best of the repeats: a single timing of a large batch caught a
#: slow phase of the shared machine, 2.3k against 5.3k games/s for 16,384 8x8 ME-CE).
SIZE_CASES = {
    ((8, 8), "cce"): ((1, 4, 16, 64, 256, 1024, 4096, 16384), (1, 16, 256)),
    ((8, 8), "ce"): ((1, 4, 16, 64, 256, 1024, 4096, 16384), (1, 16, 256)),
    # 32x32 ME-CE takes ~10 ms a game: 4,096 of them alone would take minutes.
    ((32, 32), "ce"): ((1, 16, 256), (1, 4)),
}
SIZE_SECONDS = (0.5, 0.15)
MIN_REPEATS = (3, 1)
#: Strong scaling: games per case (full, quick) and the Numba thread counts.
SCALING_GAMES = (4096, 512)
SCALING_THREADS = (1, 2)
#: A CVXPY solver slower than this per game is not run on further games of the config.
CVXPY_BUDGET_S = 20.0


def _constraint_matrix(shape: tuple[int, ...], concept: str, payoffs: np.ndarray) -> sps.csr_array:
    """Sparse ``M [K, |A|]`` from the ELL gains (the CVXPY baseline's only input)."""
    layout = gain_layout(shape, concept)
    flat = payoffs.reshape(payoffs.shape[0], -1)
    values = flat[layout.slot_player[None, :], layout.dev] - flat[layout.slot_player[None, :], np.arange(flat.shape[1])[:, None]]
    cols = np.broadcast_to(np.arange(flat.shape[1])[:, None], layout.rows.shape)
    m = sps.coo_array((values.ravel(), (layout.rows.ravel(), cols.ravel())),
                      shape=(layout.num_constraints, flat.shape[1]))
    return m.tocsr()


def _cvxpy_solve(payoffs: np.ndarray, concept: str, solver: str, base_logits: np.ndarray | None = None) -> dict:
    """Builds and solves the plain ME-(C)CE model; returns seconds and the joint.

    With ``base_logits: [|A|]`` (e.g. the log of an MRE target) the objective is
    ``H(x) + <x, base_logits>``, the relative entropy to ``softmax(base_logits)`` up to a
    constant.
    """
    import cvxpy as cp

    start = time.perf_counter()
    cpu = time.process_time()
    shape = payoffs.shape[1:]
    matrix = _constraint_matrix(shape, concept, payoffs)
    num_joint = matrix.shape[1]
    x = cp.Variable(num_joint, nonneg=True)
    objective = cp.sum(cp.entr(x))
    if base_logits is not None:
        objective = objective + np.asarray(base_logits, dtype=np.float64).ravel() @ x
    problem = cp.Problem(cp.Maximize(objective), [matrix @ x <= 0, cp.sum(x) == 1])
    try:
        problem.solve(solver=solver)
        status = problem.status
    except cp.error.SolverError as err:
        status = f"error: {err}"
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu
    joint = None if x.value is None else np.clip(x.value, 0.0, None)
    gap = math.nan
    entropy = math.nan
    if joint is not None:
        joint = joint / joint.sum()
        gap = float((matrix @ joint).max())
        pos = joint > 0
        entropy = float(-(joint[pos] * np.log(joint[pos])).sum())
    solver_time = problem.solver_stats.solve_time if problem.solver_stats is not None else math.nan
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "solver_seconds": solver_time, "status": status, "gap": gap,
            "entropy": entropy, "joint": joint}


def _ours(payoffs: np.ndarray, concept: str) -> dict:
    start = time.perf_counter()
    cpu = time.process_time()
    sol = solve(payoffs, concept, "me", tol=TOL)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu
    joint = sol.joint.ravel()
    pos = joint > 0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "status": sol.status.value,
        "iterations": sol.iterations,
        "method": sol.method,
        "face": bool(sol.info.get("face", False)),
        "gap": sol.normalised_gap,
        "duality_gap": sol.duality_gap,
        "entropy": float(-(joint[pos] * np.log(joint[pos])).sum()),
        "joint": joint,
    }


def _warm_up() -> None:
    """Compiles (or loads from cache) every kernel the timed runs use."""
    rng = np.random.default_rng(123)
    for concept in ("cce", "ce"):
        solve(rng.normal(size=(2, 3, 3)), concept)
        solve(rng.normal(size=(2, 3, 3)), concept, face="always")
        solve(rng.normal(size=(2, 3, 3)), concept, method="gd")
        solve_batch(rng.normal(size=(4, 2, 3, 3)), concept)


def _single_game_rows(quick: bool, rng: np.random.Generator) -> list[dict]:
    rows = []
    for shape, counts in NUM_GAMES.items():
        num = counts[1] if quick else counts[0]
        games = l2_invariant_games(rng, num, shape)
        for concept in ("cce", "ce"):
            # "Cold" means zero start duals; per-shape caches (gain layout, resolved
            # selection) and CPU caches are warmed by one untimed pass, as in any loop.
            for g in games[:2]:
                _ours(g, concept)
            ours = [_ours(g, concept) for g in games]
            row = {
                "shape": "x".join(map(str, shape)),
                "concept": concept,
                "games": num,
                "ours_s": float(np.median([o["seconds"] for o in ours])),
                "ours_cpu_s": float(np.median([o["cpu_seconds"] for o in ours])),
                "ours_iters": float(np.median([o["iterations"] for o in ours])),
                "ours_optimal": sum(o["status"] == "optimal" for o in ours),
                "ours_face": sum(o["face"] for o in ours),
                "ours_max_gap": float(max(o["gap"] for o in ours)),
                "ours_max_abs_duality_gap": float(max(abs(o["duality_gap"]) for o in ours)),
                "methods": sorted({o["method"] for o in ours}),
            }
            for solver in ("CLARABEL", "ECOS"):
                key = solver.lower()
                results = []
                for g in games:
                    res = _cvxpy_solve(g, concept, solver)
                    results.append(res)
                    if res["seconds"] > CVXPY_BUDGET_S:
                        break
                times = [r["seconds"] for r in results]
                row[f"{key}_s"] = float(np.median(times))
                row[f"{key}_cpu_s"] = float(np.median([r["cpu_seconds"] for r in results]))
                row[f"{key}_solver_s"] = float(np.median([r["solver_seconds"] for r in results]))
                row[f"{key}_games"] = len(results)
                row[f"{key}_statuses"] = sorted({r["status"] for r in results})
                row[f"{key}_max_gap"] = float(np.nanmax([r["gap"] for r in results]))
                # Entropy (the objective) of ours minus theirs: >= -tol when ours is optimal.
                diffs = [o["entropy"] - r["entropy"] for o, r in zip(ours, results, strict=False) if r["joint"] is not None]
                row[f"{key}_entropy_diff_min"] = float(min(diffs)) if diffs else math.nan
                row[f"ratio_{key}"] = row[f"{key}_s"] / row["ours_s"]
                row[f"cpu_ratio_{key}"] = row[f"{key}_cpu_s"] / row["ours_cpu_s"]
            rows.append(row)
            print(
                f"{row['shape']} ME-{concept.upper()}: ours {row['ours_s'] * 1e3:.3f} ms "
                f"({row['ours_iters']:.0f} it, {row['ours_optimal']}/{num} optimal, face {row['ours_face']}), "
                f"Clarabel {row['clarabel_s'] * 1e3:.1f} ms (x{row['ratio_clarabel']:.0f}; CPU x{row['cpu_ratio_clarabel']:.0f}), "
                f"ECOS {row['ecos_s'] * 1e3:.1f} ms (x{row['ratio_ecos']:.0f}; CPU x{row['cpu_ratio_ecos']:.0f})",
                flush=True,
            )
    return rows


def _batch_rows(quick: bool, rng: np.random.Generator) -> list[dict]:
    num = BATCH_GAMES[1] if quick else BATCH_GAMES[0]
    games = l2_invariant_games(rng, num, (8, 8))
    rows = []
    for concept in ("cce", "ce"):
        solve_batch(games[:8], concept)
        api_times, api_cpu, refine_times, optimal = [], [], [], 0
        norm = normalise_batch(games)
        params = resolve_selection(Selection.me(), type(norm)(norm.payoffs[0], norm.scale[0], norm.offset[0]))
        for _ in range(BATCH_REPEATS):
            start = time.perf_counter()
            cpu = time.process_time()
            out = solve_batch(games, concept, tol=TOL)
            api_times.append(time.perf_counter() - start)
            api_cpu.append(time.process_time() - cpu)
            optimal = sum(s.status.value == "optimal" for s in out)
            start = time.perf_counter()
            refine_batch(norm.payoffs, concept, params, tol=TOL)
            refine_times.append(time.perf_counter() - start)
        row = {
            "concept": concept,
            "games": num,
            "solve_batch_games_per_s": num / float(np.median(api_times)),
            "refine_batch_games_per_s": num / float(np.median(refine_times)),
            # CPU seconds of all threads: what a dedicated machine would need in total.
            "solve_batch_cpu_s_per_game": float(np.median(api_cpu)) / num,
            "optimal": optimal,
            "median_iterations": float(np.median([s.iterations for s in out])),
            "face": int(sum(bool(s.info.get("face")) for s in out)),
        }
        rows.append(row)
        print(
            f"solve_batch 8x8 ME-{concept.upper()}: {row['solve_batch_games_per_s']:.0f} games/s "
            f"(refine_batch {row['refine_batch_games_per_s']:.0f} games/s; CPU {row['solve_batch_cpu_s_per_game'] * 1e6:.0f} us/game "
            f"= {2.0 / row['solve_batch_cpu_s_per_game']:.0f} games/s on 2 idle cores), {optimal}/{num} optimal",
            flush=True,
        )
    return rows


def _best_rate(run, num: int, seconds: float, repeats: int = 1) -> tuple[float, float]:
    """Games per second of ``run()`` on ``num`` games (best of repeats over ``seconds``, at
    least ``repeats`` of them) and the least process CPU time per game of a repeat, in
    microseconds (CPU time counts the worker threads, not the time other processes take
    the cores)."""
    best = cpu = math.inf
    spent = 0.0
    done = 0
    while spent < seconds or done < max(repeats, 1):
        done += 1
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        elapsed = time.perf_counter() - start
        cpu = min(cpu, time.process_time() - start_cpu)
        best = min(best, elapsed)
        spent += elapsed
    return num / best, cpu / num * 1e6


def _load_averages() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan,) * 3


def _load() -> float:
    return _load_averages()[0]


def _start() -> tuple[np.random.Generator, float]:
    """Warm up the compiled paths; the suite's generator and its start time."""
    _warm_up()
    return np.random.default_rng(2026), time.time()


def _throughput(quick: bool, rng: np.random.Generator, out_dir: Path) -> tuple[list[dict], list[dict]]:
    """The batch-size and strong-scaling rows, and their figure in ``out_dir``."""
    sizes = _size_rows(quick, rng)
    scaling = _scaling_rows(quick, rng)
    _throughput_figure(sizes, scaling, out_dir / "solvers_suite_throughput.png")
    return sizes, scaling


def _size_rows(quick: bool, rng: np.random.Generator) -> list[dict]:
    """``solve_batch`` games/s against the batch size (``SIZE_CASES``)."""
    rows = []
    seconds = SIZE_SECONDS[1 if quick else 0]
    for (shape, concept), sizes in SIZE_CASES.items():
        sizes = sizes[1 if quick else 0]
        pool = l2_invariant_games(rng, max(sizes), shape)
        solve_batch(pool[:2], concept)
        for size in sizes:
            games = pool[:size]
            rate, cpu = _best_rate(lambda g=games, c=concept: solve_batch(g, c, tol=TOL), size, seconds,
                                   MIN_REPEATS[1 if quick else 0])
            rows.append({"shape": "x".join(map(str, shape)), "concept": concept, "batch": size,
                         "games_per_s": rate, "us_per_game": 1e6 / rate, "cpu_us_per_game": cpu, "load": _load()})
            print(f"solve_batch {rows[-1]['shape']} ME-{concept.upper()} batch {size}: {rate:.0f} games/s, "
                  f"{cpu:.1f} us CPU/game", flush=True)
    return rows


def _scaling_rows(quick: bool, rng: np.random.Generator) -> list[dict]:
    """Strong scaling: the same 8x8 batch on 1 and 2 Numba threads (``numba.set_num_threads``,
    capped by ``NUMBA_NUM_THREADS``)."""
    import numba

    num = SCALING_GAMES[1 if quick else 0]
    games = l2_invariant_games(rng, num, (8, 8))
    available = numba.config.NUMBA_NUM_THREADS
    before = numba.get_num_threads()
    rows = []
    try:
        for concept in ("cce", "ce"):
            base = None
            for threads in SCALING_THREADS:
                if threads > available:
                    continue
                numba.set_num_threads(threads)
                solve_batch(games[:8], concept)
                rate, cpu = _best_rate(lambda c=concept: solve_batch(games, c, tol=TOL), num,
                                       SIZE_SECONDS[1 if quick else 0], MIN_REPEATS[1 if quick else 0])
                base = rate if base is None else base
                rows.append({"shape": "8x8", "concept": concept, "games": num, "threads": threads,
                             "games_per_s": rate, "speedup": rate / base, "efficiency": rate / base / threads,
                             "cpu_us_per_game": cpu, "load": _load()})
                print(f"solve_batch 8x8 ME-{concept.upper()} on {threads} thread(s): {rate:.0f} games/s "
                      f"(x{rate / base:.2f}), {cpu:.1f} us CPU/game", flush=True)
    finally:
        numba.set_num_threads(before)
    return rows


def _throughput_figure(rows: list[dict], scaling: list[dict], path: Path) -> None:
    """Left: log-log games/s against the batch size, one line per case; right: games/s on
    1 and 2 threads per concept (strong scaling). Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    for key in dict.fromkeys((r["shape"], r["concept"]) for r in rows):
        sel = [r for r in rows if (r["shape"], r["concept"]) == key]
        ax.plot([r["batch"] for r in sel], [r["games_per_s"] for r in sel], marker="o",
                label=f"{key[0]} ME-{key[1].upper()}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("games per solve_batch call")
    ax.set_ylabel("games / s (wall clock)")
    ax.set_title(f"solve_batch throughput, tol {TOL:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    concepts = list(dict.fromkeys(r["concept"] for r in scaling))
    threads = list(dict.fromkeys(r["threads"] for r in scaling))
    width = 0.8 / max(1, len(threads))
    for j, t in enumerate(threads):
        values = [next((r["games_per_s"] for r in scaling if r["concept"] == c and r["threads"] == t), 0.0)
                  for c in concepts]
        bx.bar([i + j * width for i in range(len(concepts))], values, width, label=f"{t} thread(s)")
    bx.set_xticks([i + width * (len(threads) - 1) / 2 for i in range(len(concepts))],
                  [f"8x8 ME-{c.upper()}" for c in concepts])
    bx.set_yscale("log")
    bx.set_ylabel("games / s (wall clock)")
    bx.set_title("strong scaling (Numba threads)")
    bx.grid(True, axis="y", which="both", alpha=0.3)
    bx.legend()
    fig.tight_layout()
    write_figure_atomic(fig, path)
    plt.close(fig)


def _throughput_text(sizes: list[dict], scaling: list[dict]) -> list[str]:
    """The batch-size and strong-scaling sections of the report (markdown lines)."""
    return [
        "## Throughput against the batch size",
        "",
        "`solve_batch` wall clock, best of repeats (at least 3, and at least 0.5 s of them); `cpu_us_per_game`: the least process CPU time "
        "of a repeat per game (all threads); `load`: the 1-minute load average after the row. "
        "The figure is `solvers_suite_throughput.png`.",
        "",
        markdown_table(sizes),
        "",
        "## Strong scaling (Numba threads)",
        "",
        "The same batch with `numba.set_num_threads(n)` (n <= `NUMBA_NUM_THREADS`); speedup "
        "against 1 thread, efficiency = speedup / n (the Newton path calls no BLAS, so BLAS "
        "threads do not compete; on a shared machine other processes take cores too: see `load`).",
        "",
        markdown_table(scaling),
    ]


def throughput_main(quick: bool = False, out_dir: Path = Path("benchmarks/results")) -> dict:
    """The batch-size and strong-scaling tables alone (``--throughput``): writes
    ``solvers_suite_throughput.{json,md,png}`` into ``out_dir``."""
    out_dir = Path(out_dir)
    rng, started = _start()
    sizes, scaling = _throughput(quick, rng, out_dir)
    result = {"suite": "solvers_suite_throughput", "mode": "quick" if quick else "full", "tol": TOL,
              "cpu_count": os.cpu_count(), "load_average_at_end": _load(), "wall_seconds": time.time() - started,
              "batch_size": sizes, "scaling": scaling}
    write_json_atomic(out_dir / "solvers_suite_throughput.json", result)
    text = ["# solvers_suite: `solve_batch` throughput and strong scaling", "",
            f"Mode: {result['mode']}; tol {TOL}; games of `benchmarks.games.l2_invariant_games`, ME "
            f"(hard constraints), cold starts. CPUs: {result['cpu_count']}; a shared machine inflates every "
            "wall clock (see `load`).", ""] + _throughput_text(sizes, scaling)
    write_text_atomic(out_dir / "solvers_suite_throughput.md", "\n".join(text) + "\n")
    return result


def main(quick: bool = False, out_dir: Path = Path("benchmarks/results")) -> dict:
    """Runs the suite; writes ``solvers_suite.json`` and ``solvers_suite.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    rng, started = _start()
    single = _single_game_rows(quick, rng)
    batch = _batch_rows(quick, rng)
    sizes, scaling = _throughput(quick, rng, out_dir)
    load = _load_averages()
    result = {
        "suite": "solvers_suite",
        "mode": "quick" if quick else "full",
        "tol": TOL,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(load),
        "wall_seconds": time.time() - started,
        "single_game": single,
        "batch": batch,
        "batch_size": sizes,
        "scaling": scaling,
    }
    write_json_atomic(out_dir / "solvers_suite.json", result)
    columns = ["shape", "concept", "games", "ours_s", "ours_iters", "ours_optimal", "ours_face",
               "clarabel_s", "ratio_clarabel", "cpu_ratio_clarabel", "ecos_s", "ratio_ecos",
               "cpu_ratio_ecos", "ours_max_gap", "clarabel_entropy_diff_min"]
    text = [
        "# solvers_suite: exact ME-(C)CE, `solvers.solve` vs CVXPY",
        "",
        f"Mode: {result['mode']}; tol {TOL}; hard constraints; cold starts; wall-clock medians "
        f"per game (seconds). CPUs: {result['cpu_count']}; load average at the end: "
        f"{', '.join(f'{x:.1f}' for x in load)} (a shared machine inflates every time).",
        "",
        markdown_table(single, columns),
        "",
        "`ratio_*` = CVXPY wall seconds / ours; `cpu_ratio_*` the same in process CPU seconds "
        "(less sensitive to other load). CVXPY: model built and solved per game. "
        "`clarabel_entropy_diff_min` = min over games of H(ours) - H(Clarabel) "
        "(>= -1e-8 when ours is at least as good).",
        "",
        "## Batch throughput (8x8)",
        "",
        markdown_table(batch),
        "",
    ] + _throughput_text(sizes, scaling)
    write_text_atomic(out_dir / "solvers_suite.md", "\n".join(text) + "\n")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer games (about a minute)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--throughput", action="store_true",
                        help="only the batch-size and strong-scaling tables (solvers_suite_throughput.*)")
    args = parser.parse_args()
    (throughput_main if args.throughput else main)(quick=args.quick, out_dir=args.out)
