"""JPSRO with hybrid_nes meta-solvers vs OpenSpiel's CVXPY ``mgcce``, on real games.

For every game and every *driver* meta-solver ("hn_mecce", then OpenSpiel's "mgcce"),
OpenSpiel's own ``jpsro.run_loop`` runs for ``iterations`` iterations. On every meta-game
of a run, all *timed* solvers (``hn_mecce``, ``hn_mgcce``, ``mgcce``) solve the same
meta-game, so their times are measured in the same run on identical inputs; only the
driver's answer is handed back to JPSRO. Reported per meta-solve: the meta-game size, each
solver's wall time, the CCE gap of each solver's meta-distribution on the meta-game
(after JPSRO's own 1e-8 clean-up), and the CCE gap of the driver's joint policy in the
full game (JPSRO's "train gap": best-response value minus on-policy value, per player).

Run: ``python -m benchmarks.jpsro_suite [--quick]``; writes ``jpsro_suite.json`` and
``jpsro_suite.md`` into ``out_dir`` atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results import markdown_table, write_json_atomic, write_text_atomic
from hybrid_nes.integrations import openspiel as hos

__all__ = ["main", "run_game"]

GAMES_FULL: tuple[str, ...] = ("kuhn_poker", "kuhn_poker(players=3)")
GAMES_QUICK: tuple[str, ...] = ("kuhn_poker",)
ITERATIONS_FULL = 10
ITERATIONS_QUICK = 3
DRIVERS: tuple[str, ...] = ("hn_mecce", "mgcce")
TIMED_OURS: tuple[str, ...] = ("hn_mecce", "hn_mecce_warm", "hn_mecce_related", "hn_mgcce")
#: Our timed solvers that are not registered names: name -> (registered name, options).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "hn_mecce_warm": ("hn_mecce", {"warm_start": "previous"}),
    "hn_mecce_related": ("hn_mecce", {"warm_start": "related"}),
}
TIMED_OPENSPIEL: tuple[str, ...] = ("mgcce",)
#: JPSRO zeroes meta-distribution entries below this before using them.
DIST_TOL = 1e-8

MetaSolver = Callable[..., tuple[np.ndarray, dict]]


def jpsro_clean(dist: np.ndarray) -> np.ndarray:
    """The clean-up ``jpsro.add_meta_dist`` applies to every meta-distribution."""
    dist = np.asarray(dist, dtype=np.float64).copy()
    dist[dist < DIST_TOL] = 0.0
    dist[dist > 1.0] = 1.0
    return dist / dist.sum()


def cce_gap(meta_game: np.ndarray, dist: np.ndarray) -> float:
    """``max_{p, dev} E_dist[gain]`` on the meta-game (payoff units)."""
    return float(hos.equilibrium_gaps(meta_game, dist, "cce").max())


def _timed_call(fn: MetaSolver, meta_game: np.ndarray, repeats: Sequence[np.ndarray]) -> tuple[np.ndarray, dict, float]:
    start = time.perf_counter()
    dist, meta = fn(meta_game, repeats, ignore_repeats=False)
    return dist, meta, time.perf_counter() - start


def _warm_up(solvers_by_name: Mapping[str, hos.JPSROMetaSolver], num_players: int) -> float:
    """Compiles/initialises our solvers once (e.g. Numba JIT) outside the timed runs."""
    start = time.perf_counter()
    game = np.random.default_rng(0).normal(size=(num_players,) + (3,) * num_players)
    for solver in solvers_by_name.values():
        solver(game, [np.ones(n) for n in game.shape[1:]])
        solver.reset()
    # The facial-reduction path (HiGHS LP, restricted-problem kernels) pays a one-off
    # set-up cost on its first call; the ME-CE of this random game goes through it.
    face_game = np.random.default_rng(0).normal(size=(2, 5, 5))
    hos.meta_solver("hn_mece")(face_game, [np.ones(5), np.ones(5)])
    return time.perf_counter() - start


def _our_solver(name: str) -> hos.JPSROMetaSolver:
    registered, options = VARIANTS.get(name, (name, {}))
    return hos.meta_solver(registered, **options)


def run_game(game_name: str, driver: str, iterations: int, seed: int = 0) -> dict[str, Any]:
    """One JPSRO run driven by ``driver``, timing every solver on every meta-game.

    Returns:
      ``{"game", "driver", "iterations", "warmup_s", "rows": [...], "summary": {...}}``;
      one row per meta-solve with ``size``, ``t_<solver>_ms``, ``gap_<solver>`` and the
      driver's ``joint_gap`` (max over players) / ``joint_gaps``.
    """
    import pyspiel
    from open_spiel.python.algorithms import jpsro

    game = pyspiel.load_game(game_name)
    ours = {name: _our_solver(name) for name in TIMED_OURS}
    warmup = _warm_up(ours, game.num_players())
    timed: dict[str, MetaSolver] = dict(ours)
    timed.update({name: jpsro.FLAG_TO_FUNC[name] for name in TIMED_OPENSPIEL})
    rows: list[dict[str, Any]] = []

    def bench_solver(meta_game, per_player_repeats, ignore_repeats=False):
        repeats = [np.asarray(r, dtype=np.float64) for r in per_player_repeats]
        row: dict[str, Any] = {
            "solve": len(rows),
            "size": "x".join(str(n) for n in meta_game.shape[1:]),
            "policies": int(sum(sum(r) for r in per_player_repeats)),
        }
        driver_dist = None
        for name, fn in timed.items():
            dist, meta, seconds = _timed_call(fn, meta_game, repeats)
            row[f"t_{name}_ms"] = 1e3 * seconds
            row[f"gap_{name}"] = cce_gap(meta_game, jpsro_clean(dist))
            if name in ours:
                row[f"status_{name}"] = meta["status"]
                row[f"warm_{name}"] = meta["warm_start"]
                row[f"fallback_{name}"] = meta["fallback"]
                row[f"method_{name}"] = meta["method"]
                row[f"sparsified_{name}"] = meta["sparsified"]
            if name == driver:
                driver_dist = dist
        row["ratio_mgcce_over_hn_mecce"] = row["t_mgcce_ms"] / max(row["t_hn_mecce_ms"], 1e-9)
        rows.append(row)
        print(
            f"  solve {row['solve']:2d} size {row['size']:>8s}: "
            + ", ".join(f"{n} {row[f't_{n}_ms']:.1f} ms" for n in timed),
            flush=True,
        )
        return driver_dist, {}

    def final_gap(iteration, per_player_repeats, per_player_policies, joint_policies, joint_returns,
                  meta_games, train_meta_dists, eval_meta_dists, train_meta_values, eval_meta_values,
                  train_meta_gaps, eval_meta_gaps, kwargs, checkpoint):
        # run_loop measures the joint-policy gap of each dist at the start of the next
        # iteration; the last dist's gap is measured here.
        if iteration > iterations:
            _, gaps = jpsro.find_best_response(
                game, train_meta_dists[-1], meta_games[-1], iteration, joint_policies,
                "cce", "all", -1.0,
            )
            train_meta_gaps.append([sum(g) for g in gaps])
        for row, gaps in zip(rows, train_meta_gaps, strict=False):
            row["joint_gap"] = float(max(gaps))
            row["joint_gaps"] = [float(g) for g in gaps]
        return checkpoint

    name = f"_bench_{driver}"
    jpsro.FLAG_TO_FUNC[name] = bench_solver
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scipy.sparse.diags inside jpsro
            jpsro.run_loop(
                game, game_name, seed=seed, iterations=iterations, target_equilibrium="cce",
                train_meta_solver=name, eval_meta_solver="uni", callback=final_gap,
            )
    finally:
        del jpsro.FLAG_TO_FUNC[name]
    wall = time.perf_counter() - start
    return {
        "game": game_name,
        "driver": driver,
        "iterations": iterations,
        "warmup_s": warmup,
        "wall_s": wall,
        "rows": rows,
        "summary": summarise(rows),
    }


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals and ratios over the non-trivial meta-solves (more than one joint policy)."""
    real = [r for r in rows if math.prod(int(n) for n in r["size"].split("x")) > 1] or list(rows)
    total = {name: sum(r[f"t_{name}_ms"] for r in real) for name in TIMED_OURS + TIMED_OPENSPIEL}
    ratios = [r["ratio_mgcce_over_hn_mecce"] for r in real]
    out: dict[str, Any] = {
        "meta_solves": len(real),
        "total_ms": total,
        "ratio_total_mgcce_over_hn_mecce": total["mgcce"] / max(total["hn_mecce"], 1e-9),
        "ratio_median_mgcce_over_hn_mecce": statistics.median(ratios),
        "ratio_min_mgcce_over_hn_mecce": min(ratios),
        "max_gap": {name: max(r[f"gap_{name}"] for r in real) for name in TIMED_OURS + TIMED_OPENSPIEL},
        "hn_uncertified": sum(
            r[f"status_{name}"] != "optimal" for r in real for name in TIMED_OURS
        ),
        "hn_fallbacks": sum(bool(r[f"fallback_{name}"]) for r in real for name in TIMED_OURS),
    }
    finals = [r["joint_gap"] for r in rows if "joint_gap" in r]
    out["final_joint_gap"] = finals[-1] if finals else math.nan
    return out


