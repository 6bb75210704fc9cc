"""BLAS threads during the matrix-free Newton solve: one thread against the process default.

``solvers.newton_cg`` runs its GEMM passes with ``NewtonCGOptions.blas_threads`` BLAS
threads (threadpoolctl). This measures the CE of an agent-vs-task evaluation game with
``blas_threads=1`` and ``None`` (OpenBLAS's own default, one thread per core),
interleaved, after one discarded warm-up pair, and records the load average, since the
difference depends on whether the cores are busy.

Run: ``python -m benchmarks.blas_threads [--agents 21 --tasks 66 --reps 2]``; writes
``blas_threads.json`` and ``blas_threads.md`` into ``--out`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from benchmarks.results import markdown_table, write_json_atomic, write_text_atomic
from solvers.evaluation_game import evaluation_game
from solvers.game import normalise
from solvers.matrix_free import MatrixFreeGame
from solvers.newton_cg import NewtonCGOptions, newton_cg
from solvers.selection import Selection, resolve_selection

__all__ = ["run", "main"]


def _time_solve(agents: int, tasks: int, concept: str, blas_threads: int | None, seed: int) -> tuple[float, str]:
    scores = np.random.default_rng(seed).normal(size=(agents, tasks))
    game = normalise(evaluation_game(scores, "ptp"))
    params = resolve_selection(Selection.me(), game)
    mf = MatrixFreeGame(game.payoffs, concept)
    t0 = time.perf_counter()
    res = newton_cg(mf, params.base_logits, params.eps_hat, params.eps_plus, float(params.rho),
                    options=NewtonCGOptions(blas_threads=blas_threads))
    return time.perf_counter() - t0, "optimal" if res.status == 0 else f"status {res.status}"


def run(agents: int, tasks: int, reps: int, concept: str = "ce", seed: int = 0) -> list[dict]:
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    default = max((i["num_threads"] for i in blas), default=1)
    rows = []
    for rep in range(reps + 1):
        for threads in (1, None):
            load = os.getloadavg()[0]
            seconds, status = _time_solve(agents, tasks, concept, threads, seed)
            if rep:
                rows.append(dict(game=f"{agents}x{tasks} {concept.upper()}", blas_threads=threads or f"default ({default})",
                                 seconds=seconds, status=status, load_average=load))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=21)
    parser.add_argument("--tasks", type=int, default=66)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    rows = run(args.agents, args.tasks, args.reps)
    info = [f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
            for i in threadpool_info() if i["user_api"] == "blas"]
    write_json_atomic(args.out / "blas_threads.json", {"blas": info, "rows": rows})
    text = ("# BLAS threads in the matrix-free Newton solve\n\n"
            f"`python -m benchmarks.blas_threads --agents {args.agents} --tasks {args.tasks}`; "
            f"BLAS: {', '.join(info)}; {os.cpu_count()} cores. One-thread and default runs interleaved; "
            "`load_average` is the 1-minute load when each solve started.\n\n" + markdown_table(rows))
    write_text_atomic(args.out / "blas_threads.md", text)
    print(text)


if __name__ == "__main__":
    main()
