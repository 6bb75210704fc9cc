"""NES benchmark: the paper's Table 1 (NES alone, no refinement), speed, training curves.

    python -m benchmarks.nes_suite [--quick] [--model-card]

For each size (4x4, 8x8, 16x16, 32x32; ME-CCE, hard constraints) on fresh L2-invariant
games: mean CCE gap (paper definition, normalised units), mean solver gap (half the L1
distance to the exact joint from ``solvers.solve_batch``) and mean dual sub-optimality
``L(alpha) - L*``, for the shipped network, the uniform joint (alpha = 0) and the
one-line rule ``alpha = c max(0, gain under the uniform joint)`` (c = 1, 0.5). Also:
inference games/s at batch 4096 (8x8), training steps/s, the shipped CE network's
validation gaps, the 3-player networks (``benchmarks.nes_players``: NES alone, warm
against cold exact solves) and the training curves (figure). ``--model-card`` (the
default of a full run) rewrites ``hybrid_nes/pretrained/MODEL_CARD.md`` from these
results; ``--players-only`` re-measures the 3-player section alone into the last full
run's ``nes_suite.json`` (and the card from it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.games import structured_games
from benchmarks.nes_players import players_markdown, players_results
from benchmarks.results import (
    markdown_table,
    write_figure_atomic,
    write_json_atomic,
    write_text_atomic,
)
from hybrid_nes.evaluation import Reference, reference_optima, score_duals, uniform_rule_duals
from hybrid_nes.families import FAMILIES, HELD_OUT_FAMILIES, sample_family
from hybrid_nes.model import NESModel, load_pretrained, pretrained_path
from hybrid_nes.sampling import sample_batch, sample_selection
from hybrid_nes.train import FIRST_USE_CALIBRATION
from solvers.gains import gain_layout
from solvers.game import normalise_batch

SIZES = (4, 8, 16, 32)
CARD = Path(__file__).resolve().parents[1] / "hybrid_nes" / "pretrained" / "MODEL_CARD.md"
#: Measurements taken on a lent accelerator (train_on_device.sh), recorded by hand.
DEVICE_RUNS = Path(__file__).resolve().parent / "results" / "device_runs.json"


# Scaling the network's duals up trades selection accuracy (solver gap) for feasibility
# (CCE gap); the accuracy table shows the trade at this factor.
FEASIBILITY_SCALE = 1.05


#: Joint mass below which a cell counts as zero (an optimum on a face of the simplex).
FACE_MASS = 1e-9


def exact_reference(games: np.ndarray, sel, concept: str) -> tuple[Reference, str]:
    """Exact optima from ``solvers.solve_batch`` (ME, hard), else the SciPy reference."""
    try:
        from solvers import api

        sols = api.solve_batch(games, concept, "me", tol=1e-8)
        joints = np.stack([s.joint for s in sols])
        # P* <= L*: L(alpha) - P* bounds the dual sub-optimality from above (weak duality)
        losses = np.array([s.objective for s in sols])
        # Payoff-unit duals; the sampled games are already normalised (scale 1).
        player = gain_layout(tuple(games.shape[2:]), concept).player
        duals = np.stack([s.duals / s.scale[player] for s in sols])
        return Reference(duals, losses, joints), "solvers.solve_batch"
    except (ImportError, AttributeError):
        return reference_optima(games, sel, concept), "scipy L-BFGS-B"


def accuracy_table(model: NESModel, sizes, games_per_size: int, seed: int = 2026) -> tuple[list[dict], dict]:
    rows, info = [], {}
    for size in sizes:
        shape = (size, size)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), size)
        games32, sel = sample_batch(key, games_per_size, shape, ("me",))
        games = np.asarray(games32, np.float64)
        t0 = time.perf_counter()
        ref, source = exact_reference(games, sel, "cce")
        info[f"{size}x{size}"] = {"reference": source, "reference_s": time.perf_counter() - t0, **_face_stats(ref)}
        nes = model.predict_normalised(games, sel)
        candidates = {
            "NES": nes,
            f"NES duals x{FEASIBILITY_SCALE}": nes * FEASIBILITY_SCALE,
            "uniform joint": tuple(np.zeros((games_per_size, size)) for _ in range(2)),
            "rule c=1": uniform_rule_duals(games32, "cce", 1.0),
            "rule c=0.5": uniform_rule_duals(games32, "cce", 0.5),
        }
        for name, duals in candidates.items():
            s = score_duals(games32, sel, duals, "cce", ref)
            rows.append({
                "size": f"{size}x{size}",
                "method": name,
                "CCE gap": float(s.gap.mean()),
                "solver gap": float(s.solver_gap.mean()),
                "dual sub-opt": float(s.suboptimality.mean()),
            })
        print(markdown_table(rows[-len(candidates):]), flush=True)
    return rows, info


#: Root seed of the family evaluation games: training draws derive from a run's own seed
#: (``TrainConfig.seed``), so these seeds are held out from every training run.
FAMILY_EVAL_SEED = 7_112_026
#: Seed of the benchmarks' GAMUT-style structured set (``benchmarks.games``), never trained on.
STRUCTURED_SEED = 2028


def _family_row(model: NESModel, games32, split: str, name: str) -> dict:
    """NES alone vs the uniform joint on one batch of normalised games (ME-CCE, hard)."""
    games32 = jax.numpy.asarray(games32, jax.numpy.float32)
    sel = sample_selection(jax.random.PRNGKey(0), games32, ("me",))  # ME: no randomness
    games = np.asarray(games32, np.float64)
    ref, _ = exact_reference(games, sel, "cce")
    shape = games.shape[2:]
    nes = score_duals(games32, sel, model.predict_normalised(games, sel), "cce", ref)
    uniform = score_duals(games32, sel, np.zeros((games.shape[0], gain_layout(shape, "cce").num_constraints)), "cce", ref)
    return {"split": split, "family": name, "shape": "x".join(map(str, shape)), "games": games.shape[0],
            "NES solver gap": float(nes.solver_gap.mean()), "NES CCE gap": float(nes.gap.mean()),
            "uniform solver gap": float(uniform.solver_gap.mean()), **_face_stats(ref)}


def family_table(model: NESModel, games: int, shapes=((8, 8),), seed: int = FAMILY_EVAL_SEED) -> list[dict]:
    """Per family of ``hybrid_nes.families`` (seeds held out; ``HELD_OUT_FAMILIES`` never
    trained on), the benchmarks' structured classes (untouched) and random games."""
    rows = []
    for shape in shapes:
        for i, name in enumerate(FAMILIES):
            if not FAMILIES[name].supports(shape):
                continue
            key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), i), int(np.prod(shape)))
            split = ("random games, held-out seeds" if name == "random" else
                     "held-out family" if name in HELD_OUT_FAMILIES else "trained family, held-out seeds")
            rows.append(_family_row(model, sample_family(key, name, games, shape), split, name))
            print(markdown_table(rows[-1:]), flush=True)
    rng = np.random.default_rng(STRUCTURED_SEED)
    for gs in structured_games(rng, games, 8):
        rows.append(_family_row(model, normalise_batch(gs.payoffs).payoffs, "benchmarks.games (untouched)", gs.name))
        print(markdown_table(rows[-1:]), flush=True)
    return rows