COLUMNS = (
    "solve", "size", "policies", "t_hn_mecce_ms", "t_hn_mecce_warm_ms", "t_hn_mgcce_ms",
    "t_mgcce_ms", "ratio_mgcce_over_hn_mecce", "gap_hn_mecce", "gap_hn_mgcce", "gap_mgcce",
    "method_hn_mecce", "sparsified_hn_mecce", "joint_gap",
)


def to_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        "# JPSRO meta-solvers: hybrid_nes vs OpenSpiel (CVXPY)",
        "",
        f"mode: {result['mode']}; iterations per run: {result['iterations']}; "
        f"timed solvers on every meta-game: {', '.join(TIMED_OURS + TIMED_OPENSPIEL)}.",
        "Times in ms (same process, same meta-game); gaps: CCE gap of the meta-distribution "
        "on the meta-game after JPSRO's clean-up (payoff units, <= 0 is exact); joint_gap: "
        "the driver's joint-policy CCE gap in the full game (max over players).",
        "",
    ]
    for run in result["runs"]:
        s = run["summary"]
        lines += [
            f"## {run['game']}, driver `{run['driver']}`",
            "",
            f"wall {run['wall_s']:.1f} s (warm-up of our solvers {run['warmup_s']:.2f} s, excluded); "
            f"meta-solve time ratio mgcce / hn_mecce: total {s['ratio_total_mgcce_over_hn_mecce']:.1f}x, "
            f"median {s['ratio_median_mgcce_over_hn_mecce']:.1f}x, min {s['ratio_min_mgcce_over_hn_mecce']:.1f}x; "
            f"max meta gap hn_mecce {s['max_gap']['hn_mecce']:.2e}, mgcce {s['max_gap']['mgcce']:.2e}; "
            f"total ms: hn_mecce {s['total_ms']['hn_mecce']:.1f} (warm-started "
            f"{s['total_ms']['hn_mecce_warm']:.1f}), hn_mgcce {s['total_ms']['hn_mgcce']:.1f}, "
            f"mgcce {s['total_ms']['mgcce']:.1f}; "
            f"uncertified hn solves {s['hn_uncertified']}, fallbacks {s['hn_fallbacks']}; "
            f"final joint-policy gap {s['final_joint_gap']:.4g}.",
            "",
            markdown_table(run["rows"], COLUMNS),
        ]
    if "ce_warm_start" in result:
        warm = result["ce_warm_start"]
        lines += [
            "",
            "## kuhn_poker(players=3), `hn_mece`: total meta-solve seconds, cold vs warm starts",
            "",
            "The recorded meta-game sequence of a 10-iteration run, solved by `warm_start` "
            "cold / previous / related / auto meta-solvers, interleaved per meta-game "
            "(`benchmarks.related_suite.run_jpsro`; per-game rows in related_suite.md); "
            f"2-core CPU, load average at the end {', '.join(f'{x:.1f}' for x in warm['load'])}"
            + (f"; measured {warm['date']} (`--ce-warm-start-only`: the tables above are from the "
               "last full run)." if warm.get("separate") else "."),
            "",
            markdown_table(warm["totals"]),
        ]
    return "\n".join(lines)


