"""Cost of an exact equilibrium gradient (``hybrid_nes.diff``) against the cost of the solve.

For each cell (8x8 CE, 32x32 CE, 8x8 CCE; ME selection, random N(0, 1) games) and a few
games per cell, median wall times (warm: compiled, Numba cache loaded) of

- ``solve``: ``solvers.solve(game, concept)`` (the exact solver alone);
- ``forward``: ``jax.jit(diff.solve)`` (the same solver through ``pure_callback``, plus the
  free-set classification and, on a face, the face LPs);
- ``grad``: ``jax.jit(jax.value_and_grad(lambda g: sum(diff.solve(g).joint * v)))``
  (forward + implicit backward);

and the ratios ``backward / solve`` (``backward = grad - forward``), ``grad / solve`` and
``grad / forward``. The target of issue 24 is a gradient within 2x of the solve.

cvxpylayers is not installed (no network access to install it here), so there is no
comparison with it.

    python -m benchmarks.diff_suite [--quick]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.results import markdown_table, write_json_atomic
from solvers.atomic import write_text_atomic

CELLS: tuple[tuple[str, tuple[int, ...]], ...] = (("ce", (8, 8)), ("ce", (32, 32)), ("cce", (8, 8)))


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(concept: str, shape: tuple[int, ...], num_games: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    import solvers
    from hybrid_nes import diff

    rows = []
    jax.config.update("jax_enable_x64", True)  # global: the callbacks run on XLA's threads
    v = jnp.asarray(np.random.default_rng(123).standard_normal(shape))
    fwd = jax.jit(lambda g: diff.solve(g, concept).joint)
    val_grad = jax.jit(jax.value_and_grad(
        lambda g: jnp.sum(diff.solve(g, concept, on_degenerate="nan").joint * v)))
    for seed in range(num_games):
        game = np.random.default_rng(seed).standard_normal((len(shape),) + shape)
        gj = jnp.asarray(game)
        out = diff.solve(gj, concept)
        fwd(gj).block_until_ready()
        jax.block_until_ready(val_grad(gj))
        solvers.solve(game, concept)
        t_solve = _median_time(lambda game=game: solvers.solve(game, concept), repeats)
        t_fwd = _median_time(lambda gj=gj: fwd(gj).block_until_ready(), repeats)
        t_grad = _median_time(lambda gj=gj: jax.block_until_ready(val_grad(gj)), repeats)
        rows.append({
            "seed": seed, "status": int(out.status), "face": not bool(np.all(np.asarray(out.support))),
            "free": int(np.asarray(out.free).sum()), "solve_s": t_solve, "forward_s": t_fwd, "grad_s": t_grad,
        })
    solve_s = float(np.median([r["solve_s"] for r in rows]))
    fwd_s = float(np.median([r["forward_s"] for r in rows]))
    grad_s = float(np.median([r["grad_s"] for r in rows]))
    backward_s = max(grad_s - fwd_s, 0.0)
    return {
        "concept": concept, "shape": "x".join(map(str, shape)), "games": num_games,
        "on_face": sum(r["face"] for r in rows), "differentiable": sum(r["status"] == 0 for r in rows),
        "median_free_rows": float(np.median([r["free"] for r in rows])),
        "solve_ms": 1e3 * solve_s, "forward_ms": 1e3 * fwd_s, "grad_ms": 1e3 * grad_s,
        "backward_ms": 1e3 * backward_s, "backward/solve": backward_s / solve_s,
        "grad/solve": grad_s / solve_s, "grad/forward": grad_s / fwd_s, "per_game": rows,
    }


def main(quick: bool = False, out_dir: Path = Path("benchmarks/results")) -> dict:
    num_games, repeats = (2, 3) if quick else (5, 7)
    results = [measure(c, s, num_games, repeats) for c, s in CELLS]
    data = {"suite": "diff_suite", "quick": quick, "machine": platform.platform(),
            "processor": platform.processor(), "cells": results,
            "cvxpylayers": "not installed (not installable offline here): no comparison"}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "diff_suite.json", data)
    cols = ["concept", "shape", "games", "on_face", "differentiable", "median_free_rows", "solve_ms",
            "forward_ms", "grad_ms", "backward_ms", "backward/solve", "grad/solve", "grad/forward"]
    text = "\n".join([
        "# diff_suite: cost of an exact equilibrium gradient (hybrid_nes.diff)",
        "",
        f"mode: {'quick' if quick else 'full'}; {num_games} random N(0,1) games per cell, ME selection, "
        f"median of {repeats} warm runs per game, then the median over games; float64; shared 2-core CPU.",
        "",
        "- `solve`: `solvers.solve` alone; `forward`: `jit(diff.solve)` (the solver through "
        "`pure_callback`, free-set classification, face LPs on a face: the facial-reduction LP and the "
        "two perturbed LPs of the face-change check); `grad`: `jit(value_and_grad)` of a linear "
        "function of the joint (forward + implicit backward); `backward = grad - forward`.",
        "- Target (issue 24): gradient within 2x of the solve.",
        "- cvxpylayers: not installed (not installable offline here), no comparison.",
        "",
        markdown_table([{k: r[k] for k in cols} for r in results], cols),
        "",
    ])
    write_text_atomic(out_dir / "diff_suite.md", text)
    print(text)
    return data


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    main(quick=args.quick, out_dir=args.out)