def family_summary(rows: list[dict]) -> list[dict]:
    """Mean and worst NES solver gap per split and shape."""
    out = []
    def size(r: dict) -> str:  # the benchmarks' classes count as one 8-action set
        return "8x8 (congestion 7x7)" if r["split"].startswith("benchmarks") else r["shape"]

    for split, shape in dict.fromkeys((r["split"], size(r)) for r in rows):
        sel = [r for r in rows if r["split"] == split and size(r) == shape]
        worst = max(sel, key=lambda r: r["NES solver gap"])
        out.append({"split": split, "shape": shape, "families": len(sel),
                    "mean NES solver gap": float(np.mean([r["NES solver gap"] for r in sel])),
                    "worst": f"{worst['family']} {worst['NES solver gap']:.3g}",
                    "mean uniform solver gap": float(np.mean([r["uniform solver gap"] for r in sel]))})
    return out


def _face_stats(ref: Reference) -> dict:
    """How often the exact optima lie on a face of the simplex, and their duals' size.

    An optimum with joint cells at 0 lies on a face: its duals are unbounded (the dual
    infimum is approached, not attained), which a network with bounded outputs cannot reach.
    """
    num = ref.joint.shape[0]
    return {"optimum on a face": float(np.mean((ref.joint.reshape(num, -1) < FACE_MASS).any(axis=1))),
            "exact max dual (median)": float(np.median(ref.duals.max(axis=1)))}


