"""End-to-end cold vs warm ``solve_batch`` where inference runs on an accelerator.

    python -m benchmarks.accelerator_suite [--games 256] [--out DIR]

``pipeline_suite`` measures on the 2-core CPU machines CI uses, where network inference
is a large share of a warm start. This suite times the public call
``hybrid_nes.solve_batch(games, concept, "me", warm_start=...)`` for "cold" and "nes" with
Newton, and "cold" with the solvers' "auto" method (the faster cold path on large CEs), on
the same fresh L2-invariant games, whatever the machine (run it on a GPU host to see the
case the warm start is built for: batched inference that costs little). Each
configuration is called once to compile (JAX and Numba), then timed in interleaved
rounds, keeping the best (``pipeline_suite``'s timing rule and certification); reported
per cell: median Newton iterations, ms per game, the share of the warm time spent on
inference, the warm/cold speed-up and the speed-up over the faster cold path. Written
to ``DIR/accelerator_suite.json`` and printed as a markdown table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.games import l2_invariant_games
from benchmarks.pipeline_suite import _interleaved, _summarise
from benchmarks.results import markdown_table, write_json_atomic

#: (concept, shape) cells: where the CPU runs found the cold path long (CE, 32x32).
CELLS = (("ce", (8, 8)), ("ce", (16, 16)), ("ce", (32, 32)), ("cce", (16, 16)), ("cce", (32, 32)))
ROUNDS = 3


def _time_cell(concept: str, shape: tuple[int, ...], games: np.ndarray, rounds: int) -> dict:
    """Best-of-``rounds`` wall time of cold and warm ``solve_batch`` on ``games`` ``[B, N, A..]``."""
    import jax

    import hybrid_nes

    def call(start: str, method: str) -> Callable[[], list]:
        return lambda: hybrid_nes.solve_batch(games, concept, "me", warm_start=start, method=method)

    # the first call of each compiles (and is timed too; a later round is always faster)
    units = {("cold", "newton"): call("cold", "newton"), ("e2e", "newton"): call("nes", "newton"),
             ("cold", "auto"): call("cold", "auto")}
    sols, best = _interleaved(units, rounds)
    row = {"concept": concept, "shape": "x".join(map(str, shape)), "games": len(games),
           "device": jax.devices()[0].device_kind}
    for unit, name in ((("cold", "newton"), "cold"), (("e2e", "newton"), "warm"), (("cold", "auto"), "cold_auto")):
        summary = _summarise(sols[unit], best[unit])
        row[f"{name}_iters_median"] = summary["median_iters"]
        row[f"{name}_ms_per_game"] = 1e3 * summary["s_per_game"]
        row[f"{name}_certified"] = summary["certified"]
    warm = units[("e2e", "newton")]()  # stage timings of a steady call (the first one compiled)
    stages = sum(sum(v for k, v in s.timings.items() if k != "total") for s in warm)
    row["warm_inference_share"] = sum(s.timings.get("inference", 0.0) for s in warm) / max(stages, 1e-12)
    row["speedup"] = row["cold_ms_per_game"] / row["warm_ms_per_game"]
    # Against the faster cold path: the solvers' "auto" (a first-order pass before Newton
    # on large hard-constraint CEs) beats cold Newton there.
    row["speedup_vs_best_cold"] = min(row["cold_ms_per_game"], row["cold_auto_ms_per_game"]) / row["warm_ms_per_game"]
    return row


def main(games: int = 256, out_dir: Path = Path("benchmarks/results"), cells=CELLS, rounds: int = ROUNDS) -> list[dict]:
    rng = np.random.default_rng(7)
    rows = []
    for concept, shape in cells:
        t = time.perf_counter()
        rows.append(_time_cell(concept, shape, l2_invariant_games(rng, games, shape), rounds))
        print(f"{concept} {shape}: {time.perf_counter() - t:.1f} s", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "accelerator_suite.json", {"rows": rows})
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=256, help="games per cell")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds per configuration")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    main(args.games, args.out, rounds=args.rounds)
