"""The 3-player networks measured: NES alone, and what their warm start does to exact solves.

    python -m benchmarks.nes_suite --players-only [--quick]

Held-out L2-invariant 3-player games (``PLAYERS_SEED``: no training run draws from it),
ME selection with hard constraints, per concept and shape:

- **NES alone** (``accuracy_rows``): (C)CE gap, solver gap (half the L1 distance to the
  exact joint of ``solvers.solve_batch``) and dual sub-optimality of the shipped 3-player
  network, of the 2-player network run on 3-player games (``allow_untrained``; the
  3-player network's parent) and of the uniform joint (duals 0).
- **Warm vs cold** (``solve_rows``): ``hybrid_nes.solve_exact(game, warm_start="nes")``
  against ``warm_start="cold"`` one game at a time, interleaved per game (best of
  ``repeats`` each, after one untimed call per shape that compiles and calibrates):
  iterations, median wall and total CPU time per game, and the fraction certified
  (``status == "optimal"``); and ``hybrid_nes.solve_batch`` of all the games at once.

The machine is shared: each row records the load average next to its timings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import jax
import numpy as np

import hybrid_nes
from hybrid_nes.evaluation import score_duals
from hybrid_nes.model import NESModel
from hybrid_nes.sampling import sample_batch
from solvers.gains import gain_layout

__all__ = ["PLAYERS_SEED", "SHAPES", "QUICK_SHAPES", "accuracy_rows", "solve_rows", "players_results", "players_markdown"]

#: Root seed of the held-out 3-player games (training runs draw from their own ``seed``).
PLAYERS_SEED = 3_032_026
SHAPES = ((3, 3, 3), (4, 4, 4), (5, 5, 5), (6, 6, 6))
QUICK_SHAPES = ((3, 3, 3), (4, 4, 4))


def _name(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def held_out_games(shape: Sequence[int], games: int) -> tuple[np.ndarray, object]:
    """``(games [B, 3, A1..A3] float64, SelectionInputs)``: ME, hard constraints."""
    key = jax.random.fold_in(jax.random.PRNGKey(PLAYERS_SEED), int(np.prod(shape)))
    games32, sel = sample_batch(key, games, tuple(shape), ("me",))
    return np.asarray(games32, np.float64), sel


def accuracy_rows(model: NESModel, parent: NESModel | None, concept: str, shape: Sequence[int],
                  games: int) -> list[dict]:
    """NES alone on ``games`` held-out games of ``shape``: one row per candidate."""
    from benchmarks.nes_suite import exact_reference

    g, sel = held_out_games(shape, games)
    ref, _ = exact_reference(g, sel, concept)
    g32 = np.asarray(g, np.float32)
    candidates = {"3-player NES": model.predict_normalised(g32, sel)}
    if parent is not None:
        candidates["2-player NES (untrained N=3)"] = parent.predict_normalised(g32, sel, allow_untrained=True)
    candidates["uniform joint"] = np.zeros((games, gain_layout(tuple(shape), concept).num_constraints))
    rows = []
    for name, duals in candidates.items():
        s = score_duals(g32, sel, np.asarray(duals), concept, ref)
        rows.append({"concept": concept, "shape": _name(shape), "duals": name, "games": games,
                     "gap": float(s.gap.mean()), "solver gap": float(s.solver_gap.mean()),
                     "dual sub-opt": float(s.suboptimality.mean())})
    return rows


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def solve_rows(model: NESModel, concept: str, shape: Sequence[int], games: int, repeats: int = 3) -> list[dict]:
    """Cold against NES-warm exact solves of ``games`` held-out games of ``shape``."""
    g, _ = held_out_games(shape, games)
    starts = {"cold": {"warm_start": "cold"}, "nes": {"warm_start": "nes", "model": model}}
    first = {}
    for name, kw in starts.items():  # compile, calibrate statistics: once per shape
        _, first[name], _ = _timed(lambda kw=kw: hybrid_nes.solve_exact(g[0], concept, "me", **kw))
    best = {name: np.full(games, np.inf) for name in starts}
    cpu = {name: np.full(games, np.inf) for name in starts}
    sols: dict[str, list] = {name: [None] * games for name in starts}
    for b in range(games):
        for _ in range(repeats):
            for name, kw in starts.items():  # interleaved: both see the same load
                sol, wall, c = _timed(lambda kw=kw, b=b: hybrid_nes.solve_exact(g[b], concept, "me", **kw))
                best[name][b], cpu[name][b] = min(best[name][b], wall), min(cpu[name][b], c)
                sols[name][b] = sol
    batch = {}
    for name, kw in starts.items():
        batch_sols = hybrid_nes.solve_batch(g, concept, "me", **kw)  # untimed: compiles the batch size
        batch[name] = min(_timed(lambda kw=kw: hybrid_nes.solve_batch(g, concept, "me", **kw))[1:]
                          for _ in range(repeats))
        sols[name] += list(batch_sols)
    rows = []
    load = os.getloadavg()[0]
    for name in starts:
        single, batched = sols[name][:games], sols[name][games:]
        rows.append({
            "concept": concept, "shape": _name(shape), "start": name,
            "started": "/".join(sorted({str(s.info.get("warm_start")) for s in single})),
            "method": "/".join(sorted({s.method for s in single})),
            "certified": float(np.mean([s.status == "optimal" for s in sols[name]])),
            "iterations mean": float(np.mean([s.iterations for s in single])),
            "solve_exact median ms": 1e3 * float(np.median(best[name])),
            "solve_exact CPU ms/game": 1e3 * float(np.mean(cpu[name])),
            "first call s": first[name],
            "solve_batch iterations mean": float(np.mean([s.iterations for s in batched])),
            "solve_batch wall ms": 1e3 * batch[name][0], "solve_batch CPU ms": 1e3 * batch[name][1],
            "load avg": load,
        })
    cold, warm = rows
    for key in ("solve_exact median ms", "solve_batch wall ms"):
        warm[f"{key.split()[0]} cold/warm"] = cold[key] / warm[key]
    return rows


def players_results(models: dict[str, NESModel], parents: dict[str, NESModel | None], quick: bool) -> dict:
    """The 3-player section of ``nes_suite``: ``models`` route 3-player games to their
    3-player network (``load_pretrained``); ``parents`` are the 2-player networks alone."""
    shapes = QUICK_SHAPES if quick else SHAPES
    acc_games, solve_games = (16, 8) if quick else (64, 24)
    out = {"players_seed": PLAYERS_SEED, "accuracy_games": acc_games, "solve_games": solve_games,
           "players_accuracy": [], "players_solve": []}
    for concept, model in models.items():
        if 3 not in model.players:
            continue
        for shape in shapes:
            out["players_accuracy"] += accuracy_rows(model, parents.get(concept), concept, shape, acc_games)
            out["players_solve"] += solve_rows(model, concept, shape, solve_games if max(shape) < 8 else solve_games // 2)
            print(out["players_solve"][-1], flush=True)
    return out


def players_markdown(results: dict) -> list[str]:
    """Model-card / results lines of the 3-player tables (``players_results``)."""
    from benchmarks.results import markdown_table

    if not results.get("players_accuracy"):
        return []
    return [
        f"Held-out L2-invariant 3-player games (seed {results['players_seed']}), ME (hard constraints).",
        f"NES alone, {results['accuracy_games']} games per shape: gap is the (C)CE gap (normalised units),",
        "solver gap half the L1 distance to the exact joint; the 2-player network runs with",
        "`allow_untrained=True`; 4x4x4 and 6x6x6 were not trained on.",
        "",
        markdown_table(results["players_accuracy"]),
        f"Warm (`warm_start=\"nes\"`) against cold exact solves, {results['solve_games']} games per shape:",
        "`solve_exact` one game at a time, interleaved, best of 3 per game; `first",
        "call s` is the untimed first call of the shape (compiles, calibrates); `solve_batch`",
        "solves all the games at once; `certified`: the fraction of all those answers (single and",
        "batch) with `status == \"optimal\"`. The",
        "machine is a shared, loaded 2-core CPU (`load avg`): read the cold/warm ratios.",
        "",
        markdown_table(results["players_solve"]),
        _verdict(results["players_solve"]),
        "",
    ]


def _verdict(rows: list[dict]) -> str:
    """Which cells the warm start pays in (cold/warm > 1): the ones ``warm_start="auto"`` may take."""
    warm = [r for r in rows if r["start"] == "nes"]
    pays = [f"{r['concept']}/{r['shape']}" for r in warm if max(r["solve_exact cold/warm"], r["solve_batch cold/warm"]) > 1]
    return (f"The warm start pays (cold/warm > 1) in {len(pays)} of {len(warm)} cells{': ' + ', '.join(pays) if pays else ''}; "
            "`warm_start=\"auto\"` starts the others cold (3-player cells are not in `auto_policy.json`).")