def ce_validation(model: NESModel, sizes, games_per_size: int, seed: int = 2027) -> list[dict]:
    """ME-CE (hard constraints) against ``solvers.solve_batch`` (with facial reduction)."""
    rows = []
    for size in sizes:
        shape = (size, size)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), size)
        games32, sel = sample_batch(key, games_per_size, shape, ("me",))
        ref, source = exact_reference(np.asarray(games32, np.float64), sel, "ce")
        faces = _face_stats(ref)
        for name, duals in (("NES", np.asarray(model.predict_normalised(np.asarray(games32), sel))),
                            ("uniform joint", np.zeros((games_per_size, gain_layout(shape, "ce").num_constraints)))):
            s = score_duals(games32, sel, duals, "ce", ref)
            rows.append({"size": f"{size}x{size}", "method": name, "CE gap": float(s.gap.mean()),
                         "solver gap": float(s.solver_gap.mean()), "dual sub-opt": float(s.suboptimality.mean()),
                         "max dual (median)": float(np.median(duals.max(axis=1))), **faces,
                         "reference": source})
    return rows


def inference_speed(model: NESModel, batch: int = 4096, shape=(8, 8), repeats: int = 3) -> dict:
    games32, sel = sample_batch(jax.random.PRNGKey(0), batch, shape, ("me",))
    games = np.asarray(games32)
    sel = type(sel)(*(np.asarray(x) for x in sel))
    model.predict_normalised(games, sel)  # compile + statistics
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict_normalised(games, sel)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"shape": "x".join(map(str, shape)), "batch": batch, "seconds": best, "games_per_s": batch / best}


def training_speed(model: NESModel, shape=(8, 8), steps: int = 5, batch: int | None = None) -> dict:
    """Seconds per training step of ``model``'s config at ``shape`` (``batch``: None = the
    configured batch size; a smaller one for a quick smoke run)."""
    from hybrid_nes.train import TrainConfig, init_state, make_train_step

    overrides = {} if batch is None else {"batch_size": batch}
    config = TrainConfig.from_dict({**model.meta["config"], "network": model.config.to_dict(), **overrides})
    state = init_state(config)
    step = make_train_step(config)
    p, b, o = state.params, state.bn_state, state.opt_state
    lr = np.float32(config.learning_rate)
    out = step(p, b, o, np.int32(0), lr, shape)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for i in range(steps):
        p, b, o, loss, _ = step(p, b, o, np.int32(i + 1), lr, shape)
    jax.block_until_ready(loss)
    seconds = (time.perf_counter() - t0) / steps
    return {"shape": "x".join(map(str, shape)), "batch": config.batch_for(shape), "s_per_step": seconds,
            "steps_per_s": 1.0 / seconds}