def main(quick: bool = False, out_dir: Path = Path("benchmarks/results")) -> dict:
    """Runs the suite; writes ``jpsro_suite.json`` and ``jpsro_suite.md`` to ``out_dir``."""
    hos.require_openspiel()
    games = GAMES_QUICK if quick else GAMES_FULL
    iterations = ITERATIONS_QUICK if quick else ITERATIONS_FULL
    runs = []
    for game_name in games:
        for driver in DRIVERS:
            print(f"jpsro_suite: {game_name}, driver {driver}", flush=True)
            runs.append(run_game(game_name, driver, iterations))
            s = runs[-1]["summary"]
            print(
                f"  ratio total {s['ratio_total_mgcce_over_hn_mecce']:.1f}x, "
                f"final joint gap {s['final_joint_gap']:.4g}, wall {runs[-1]['wall_s']:.1f} s",
                flush=True,
            )
    result = {"mode": "quick" if quick else "full", "iterations": iterations, "runs": runs}
    if not quick:
        result["ce_warm_start"] = ce_warm_start()
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "jpsro_suite.json", result)
    write_text_atomic(out_dir / "jpsro_suite.md", to_markdown(result))
    return result


def ce_warm_start() -> dict[str, Any]:
    """The CE warm-start target (issue #21): the recorded Kuhn-3 ``hn_mece`` sequence of
    ``benchmarks/related_suite.py``, cold vs the warm-start modes, interleaved."""
    from benchmarks.related_suite import run_jpsro

    print("jpsro_suite: kuhn_poker(players=3) hn_mece warm starts", flush=True)
    _, totals = run_jpsro(ITERATIONS_FULL)
    return {"totals": totals, "load": list(os.getloadavg()), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def update_ce_warm_start(out_dir: Path) -> dict:
    """Re-measures only the CE warm-start section into the existing results (the OpenSpiel
    CVXPY ``mgcce`` runs of the full suite take over 10 minutes per 3-player meta-game)."""
    out_dir = Path(out_dir)
    result = json.loads((out_dir / "jpsro_suite.json").read_text())
    result["ce_warm_start"] = dict(ce_warm_start(), separate=True)
    write_json_atomic(out_dir / "jpsro_suite.json", result)
    write_text_atomic(out_dir / "jpsro_suite.md", to_markdown(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="kuhn_poker only, 3 iterations")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--ce-warm-start-only", action="store_true",
                        help="re-measure only the Kuhn-3 hn_mece warm-start section into the existing results")
    args = parser.parse_args()
    if args.ce_warm_start_only:
        update_ce_warm_start(args.out)
    else:
        main(quick=args.quick, out_dir=args.out)
