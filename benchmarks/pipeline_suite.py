"""Cold vs warm (NES) start of the exact solvers, per method, size, concept and preset.

    python -m benchmarks.pipeline_suite [--quick]

For every cell (suite, shape, concept, preset) and dual method (Newton, first-order, and
the solvers' "auto" where it differs from both: a short first-order pass, then Newton) the
same games are solved cold (zero duals) and warm (the shipped network's duals), batched;
reported: median / p90 iterations to tol, wall seconds per game with and without network
inference, the fraction certified (status optimal, gap <= tol). ``warm_start="auto"`` is
timed on the same games and compared with the best of the four. All configurations of
a cell are timed together, in interleaved rounds of calls lasting at least
``MIN_UNIT_S``, keeping each one's best round. Suites: L2-invariant random games (4x4
to 32x32, 4x4x4), structured GAMUT-like classes (8x8) and classic games, each for CCE and
CE, ME and MRE (quick mode: ME). Baselines on the first ``BASELINE_GAMES`` games of every
cell (full mode): the same ME / MRE model in CVXPY (Clarabel, ECOS, SCS) and the
max-welfare LP (HiGHS).

An oracle study (ME-CE, Newton) starts from the exact duals, perturbed, clipped or
shrunk, to show how close to them a warm start must be to save iterations; a second one
(ME-CCE, both methods) starts from the exact duals with relative noise 1e-1 .. 1e-6, to
show what accuracy a given saving of iterations asks of any warm start.

Also written: convergence curves (median gap after k iterations, cold vs warm, against k
and against wall time) and the warm/cold speed-up against game size, as PNG figures.
The run records the measured best (warm, method) per cell as ``policy``; it does not
change the table ``warm_start="auto"`` reads (``hybrid_nes/pretrained/auto_policy.json``):
``hybrid-nes policy --from benchmarks/results/pipeline_suite.json`` prints what the run
would change there and ``--write`` writes it (``hybrid_nes.auto_policy``).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

import solvers
from benchmarks.games import classic_games, l2_invariant_games, structured_games
from benchmarks.results import (
    markdown_table,
    write_figure_atomic,
    write_json_atomic,
    write_text_atomic,
)
from benchmarks.solvers_suite import _cvxpy_solve
from hybrid_nes import pipeline
from hybrid_nes.auto_policy import policy_from_rows
from hybrid_nes.model import duals_to_payoff_units, load_pretrained
from solvers.gains import num_constraints
from solvers.game import normalise_batch
from solvers.lp import max_welfare
from solvers.policy import auto_first_pass
from solvers.refine import refine_batch
from solvers.selection import Selection, resolve_selection

TOL = 1e-8
METHODS = ("newton", "gd")
#: (shape, games per cell) of the random L2-invariant suite; quick mode uses fewer.
RANDOM_CELLS = {(4, 4): 64, (8, 8): 64, (16, 16): 16, (32, 32): 8, (4, 4, 4): 16}
QUICK_CELLS = {(4, 4): 16, (8, 8): 16, (16, 16): 4}
#: First-order runs are capped here (iterations) so that one slow cell cannot eat the budget.
GD_MAX_ITER = 5000
BASELINE_GAMES = 3
#: Interleaved timing rounds per cell; each round times every configuration once, in a
#: rotated order, so that a load change on the shared machine hits all of them alike.
ROUNDS = 5
#: ``--quick``: fewer rounds (a smoke run of the same cells, within ~2 minutes).
QUICK_ROUNDS = 2
#: A timed unit repeats its call until it lasts at least this long (timeit's autorange):
#: a 4x4 CCE batch solves in under a millisecond, too short to time once.
MIN_UNIT_S = 0.05
#: Configurations slower than this factor times the fastest candidate (first call)
#: cannot be the best of the cell: they leave the rounds after ``SLOW_ROUNDS`` (32x32 first-order
#: runs take seconds).
SLOW_FACTOR = 3.0
SLOW_ROUNDS = 2
#: A warm start is preferred only when it is at least this factor faster.
WARM_MARGIN = 1.1
CURVE_SHAPES = ((8, 8), (16, 16))
CURVE_ITERS = {"newton": (1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30),
               "gd": (1, 3, 10, 30, 100, 300, 1000, 3000)}


def _selection(preset: str, shape: tuple[int, ...], rng: np.random.Generator) -> Selection:
    if preset == "mre":
        return Selection.mre(rng.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape))
    return Selection.me()


def _summarise(sols: list, seconds: float, extra_seconds: float = 0.0) -> dict:
    iters = np.array([s.iterations for s in sols])
    certified = np.array([s.ok and s.normalised_gap <= TOL for s in sols])
    return {
        "median_iters": float(np.median(iters)),
        "p90_iters": float(np.percentile(iters, 90)),
        "s_per_game": seconds / len(sols),
        "s_per_game_with_nes": (seconds + extra_seconds) / len(sols),
        "certified": float(certified.mean()),
        "uncertified": [i for i, ok in enumerate(certified) if not ok],
    }


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _interleaved(units: dict[tuple[str, str], Callable[[], object]],
                 rounds: int = ROUNDS) -> tuple[dict, dict[tuple[str, str], float]]:
    """Output and best wall seconds per call of each zero-argument ``units[key]``.

    The first call of each unit gives its output and sizes its timed unit (enough calls
    for ``MIN_UNIT_S``); then ``rounds`` rounds time every unit once each, in a rotated
    order; a unit's time is its best round (timeit's rule: the minimum is the run least
    disturbed by other load). Units ``SLOW_FACTOR`` slower than the fastest candidate
    (cold, end-to-end warm, auto) stop after ``SLOW_ROUNDS`` rounds; auto never does.
    """
    outs, first = {}, {}
    for key, fn in units.items():
        outs[key], first[key] = _timed(fn)
    # The best of the cell is a cold, end-to-end warm or auto run (not inference alone).
    fastest = min(sec for key, sec in first.items() if key[0] in ("cold", "e2e", "auto"))
    calls = {key: max(1, math.ceil(MIN_UNIT_S / max(sec, 1e-9))) for key, sec in first.items()}
    best = dict(first)
    keys = list(units)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            if r >= SLOW_ROUNDS and key[0] != "auto" and first[key] > SLOW_FACTOR * fastest:
                continue
            start = time.perf_counter()
            for _ in range(calls[key]):
                units[key]()
            best[key] = min(best[key], (time.perf_counter() - start) / calls[key])
    return outs, best


def _network_duals(model, games: np.ndarray, concept: str, sel: Selection) -> np.ndarray:
    """``[B, K]`` the network's warm-start duals in payoff units, as the pipeline makes them:
    normalise -> predict -> ``pipeline.warm_duals`` -> payoff units."""
    norm = normalise_batch(games)
    alpha = model.predict_normalised(norm.payoffs, model.selection_inputs(norm, sel))
    return duals_to_payoff_units(pipeline.warm_duals(alpha), norm.scale, tuple(games.shape[2:]), concept)


def _warm_end_to_end(model, games: np.ndarray, concept: str, sel: Selection, method: str, cap: int | None):
    """The NES-warm-started solve as one timed unit: normalise -> predict -> refine."""
    duals0 = _network_duals(model, games, concept, sel)
    return solvers.solve_batch(games, concept, sel, duals0=duals0, tol=TOL, method=method, max_iter=cap)


def _cell(name: str, games: np.ndarray, concept: str, sel: Selection, model, baselines: bool,
          rounds: int = ROUNDS) -> list[dict]:
    """All rows of one cell: cold/warm x method, auto, and the baselines, timed interleaved."""
    shape = tuple(games.shape[2:])
    num = len(games)
    norm = normalise_batch(games)
    units: dict[tuple[str, str], Callable[[], object]] = {}
    try:
        model.check_shape(shape)
        duals0 = _network_duals(model, games, concept, sel)  # also compiles outside the timings
        sel_in = model.selection_inputs(norm, sel)
        units[("inference", "-")] = functools.partial(model.predict_normalised, norm.payoffs, sel_in)
    except ValueError as err:
        duals0 = None
        print(f"  {name}: no warm start ({err})")
    # The solvers' own "auto" method (a short first-order pass, then Newton) is timed
    # where it differs from both: large hard-constraint CEs.
    first_pass = auto_first_pass(concept, len(shape), num_constraints(shape, concept), sel.hard)
    methods = METHODS + (("auto",) if first_pass else ())
    for method in methods:
        cap = GD_MAX_ITER if method == "gd" else None
        # Untimed first call per (shape, concept, method): per-shape caches, thread start-up.
        solvers.solve_batch(games[:2], concept, sel, tol=TOL, method=method, max_iter=cap)
        solve = functools.partial(solvers.solve_batch, games, concept, sel, tol=TOL, method=method, max_iter=cap)
        units[("cold", method)] = solve
        if duals0 is not None:
            units[("warm", method)] = functools.partial(solve, duals0=duals0)
            # End to end as one unit (normalise, inference, refinement): the sum of
            # separately timed stages would flatter the warm start.
            units[("e2e", method)] = functools.partial(_warm_end_to_end, model, games, concept, sel, method, cap)
    units[("auto", "auto")] = functools.partial(pipeline.solve_batch, games, concept, sel, warm_start="auto",
                                                tol=TOL, model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs, seconds = _interleaved(units, rounds)
    rows, timings = [], {}
    for method in methods:
        row = {"cell": name, "concept": concept, "preset": sel.name, "method": method, "start": "cold",
               **_summarise(outs[("cold", method)], seconds[("cold", method)])}
        rows.append(row)
        timings[(False, method)] = row["s_per_game_with_nes"]
        if duals0 is not None:
            t_warm, t_e2e = seconds[("warm", method)], seconds[("e2e", method)]
            row = {"cell": name, "concept": concept, "preset": sel.name, "method": method, "start": "warm",
                   **_summarise(outs[("warm", method)], t_warm, max(t_e2e - t_warm, 0.0)),
                   "s_inference_per_game": seconds[("inference", "-")] / num}
            rows.append(row)
            timings[(True, method)] = row["s_per_game_with_nes"]
    best = _pick(timings)
    auto = _summarise(outs[("auto", "auto")], seconds[("auto", "auto")])
    rows.append({"cell": name, "concept": concept, "preset": sel.name, "method": "auto", "start": "auto", **auto,
                 "s_per_game_with_nes": auto["s_per_game"],
                 "best": f"{'warm' if best[0] else 'cold'}+{best[1]}",
                 "auto_over_best": auto["s_per_game"] / min(timings.values())})
    if baselines:
        rows.extend(_baselines(name, games[:BASELINE_GAMES], concept, sel))
    for row in rows:
        row["shape"] = "x".join(map(str, shape))
        row["best_key"] = {"warm": best[0], "method": best[1]}
    return rows


def _pick(timings: dict[tuple[bool, str], float]) -> tuple[bool, str]:
    """The fastest (warm, method); a warm start must win by ``WARM_MARGIN`` to be picked
    (the cold path needs no network and is the more predictable on a loaded machine)."""
    cold = min((k for k in timings if not k[0]), key=timings.get)
    warm = [k for k in timings if k[0]]
    if warm:
        best_warm = min(warm, key=timings.get)
        if timings[best_warm] * WARM_MARGIN < timings[cold]:
            return best_warm
    return cold


def _baselines(name: str, games: np.ndarray, concept: str, sel: Selection) -> list[dict]:
    """CVXPY (the same ME / MRE model, hard constraints) and the max-welfare LP on ``games``."""
    rows = []
    if sel.name in ("me", "mre"):
        norms = [solvers.normalise(g) for g in games]
        bases = [None if sel.name == "me" else resolve_selection(sel, n).base_logits for n in norms]
        for solver in ("CLARABEL", "ECOS", "SCS"):
            runs = [_cvxpy_solve(n.payoffs, concept, solver, b) for n, b in zip(norms, bases, strict=True)]
            rows.append({"cell": name, "concept": concept, "preset": sel.name, "method": f"cvxpy+{solver.lower()}",
                         "start": "-", "s_per_game": float(np.median([r["seconds"] for r in runs])),
                         "certified": float(np.mean([r["gap"] <= TOL for r in runs]))})
    runs = [_timed(max_welfare, g, concept) for g in games]
    rows.append({"cell": name, "concept": concept, "preset": "mw-lp", "method": "lp_max_welfare", "start": "-",
                 "s_per_game": float(np.median([t for _, t in runs])),
                 "certified": float(np.mean([r.gap <= TOL * 10 for r, _ in runs]))})
    return rows


#: (shape, games) of the oracle warm-start study (ME-CE, Newton).
ORACLE_CELLS = {(8, 8): 100, (16, 16): 40}
ORACLE_CLIPS = (10.0, 30.0)


def _with_exact_duals(rng: np.random.Generator, cells: dict, concept: str):
    """Yields ``(shape, games, Selection.me(), exact duals [B, K])`` per ``{shape: games}``
    cell: fresh L2-invariant games and their exact ME duals (Newton, payoff units)."""
    sel = Selection.me()
    for shape, count in cells.items():
        games = l2_invariant_games(rng, count, shape)
        exact = np.stack([s.duals for s in solvers.solve_batch(games, concept, sel, tol=TOL, method="newton")])
        yield shape, games, sel, exact


def _oracle_starts(model, rng: np.random.Generator, quick: bool) -> list[dict]:
    """Newton iterations on ME-CE from warm starts built from the exact duals.

    What would a better network buy? The exact duals (0 iterations), the same with 10%
    multiplicative noise, clipped at a bound (a network's outputs are bounded), scaled
    down to the network's size (right direction, wrong length), and the network's duals
    on the exact support. Most ME-CE optima lie on a face of the simplex, where the exact
    duals are unbounded: this shows how close a warm start must come to them to pay.
    """
    rows = []
    for shape, games, sel, exact in _with_exact_duals(rng, {(8, 8): 20} if quick else ORACLE_CELLS, "ce"):
        net = _network_duals(model, games, "ce", sel)
        top = exact.max(axis=1, keepdims=True)
        starts = {
            "cold": None,
            "network": net,
            "exact": exact,
            "exact x U(0.9, 1.1)": exact * rng.uniform(0.9, 1.1, exact.shape),
            **{f"exact clipped at {c:g}": np.minimum(exact, c) for c in ORACLE_CLIPS},
            "exact x (network max / exact max)": exact * (net.max(axis=1, keepdims=True) / np.maximum(top, 1e-300)),
            "network on the exact support": np.where(exact > 1e-3 * top, net, 0.0),
        }
        for name, duals0 in starts.items():
            sols = solvers.solve_batch(games, "ce", sel, duals0=duals0, tol=TOL, method="newton")
            iters = np.array([s.iterations for s in sols])
            rows.append({"shape": "x".join(map(str, shape)), "start": name, "median_iters": float(np.median(iters)),
                         "mean_iters": float(iters.mean()), "certified": float(np.mean([s.ok for s in sols])),
                         "exact max dual (median)": float(np.median(top))})
    return rows


#: (shape, games) and relative noise levels of the accuracy study (ME-CCE, both methods).
ACCURACY_CELLS = {(8, 8): 64, (16, 16): 16}
ACCURACY_NOISE = (1e-1, 1e-2, 1e-4, 1e-6)


def _accuracy_needed(model, rng: np.random.Generator, quick: bool) -> list[dict]:
    """Iterations to tol from the exact duals times ``1 + U(-delta, delta)``, per method.

    Both methods converge linearly near the optimum, so the iterations a start saves grow
    with the log of its accuracy: the ratio cold / start at each ``delta`` is the saving
    a warm start of that accuracy can buy (the network's dual sub-optimality corresponds
    to about 1e-1 .. 1e-2).
    """
    rows = []
    for shape, games, sel, exact in _with_exact_duals(rng, {(8, 8): 16} if quick else ACCURACY_CELLS, "cce"):
        starts = {"cold": None, "network": _network_duals(model, games, "cce", sel),
                  **{f"exact x (1 + U(-{d:g}, {d:g}))": exact * (1 + rng.uniform(-d, d, exact.shape))
                     for d in ACCURACY_NOISE}}
        for method in METHODS:
            cold = None
            for name, duals0 in starts.items():
                sols = solvers.solve_batch(games, "cce", sel, duals0=duals0, tol=TOL, method=method)
                median = float(np.median([s.iterations for s in sols]))
                cold = median if cold is None else cold
                rows.append({"shape": "x".join(map(str, shape)), "method": method, "start": name,
                             "median_iters": median, "cold_over_start": cold / max(median, 1.0),
                             "certified": float(np.mean([s.ok for s in sols]))})
    return rows


def _curves(model, rng: np.random.Generator, quick: bool) -> dict:
    """Median normalised gap after k iterations (no face reduction, no polish), cold vs warm."""
    out = {}
    for shape in CURVE_SHAPES[:1] if quick else CURVE_SHAPES:
        games = l2_invariant_games(rng, 8 if quick else 16, shape)
        norm = normalise_batch(games)
        for concept in ("cce", "ce"):
            params = solvers.resolve_selection(Selection.me(), solvers.normalise(games[0]))
            net = load_pretrained(concept) if model is None else model[concept]
            alpha0 = pipeline.warm_duals(net.predict_normalised(norm.payoffs, net.selection_inputs(norm, Selection.me())))
            for method, ks in CURVE_ITERS.items():
                for start, a0 in (("cold", None), ("warm", alpha0)):
                    curve = []
                    for k in ks:
                        res, secs = _timed(refine_batch, norm.payoffs, concept, params, a0, method, TOL, k,
                                           face="never", polish=False)
                        curve.append({"iters": k, "gap": float(np.median(np.maximum(res.violation, 1e-16))),
                                      "s_per_game": secs / len(games)})
                    out[f"{concept}/{'x'.join(map(str, shape))}/{method}/{start}"] = curve
    return out


def _plots(curves: dict, rows: list[dict], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    keys = sorted({k.rsplit("/", 1)[0] for k in curves})
    fig, axes = plt.subplots(2, len(keys), figsize=(4 * len(keys), 7), squeeze=False)
    for j, key in enumerate(keys):
        for start, style in (("cold", "--"), ("warm", "-")):
            curve = curves.get(f"{key}/{start}", [])
            axes[0, j].loglog([c["iters"] for c in curve], [c["gap"] for c in curve], style, label=start)
            axes[1, j].loglog([c["s_per_game"] for c in curve], [c["gap"] for c in curve], style, label=start)
        axes[0, j].set_title(key, fontsize=9)
        axes[0, j].set_xlabel("iterations")
        axes[1, j].set_xlabel("seconds per game")
        axes[0, j].axhline(TOL, color="grey", lw=0.5)
        axes[1, j].axhline(TOL, color="grey", lw=0.5)
    axes[0, 0].set_ylabel("median (C)CE gap (normalised)")
    axes[1, 0].set_ylabel("median (C)CE gap (normalised)")
    axes[0, 0].legend()
    fig.tight_layout()
    path = out_dir / "pipeline_convergence.png"
    write_figure_atomic(fig, path)
    written.append(path.name)

    fig, ax = plt.subplots(figsize=(6, 4))
    for concept in ("cce", "ce"):
        for method in (*METHODS, "auto"):
            pts = []
            for row in rows:
                if row.get("concept") != concept or row.get("method") != method or not row["cell"].startswith("random"):
                    continue
                if row["start"] == "cold":
                    cold = row
                elif row["start"] == "warm":
                    pts.append((np.prod([int(x) for x in row["shape"].split("x")]), cold["s_per_game"] / row["s_per_game_with_nes"]))
            if pts:
                ax.semilogx(*zip(*sorted(pts), strict=True), "o-", label=f"{concept} {method}")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("joint actions |A|")
    ax.set_ylabel("cold / warm time per game (inference incl.)")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "pipeline_speedup.png"
    write_figure_atomic(fig, path)
    written.append(path.name)
    return written


def main(quick: bool = False, out_dir: Path = Path("benchmarks/results")) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2022)
    models = {c: load_pretrained(c) for c in ("cce", "ce")}
    solvers.solve_batch(l2_invariant_games(rng, 4, (3, 3)), "ce")  # compile the kernels once
    rows: list[dict] = []
    rounds = QUICK_ROUNDS if quick else ROUNDS
    presets = ("me",) if quick else ("me", "mre")
    start = time.perf_counter()
    for shape, count in (QUICK_CELLS if quick else RANDOM_CELLS).items():
        games = l2_invariant_games(rng, count, shape)
        for concept in ("cce", "ce"):
            for preset in presets:
                sel = _selection(preset, shape, rng)
                print(f"  random {shape} {concept} {preset}", flush=True)
                rows += _cell(f"random {'x'.join(map(str, shape))}", games, concept, sel, models[concept], baselines=True,
                              rounds=rounds)
    suites = [(f"gamut {gs.name}", gs.payoffs) for gs in structured_games(rng, 4 if quick else 16, 8)]
    suites += [(f"classic {gs.name}", gs.payoffs) for gs in classic_games()]
    for name, games in suites:
        for concept in ("cce", "ce"):
            for preset in presets:
                sel = _selection(preset, tuple(games.shape[2:]), rng)
                rows += _cell(name, games, concept, sel, models[concept], baselines=not quick, rounds=rounds)
    curves = _curves(models, rng, quick)
    oracle = _oracle_starts(models["ce"], rng, quick)
    accuracy = _accuracy_needed(models["cce"], rng, quick)
    figures = _plots(curves, rows, out_dir)
    policy = policy_from_rows(rows, TOL)  # recorded only: `hybrid-nes policy` reviews and writes it
    auto_rows = [r for r in rows if r["start"] == "auto"]
    uncertified = [f"{r['cell']} {r['concept']} {r['preset']} {r['method']} {r['start']}: games {r['uncertified']}"
                   for r in rows if r.get("uncertified")]
    result = {"mode": "quick" if quick else "full", "tol": TOL, "seconds": time.perf_counter() - start,
              "load_average": os.getloadavg(), "rows": rows, "curves": curves, "oracle_starts": oracle,
              "accuracy_needed": accuracy, "policy": policy,
              "auto_worst_over_best": max(r["auto_over_best"] for r in auto_rows), "uncertified": uncertified,
              "figures": figures}
    columns = ["cell", "concept", "preset", "method", "start", "median_iters", "p90_iters", "s_per_game",
               "s_per_game_with_nes", "certified", "auto_over_best"]
    text = [
        "# pipeline_suite: cold vs NES warm start",
        "",
        f"Mode: {result['mode']}; tol {TOL}; batched `solvers.solve_batch` per cell; seconds per game (wall). "
        f"`s_per_game_with_nes`: the warm solve timed end to end as one unit (normalise, inference, refinement). Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        markdown_table(rows, columns),
        f"warm_start='auto' worst time over the best of cold/warm x method: {result['auto_worst_over_best']:.2f}; "
        f"within 10% of the best in {sum(r['auto_over_best'] <= 1.1 for r in auto_rows)} of {len(auto_rows)} cells.",
        "",
        "## What a warm start must be to pay (ME-CE, Newton, oracle starts from the exact duals)",
        "",
        markdown_table(oracle),
        "## What accuracy a saving of iterations asks (ME-CCE, starts from the exact duals with relative noise)",
        "",
        markdown_table(accuracy),
        "Uncertified: " + ("none" if not uncertified else "; ".join(uncertified)),
        "",
        *[f"![{f}]({f})" for f in figures],
    ]
    write_json_atomic(out_dir / "pipeline_suite.json", result)
    write_text_atomic(out_dir / "pipeline_suite.md", "\n".join(text) + "\n")
    print("\n".join(text[:5]))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    main(args.quick, args.out)