def training_curves(models: dict[str, NESModel], out_dir: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for row, (concept, model) in enumerate(models.items()):
        rows = _curve_rows(model)
        if not rows:
            continue
        shapes = sorted({k.split("/")[0] for k in rows[-1] if "/" in k}, key=lambda s: int(s.split("x")[0]))
        starts = [i for i in range(1, len(rows)) if rows[i]["run"] != rows[i - 1]["run"]]
        for col, xkey in enumerate(("total step", "total wall (min)")):
            x = [r[xkey] for r in rows]
            ax = axes[row, col]
            for s in shapes:
                ax.plot(x, [r.get(f"{s}/solver_gap", np.nan) for r in rows], label=f"{s} solver gap")
                ax.plot(x, [r.get(f"{s}/gap", np.nan) for r in rows], "--", label=f"{s} {concept.upper()} gap")
            for i in starts:
                ax.axvline(x[i], color="grey", lw=0.8, ls=":")
            ax.set_yscale("log")
            ax.set_xlabel("step" if col == 0 else "wall time (min; each run on its own hardware)")
            ax.set_title(f"{concept.upper()} network ({len(starts) + 1} runs, dotted: a fine-tune starts)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    path = out_dir / "nes_training_curves.png"
    write_figure_atomic(fig, path)
    plt.close(fig)
    return path


def _runs(model: NESModel) -> list[tuple[str, int, list[dict]]]:
    """``(name, steps, validation history)`` of the runs behind a network, oldest first:
    the parents it was fine-tuned from (their histories as recorded), then its own run."""
    runs, parent = [("this run", int(model.meta.get("step") or 0), model.meta.get("history", []))], model.meta.get("parent")
    while parent:
        runs.append((f"`{parent['path']}`", int(parent["step"]), parent.get("history", [])))
        parent = parent.get("parent")
    return runs[::-1]


def _curve_rows(model: NESModel) -> list[dict]:
    """Validation rows of every run behind ``model``; "total step" and "total wall (min)"
    count from the first run (runs follow one another, each on its own hardware)."""
    rows, steps, wall = [], 0, 0.0
    for name, run_steps, hist in _runs(model):
        for h in hist:
            row = {"run": name, "step": h["step"], "total step": steps + h["step"], "wall (min)": h["wall_time_s"] / 60,
                   "total wall (min)": wall + h["wall_time_s"] / 60}
            row.update({k: v for k, v in h.items() if k.endswith("solver_gap") or k.endswith("/gap")})
            rows.append(row)
        steps += run_steps
        wall += hist[-1]["wall_time_s"] / 60 if hist else 0.0
    return rows


def _objective(cfg: dict) -> str:
    """The training objective a config names (``TrainConfig.gap_weight``)."""
    weight = float(cfg.get("gap_weight", 0.0))
    if weight == 0:
        return "mean dual loss L(alpha) (the paper's)"
    return f"mean of L(alpha) + {weight:g} x (C)CE gap of the predicted joint (`gap_weight`)"


def _training_games(cfg: dict) -> str:
    """The game distribution a config trains on (``TrainConfig.families``)."""
    families = cfg.get("families")
    if not families:
        return "uniform on the L2-invariant sphere (random games) only"
    total = sum(w for _, w in families)
    parts = ", ".join(f"{name} {w / total:.0%}" for name, w in families)
    return (f"a mixture of `hybrid_nes.families` ({parts}; shares of a batch among the families that "
            f"support its shape; never trained on: {', '.join(HELD_OUT_FAMILIES)})")


def _lineage(parent: dict | None) -> list[str]:
    """Model-card lines for the runs a fine-tuned network started from (newest first)."""
    lines = []
    while parent:
        lines.append(f"- fine-tuned from `{parent['path']}`: {parent['step']} steps, "
                     f"{parent['wall_time_s'] / 60:.1f} min on {parent.get('hardware') or 'unrecorded hardware'}")
        parent = parent.get("parent")
    return lines


def _calibration_note(model: NESModel) -> str:
    cal = model.meta.get("calibration") or {"games": 2048}  # files written before it was recorded
    cells = f" (at most {cal['max_cells']:,} joint actions)" if "max_cells" in cal else ""
    return f"{cal['games']:,} fresh games of the training distribution{cells}"


def _calibration_lines(models: dict[str, NESModel]) -> list[str]:
    notes = {c: _calibration_note(m) for c, m in models.items()}
    if len(set(notes.values())) == 1:
        return [f"  each shape's estimated from {next(iter(notes.values()))}."]
    return [f"  {c.upper()} statistics from {note};" for c, note in notes.items()]


def model_card(results: dict, models: dict[str, NESModel]) -> str:
    lines = ["# hybrid_nes pretrained Neural Equilibrium Solvers", ""]
    lines += [
        "Generated by `python -m benchmarks.nes_suite` (do not edit by hand).",
        "",
        "Two networks, `nes_cce.npz` and `nes_ce.npz`, loaded with",
        "`hybrid_nes.load_pretrained(concept=\"cce\" | \"ce\")`. Each predicts the duals of the",
        "eps-MWMRE selection problem (DESIGN.md §3-4) of a batch of games; the exact solvers",
        "in `solvers/` then refine them. Duals are returned in the flat `solvers.gains` layout,",
        "in normalised units by default (`units=\"payoff\"` converts).",
        "",
        "## Coverage",
        "",
        "- 2- and 3-player games (`nes_{concept}.npz`, `nes_{concept}_3p.npz`, one network per player",
        "  count, served by the same `load_pretrained(concept)`); trained on the shapes listed",
        "  below. BatchNorm statistics ship for",
        *(f"  {t}: {', '.join('x'.join(map(str, sh)) for sh in m.trained_shapes)};" for t, m in _networks(models)),
        *_calibration_lines(models),
        "  Any other 2- or 3-player shape works too (parameters do not depend on the game size): its",
        f"  statistics are calibrated on first use from {FIRST_USE_CALIBRATION.games:,} games (at most",
        f"  {FIRST_USE_CALIBRATION.max_cells:,} joint actions; seconds, cached per process).",
        "- Selections: ME and MRE (target ~ Dirichlet(1)), hard constraints, eps_hat = 0 —",
        "  the library's defaults. Other presets are accepted as input features (the network",
        "  sees eps_hat, eps_plus, rho, welfare) but were not trained: a rough warm start only.",
        "- Not covered: N >= 4 players (refused unless `allow_untrained=True`), Max Gini.",
        "",
    ]
    for title, model in _networks(models):
        cfg = model.meta.get("config", {})
        lines += [f"## {title} network", ""]
        lines += [
            f"- architecture: payoff channels {tuple(cfg['network']['payoff_channels'])}, dual channels "
            f"{cfg['network']['dual_channels']}, dual layers {tuple(cfg['network']['dual_layers'])}, BatchNorm + ReLU,"
            f" softplus output; {model.meta.get('num_parameters', '?')} parameters (float32)",
            f"- training shapes (weights): {', '.join('x'.join(map(str, s)) for s in cfg['shapes'])} "
            f"({cfg.get('shape_weights')})",
            f"- presets: {cfg['presets']}; batch {cfg['batch_size']} games (capped at "
            f"{cfg.get('batch_cells')} game-cells per step); Adam lr {cfg['learning_rate']} warm-up "
            f"{cfg['warmup_steps']} + cosine to {cfg['final_lr_factor']}x; adaptive gradient clipping "
            f"{cfg['clip']}; seed {cfg['seed']}",
            f"- objective: {_objective(cfg)}",
            f"- training games: {_training_games(cfg)}",
            f"- steps: {model.meta.get('step')}; wall time: {model.meta.get('wall_time_s', 0) / 60:.1f} min",
            f"- hardware: {model.meta.get('hardware', 'shared 2-core CPU, no GPU')}",
            *_lineage(model.meta.get("parent")),
            "",
            "Validation during training, every run behind the network, oldest first (fixed",
            "validation sets, batch statistics, normalised units; each run draws its own validation",
            "games from its seed, so values jump where a fine-tune starts):",
            "",
            markdown_table(_curve_rows(model)),
        ]
    lines += ["## Accuracy (paper Table 1: NES alone, no refinement)", ""]
    lines += [
        f"{results['games_per_size']} fresh L2-invariant games per size, ME-CCE (uniform target, hard",
        "constraints). CCE gap: sum over players of the positive part of the max expected",
        "deviation gain (normalised units); solver gap: half the L1 distance to the exact joint",
        f"({results['reference']}); dual sub-opt: L(alpha) - L*. Paper (8x8): CCE gap 0.0163,",
        f"solver gap 0.0054. \"NES duals x{FEASIBILITY_SCALE}\" multiplies the network's duals by",
        f"{FEASIBILITY_SCALE}: for users of the network alone who want a smaller CCE gap at the cost",
        "of a joint further from the selected one (the warm start uses the unscaled duals).",
        "",
        markdown_table(results["accuracy"]),
    ]
    if results.get("ce_validation"):
        lines += [
            "## CE network (ME-CE, hard constraints, NES alone)",
            "",
            f"{results['ce_games_per_size']} fresh games per size. \"optimum on a face\": fraction of games whose exact ME-CE puts",
            f"less than {FACE_MASS:g} on some joint action, i.e. lies on a face of the simplex; there the dual",
            "infimum is not attained (the duals of the exact solution grow without bound as the",
            "tolerance shrinks: \"exact max dual\" is the median largest dual at tol 1e-8), so a",
            "network with bounded outputs cannot reach it and the dual loss gives vanishing",
            "gradients along the diverging direction. This is why the CE network stays far from",
            "the CCE network's accuracy and why its warm start saves fewer Newton iterations.",
            "The ME-CCE optima of the accuracy table above, for comparison: "
            + "; ".join(f"{size}: {v['optimum on a face']:.0%} on a face, median largest dual "
                        f"{v['exact max dual (median)']:.2f}" for size, v in results["reference_info"].items()) + ".",
            "",
            markdown_table(results["ce_validation"]),
        ]
    if results.get("families"):
        lines += ["## Structured families (CCE network alone)", "", *family_markdown(results)]
    if results.get("players_accuracy"):
        lines += ["## 3-player networks", "", *players_markdown(results)]
    lines += ["## Speed (this machine)", "", f"Platform: {results['platform']}.", "",
              markdown_table([results["inference"]]), markdown_table([results["training"]])]
    device_runs = DEVICE_RUNS.exists() and json.loads(DEVICE_RUNS.read_text())
    if device_runs:
        lines += ["## Runs on an accelerator", "", f"From `{DEVICE_RUNS.relative_to(CARD.parents[2])}` (measured there,",
                  "copied here by hand; `benchmarks/train_on_device.sh` reproduces them):", ""]
        lines += [f"- {note}" for note in device_runs.get("notes", [])] + [""]
        for name, rows in device_runs.get("tables", {}).items():
            lines += [f"{name}:", "", markdown_table(rows)]
    lines += ["Training curves: `benchmarks/results/nes_training_curves.png`.", ""]
    return "\n".join(lines) + "\n"


def _networks(models: dict[str, NESModel]) -> list[tuple[str, NESModel]]:
    """``(title, network)`` of every network: the 2-player ones, then the attached ones."""
    out = [(c.upper(), m) for c, m in models.items()]
    return out + [(f"{c.upper()} {n}-player", m.network_for(n)) for c, m in models.items() for n in m.players if n != 2]


FAMILY_SHAPES = ((2, 2), (3, 3), (8, 8))


def family_results(model: NESModel, quick: bool, compare: NESModel | dict | None = None) -> dict:
    """The family table of ``model`` and of ``compare`` (e.g. the parent network: its
    weights, or the ``family_results`` of them from a ``--families-only`` run)."""
    games = 16 if quick else 100
    out = {"family_games": games, "families": family_table(model, games, FAMILY_SHAPES)}
    out["family_summary"] = family_summary(out["families"])
    if isinstance(compare, dict):
        if compare["family_games"] != games:
            raise ValueError(f"compare: {compare['family_games']} games per family, this run {games}")
        out["compare_path"] = compare["path"]
        out["families_compare"] = compare["families"]
    elif compare is not None:
        out["compare_path"] = str(compare.meta.get("path", ""))
        out["families_compare"] = family_table(compare, games, FAMILY_SHAPES)
    if "families_compare" in out:
        out["family_summary_compare"] = family_summary(out["families_compare"])
    return out


def family_markdown(results: dict) -> list[str]:
    """Model-card / results lines of the family tables (``family_results``)."""
    rows, other = results["families"], results.get("families_compare")
    table = []
    for i, r in enumerate(rows):
        row = {k: r[k] for k in ("split", "family", "shape")}
        if other:
            b = other[i]
            assert (b["family"], b["shape"]) == (r["family"], r["shape"]), "compare: rows differ"
            row["before: NES solver gap"] = b["NES solver gap"]
        row.update({"NES solver gap": r["NES solver gap"], "NES CCE gap": r["NES CCE gap"],
                    "uniform solver gap": r["uniform solver gap"], "optimum on a face": r["optimum on a face"]})
        table.append(row)
    summary = results["family_summary"]
    if other:
        before = {(b["split"], b["shape"]): b for b in results["family_summary_compare"]}
        summary = [{**s, "before: mean": before[s["split"], s["shape"]]["mean NES solver gap"],
                    "before: worst": before[s["split"], s["shape"]]["worst"]} for s in summary]
    lines = [
        f"{results['family_games']} games per family and shape, ME-CCE (hard), NES alone; solver gap as",
        "above. `hybrid_nes.families` generators at seeds no training run draws",
        f"(`FAMILY_EVAL_SEED`); {', '.join(HELD_OUT_FAMILIES)} were never trained on; the",
        "`benchmarks.games` GAMUT-style classes (8 actions; congestion 7) are a test set nobody",
        "trained or tuned on (normalised with `solvers.normalise_batch`).",
    ]
    if other:
        lines.append(f"\"before\": the parent network `{results['compare_path']}`.")
    return lines + ["", markdown_table(summary), markdown_table(table)]


def main(quick: bool = False, out_dir: Path = Path("benchmarks/results"), write_card: bool | None = None,
         compare: Path | None = None) -> dict:
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    cce = load_pretrained("cce")
    models = {"cce": cce}
    if pretrained_path("ce").exists():
        models["ce"] = load_pretrained("ce")
    sizes = (4, 8) if quick else SIZES
    games = 100 if quick else 1000
    rows, info = accuracy_table(cce, sizes, games)
    results = {
        "quick": quick,
        "games_per_size": games,
        "reference": sorted({v["reference"] for v in info.values()})[0],
        "reference_info": info,
        "accuracy": rows,
        "inference": inference_speed(cce, batch=1024 if quick else 4096),
        "training": training_speed(cce, steps=2 if quick else 5, batch=512 if quick else None),
        "platform": {"machine": platform.machine(), "cpus": os.cpu_count(), "jax": jax.__version__,
                     "devices": [str(d) for d in jax.devices()]},
    }
    if "ce" in models:
        results["ce_games_per_size"] = 32 if quick else 200
        results["ce_validation"] = ce_validation(models["ce"], (4,) if quick else (4, 8, 16), results["ce_games_per_size"])
    results.update(family_results(cce, quick, _load_compare(compare)))
    results.update(players_results(models, _parents(models), quick))
    curves = training_curves(models, out_dir)
    results["curves"] = str(curves) if curves else None
    results["seconds"] = time.perf_counter() - t0
    md = ["# NES suite", "", markdown_table(rows), markdown_table([results["inference"]]),
          markdown_table([results["training"]])]
    if results.get("ce_validation"):
        md.append(markdown_table(results["ce_validation"]))
    md += ["## Structured families (CCE network)", "", *family_markdown(results)]
    _write(results, md, models, out_dir, write_card if write_card is not None else not quick)
    return results


def _parents(models: dict[str, NESModel]) -> dict[str, NESModel]:
    """The 2-player networks alone (for the 3-player games they were not trained on)."""
    return {c: load_pretrained(c, pretrained_path(c)) for c in models}


def _write(results: dict, md: list[str], models: dict[str, NESModel], out_dir: Path, card: bool) -> None:
    """``nes_suite.{json,md}`` (the 3-player section appended to ``md``) and the card."""
    write_json_atomic(out_dir / "nes_suite.json", results)
    md = [*md, "## 3-player networks", "", *players_markdown(results)]
    write_text_atomic(out_dir / "nes_suite.md", "\n".join(md))
    if card:
        write_text_atomic(CARD, model_card(results, models))


def players_only(quick: bool, out_dir: Path, write_card: bool | None) -> dict:
    """Re-measures the 3-player section into ``out_dir/nes_suite.json`` (the last full run)."""
    models = {c: load_pretrained(c) for c in ("cce", "ce") if pretrained_path(c).exists()}
    results = json.loads((out_dir / "nes_suite.json").read_text())
    results.update(players_results(models, _parents(models), quick))
    md = (out_dir / "nes_suite.md").read_text().split("\n## 3-player networks")[0].split("\n")
    _write(results, md, models, out_dir, write_card if write_card is not None else not quick)
    return results


def _load_compare(path: Path | None) -> NESModel | dict | None:
    """``--compare``: CCE weights, or a ``nes_families.json`` of a ``--families-only`` run."""
    if path is None:
        return None
    if path.suffix == ".json":
        return json.loads(path.read_text())
    model = load_pretrained("cce", path)
    model.meta["path"] = str(path)
    return model


def _cli(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--model-card", action="store_true", help="rewrite MODEL_CARD.md even with --quick")
    parser.add_argument("--compare", type=Path,
                        help="CCE weights (e.g. the parent) scored on the family table too, or their "
                             "nes_families.json from --families-only")
    parser.add_argument("--families-only", type=Path, metavar="WEIGHTS",
                        help="only the family table of these CCE weights, to --out/nes_families.{json,md}")
    parser.add_argument("--players-only", action="store_true",
                        help="only the 3-player section, into the last run's nes_suite.json/md (and the card)")
    args = parser.parse_args(argv)
    if args.players_only:
        players_only(args.quick, args.out, True if args.model_card else None)
        return 0
    if args.families_only:
        res = family_results(load_pretrained("cce", args.families_only), args.quick, _load_compare(args.compare))
        res["path"] = str(args.families_only)
        write_json_atomic(args.out / "nes_families.json", res)
        write_text_atomic(args.out / "nes_families.md", "\n".join(family_markdown(res)))
        print(markdown_table(res["family_summary"]))
        return 0
    res = main(args.quick, args.out, True if args.model_card else None, args.compare)
    print(json.dumps({k: res[k] for k in ("inference", "training")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
