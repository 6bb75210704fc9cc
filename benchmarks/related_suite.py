"""Warm starts from the Solution of a related game (``solvers.related``) against cold starts.

Two workloads, warm and cold interleaved on the same inputs (the machine is shared: each
pair of timings is taken back to back, and a warm-up repetition is discarded):

- an agent-vs-task evaluation game (DESIGN §13), players ``[task, agent, agent]``,
  20 agents x 60 tasks grown to 21 x 66 (the new agent and tasks appended at the end of
  the axes, scores normalised per task to peak-to-peak 1 over the agents present);
- the meta-games of a JPSRO run on 3-player Kuhn poker with the ME-CE meta-solver
  (``hn_mece``), solved in sequence by meta-solvers with ``warm_start`` "cold",
  "previous", "related" and "auto" (total meta-solve time and final gaps).

A third table bounds what better start duals could buy on the grown game
(``run_ceiling``: starts from the new game's own optimal duals).

Run: ``python -m benchmarks.related_suite [--quick] [--jpsro-only | --no-jpsro]``; writes ``related_suite.json`` and
``related_suite.md`` into ``out_dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import solvers
from benchmarks.results import markdown_table, write_json_atomic, write_text_atomic

__all__ = ["evaluation_game", "run_evaluation", "run_ceiling", "run_breakdown", "run_seeds", "run_jpsro", "main"]

KUHN3 = "kuhn_poker(players=3)"
JPSRO_MODES: tuple[str, ...] = ("cold", "previous", "related", "auto")
#: Mean score advantage of the new agents (a stronger newcomer widens many tasks' score
#: ranges, so the renormalised game changes the old tasks' payoffs).
NEW_AGENT_SHIFT = 1.5


def evaluation_game(scores: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """``scores [agents, tasks]`` -> payoffs ``[3, T, A, A]`` (players task, agent, agent):
    task ``|s_t(a1) - s_t(a2)|``, agents ``+-(s_t(a1) - s_t(a2))``, ``s`` per task
    normalised to peak-to-peak 1 over the agents of ``reference`` (default: ``scores``)."""
    scores = np.asarray(scores, dtype=np.float64)
    ref = scores if reference is None else np.asarray(reference, dtype=np.float64)
    ptp = np.ptp(ref, axis=0)
    s = (scores - ref.min(axis=0)) / np.where(ptp > 0, ptp, 1.0)
    diff = s.T[:, :, None] - s.T[:, None, :]
    return np.stack([np.abs(diff), diff, -diff])


def _grown(agents: tuple[int, int], tasks: tuple[int, int], seed: int,
           renormalise: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(old, new)`` evaluation games of ``run_evaluation``."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(agents[1], tasks[1])) + rng.normal(size=(agents[1], 1))
    scores[agents[0]:] += NEW_AGENT_SHIFT
    old = evaluation_game(scores[: agents[0], : tasks[0]])
    if renormalise:
        return old, evaluation_game(scores)
    reference = scores.copy()
    reference[:, : tasks[0]] = np.concatenate([scores[: agents[0], : tasks[0]]] * 2)[: agents[1]]
    return old, evaluation_game(scores, reference)


def run_evaluation(concept: str, agents: tuple[int, int] = (20, 21), tasks: tuple[int, int] = (60, 66),
                   reps: int = 2, seed: int = 0, method: str = "auto", renormalise: bool = True) -> list[dict[str, Any]]:
    """Cold vs warm (``duals0=previous``) on the grown evaluation game, ``reps`` pairs after
    one warm-up pair. ``renormalise``: the grown game's old tasks are normalised over all
    agents (old payoff entries change where the new agent widens a task's range); False:
    old tasks keep the old agents' normalisation (old entries unchanged)."""
    old, new = _grown(agents, tasks, seed, renormalise)
    changed = float(np.abs(new[:, : tasks[0], : agents[0], : agents[0]] - old).max())
    previous = solvers.solve(old, concept, method=method)
    rows = []
    for rep in range(reps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        cold = solvers.solve(new, concept, method=method)
        t_cold, c_cold = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        warm = solvers.solve(new, concept, method=method, duals0=previous)
        t_warm, c_warm = time.perf_counter() - t0, time.process_time() - c0
        if rep == 0:
            continue
        rows.append(dict(
            concept=concept, method=method, game=f"{agents[0]}x{tasks[0]} -> {agents[1]}x{tasks[1]}",
            old_tasks="renormalised" if renormalise else "unchanged", old_payoff_change=changed,
            cold_s=t_cold, warm_s=t_warm, speedup=t_cold / t_warm, cold_cpu_s=c_cold, warm_cpu_s=c_warm,
            cpu_speedup=c_cold / c_warm, cold_iter=cold.iterations, warm_iter=warm.iterations,
            cold_fista=cold.info.get("first_order_iterations", ""), warm_fista=warm.info.get("first_order_iterations", ""),
            cold_cg=cold.info.get("cg_iterations", ""), warm_cg=warm.info.get("cg_iterations", ""),
            cold_method=cold.method, warm_method=warm.method,
            warm_start=warm.info["warm_start"], candidate=str(warm.info["warm_candidate"]),
            joint_diff=float(np.abs(warm.joint - cold.joint).max()), warm_status=warm.status.value,
            cold_status=cold.status.value,
        ))
    return rows


def run_seeds(concept: str = "ce", seeds: tuple[int, ...] = tuple(range(6)), agents: tuple[int, int] = (20, 21),
              tasks: tuple[int, int] = (60, 66)) -> list[dict[str, Any]]:
    """Cold vs warm on the grown evaluation game of other score seeds (one pair each, old
    tasks renormalised and unchanged): which warm route ran, and its speed-up."""
    rows = []
    for seed in seeds:
        for renormalise in (True, False):
            old, new = _grown(agents, tasks, seed, renormalise)
            previous = solvers.solve(old, concept)
            t0, c0 = time.perf_counter(), time.process_time()
            cold = solvers.solve(new, concept)
            t_cold, c_cold = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            warm = solvers.solve(new, concept, duals0=previous)
            t_warm, c_warm = time.perf_counter() - t0, time.process_time() - c0
            rows.append(dict(seed=seed, old_tasks="renormalised" if renormalise else "unchanged",
                             warm_start=warm.info["warm_start"], restricted=str(warm.info.get("restricted_shape", "")),
                             cold_s=t_cold, warm_s=t_warm, speedup=t_cold / t_warm, cold_cpu_s=c_cold,
                             warm_cpu_s=c_warm, cpu_speedup=c_cold / c_warm, cold_iter=cold.iterations,
                             warm_iter=warm.iterations, joint_diff=float(np.abs(warm.joint - cold.joint).max()),
                             warm_status=warm.status.value, cold_status=cold.status.value))
    return rows


def _from_start(game: np.ndarray, concept: str, duals: np.ndarray | None,
                first_order: int | None) -> tuple[int, Any, str, np.ndarray]:
    """``(iterations, FISTA iterations, status, joint)`` of the ME solve of ``game`` from
    ``duals`` (payoff units): ``solvers.solve`` (``first_order`` None), or ``newton_cg``
    with that many FISTA iterations first."""
    if first_order is None:
        sol = solvers.solve(game, concept, duals0=duals)
        return sol.iterations, sol.info.get("first_order_iterations", ""), sol.status.value, sol.joint
    from solvers.matrix_free import MatrixFreeGame
    from solvers.newton_cg import NewtonCGOptions, newton_cg

    norm = solvers.normalise(game)
    params = solvers.resolve_selection(solvers.as_selection("me"), norm)
    mf = MatrixFreeGame(norm.payoffs, concept)
    alpha0 = None if duals is None else duals / norm.scale[mf.player]
    res = newton_cg(mf, params.base_logits, params.eps_hat, params.eps_plus, float(params.rho), alpha0,
                    NewtonCGOptions(first_order_iter=first_order))
    status = "optimal" if res.status == 0 else f"code {res.status}"
    return res.iterations, res.first_order_iterations, status, np.asarray(res.joint).reshape(game.shape[1:])


def run_ceiling(concept: str, agents: tuple[int, int] = (20, 21), tasks: tuple[int, int] = (60, 66), seed: int = 0,
                renormalise: bool = True, reps: int = 2,
                first_order: tuple[int | None, ...] = (None,)) -> list[dict[str, Any]]:
    """What better start duals could buy on the grown evaluation game: iterations and
    seconds from zero, from ``warm_duals``' related start, from the new game's own optimal
    duals (``star``) scaled by 0.9, and from the carried duals with ``star``'s values on
    the new rows (plain duals, no watch and no candidate search). ``first_order``: None
    (``solvers.solve``) and/or FISTA counts before ``newton_cg``. Least time of ``reps``."""
    from solvers import related as rel

    old, new = _grown(agents, tasks, seed, renormalise)
    previous = solvers.solve(old, concept)
    reference = solvers.solve(new, concept)
    star = reference.duals
    shape = new.shape[1:]
    carried_rows, _ = rel.row_maps(rel.resolve_action_map(previous.joint.shape, shape), previous.joint.shape, concept)
    fresh = np.ones(star.size, dtype=bool)
    fresh[carried_rows] = False
    warm, info = rel.warm_duals(previous, new, concept)
    carried = rel.map_duals(previous, shape, concept, units=info["units"], new_scale=solvers.normalise(new).scale)
    starts = {"cold": None, "related start (warm_duals)": warm, "0.9 x own optimum": 0.9 * star,
              "carried + own optimum on new rows": np.where(fresh, star, carried)}
    rows = []
    for fo in first_order:
        for name, duals in starts.items():
            best = (math.inf, math.inf)
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                iterations, fista, status, joint = _from_start(new, concept, duals, fo)
                best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
            rows.append(dict(concept=concept, old_tasks="renormalised" if renormalise else "unchanged",
                             solver="solve" if fo is None else f"newton_cg, first_order_iter={fo}", start=name,
                             s=best[0], cpu_s=best[1], iterations=iterations, fista=fista, status=status,
                             joint_diff=float(np.abs(joint - reference.joint).max())))
    return rows


#: ``run_breakdown``: the Newton phase's parts (cProfile cumulative time of these functions).
NEWTON_PARTS = (("CG solves (_pcg)", "_pcg"), ("  Hessian-vector products", "hessian_vector"),
                ("  preconditioner solves", "apply"), ("dense H_SS formed (hessian_rows)", "hessian_rows"),
                ("dense factor (cho_factor)", "cho_factor"), ("evaluations (joint, gains, gradient)", "evaluate"),
                ("line-search losses", "loss"), ("certificates", "certificate"))


def run_breakdown(concept: str = "ce", agents: tuple[int, int] = (20, 21), tasks: tuple[int, int] = (60, 66),
                  seed: int = 0, renormalise: bool = True, reps: int = 2) -> list[dict[str, Any]]:
    """What the warm solve of the grown evaluation game consists of: the phases of the
    restricted route (``solvers.restricted``: dominance of the actions the previous joint
    left unplayed; ``newton_cg`` on the sub-game; lift and full-game certificate) run one
    by one, least CPU/wall time of ``reps``; the whole warm solve with and without that
    route (``RESTRICT_FRACTION = 0`` turns it off) and a cold solve on the same input; then
    the sub-game Newton phase's parts as fractions of its cProfile time (profiling
    inflates the Python-side parts)."""
    import cProfile
    import pstats

    from solvers import related as rel
    from solvers import restricted as rst
    from solvers.dominance import eliminate
    from solvers.matrix_free import MatrixFreeGame
    from solvers.newton_cg import NewtonCGOptions, blas_threads, certify, newton_cg

    old, new = _grown(agents, tasks, seed, renormalise)
    previous = solvers.solve(old, concept)
    norm = solvers.normalise(new)
    params = solvers.resolve_selection(solvers.as_selection("me"), norm)
    shape = new.shape[1:]
    maps = rel.resolve_action_map(previous.joint.shape, shape)
    cap = rel.mf_watch_cap(previous, None)
    args = (params.eps_hat, params.eps_plus, float(params.rho))
    base = params.base_logits.reshape(shape)
    phases: dict[str, Any] = {}

    def timed(name: str, fn):
        best = (math.inf, math.inf)
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            with blas_threads(1):
                out = fn()
            best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
        phases[name] = best
        return out

    hint = rst._previous_hint(previous.duals, previous.joint.shape, maps)
    elim = timed("dominance (candidates, hints, LPs)",
                 lambda: eliminate(norm.payoffs, rst.candidates(previous.joint, maps), hint))
    index = [np.flatnonzero(k) for k in elim.keep]
    sub = MatrixFreeGame(norm.payoffs[(slice(None),) + np.ix_(*index)], concept)
    sub_base = np.ascontiguousarray(base[np.ix_(*index)])
    opts = NewtonCGOptions(max_iter=cap, first_order_iter=cap)
    res = timed(f"sub-game {'x'.join(map(str, sub.shape))} newton_cg from 0 ({cap} FISTA)",
                lambda: newton_cg(sub, sub_base, *args, None, opts))
    full = MatrixFreeGame(norm.payoffs, concept)
    checked = timed("lift + full-game certificate",
                    lambda: certify(full, base, *args, rst.lift(full, base, np.asarray(res.alpha), index, elim), 1e-8))
    warm = timed("whole warm solve (solvers.solve, duals0=previous)", lambda: solvers.solve(new, concept, duals0=previous))
    saved = rst.RESTRICT_FRACTION
    rst.RESTRICT_FRACTION = 0.0
    try:
        plain = timed("warm solve without the restricted route", lambda: solvers.solve(new, concept, duals0=previous))
    finally:
        rst.RESTRICT_FRACTION = saved
    cold = timed("cold solve (solvers.solve)", lambda: solvers.solve(new, concept))
    profile = cProfile.Profile()
    profile.runcall(newton_cg, sub, sub_base, *args, None, opts)
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = max(value[3] for key, value in stats.items() if key[2] == "newton_cg")
    notes = [f"{len(elim.dominated)} actions eliminated ({elim.lps} LPs), kept {tuple(i.size for i in index)}",
             f"{res.iterations} iterations ({res.first_order_iterations} FISTA), {res.cg_iterations} CG; status {res.status}",
             f"status {checked.status}; joint differs from cold by "
             f"{float(np.abs(np.asarray(checked.joint).reshape(shape) - cold.joint).max()):.1e}",
             f"{warm.info['warm_start']}, {warm.iterations} iterations",
             f"{plain.info['warm_start']}, {plain.iterations} iterations",
             f"{cold.iterations} iterations ({cold.info.get('first_order_iterations')} FISTA)"]
    rows = [dict(part=name, s=wall, cpu_s=cpu, note=note)
            for (name, (wall, cpu)), note in zip(phases.items(), notes, strict=True)]
    for label, func in NEWTON_PARTS:
        found = [(key, value) for key, value in stats.items() if key[2] == func
                 and ("newton_cg" in key[0] or "matrix_free" in key[0] or "cholesky" in key[0])]
        cum = sum(value[3] for _, value in found)
        calls = sum(value[1] for _, value in found)
        rows.append(dict(part=f"sub-game Newton: {label}", s="", cpu_s="", note=f"{100 * cum / total:.0f}% ({calls} calls)"))
    return rows


def _record_meta_games(iterations: int) -> list[tuple[np.ndarray, list[np.ndarray], bool]]:
    import pyspiel
    from open_spiel.python.algorithms import jpsro

    from hybrid_nes.integrations import openspiel as hos

    inner = hos.meta_solver("hn_mece")
    seen: list[tuple[np.ndarray, list[np.ndarray], bool]] = []

    def recorder(meta_game, per_player_repeats, ignore_repeats=False):
        seen.append((np.array(meta_game), [np.array(r) for r in per_player_repeats], bool(ignore_repeats)))
        return inner(meta_game, per_player_repeats, ignore_repeats=ignore_repeats)

    jpsro.FLAG_TO_FUNC["_related_suite"] = recorder
    try:
        jpsro.run_loop(pyspiel.load_game(KUHN3), KUHN3, iterations=iterations,
                       train_meta_solver="_related_suite", eval_meta_solver="uni")
    finally:
        del jpsro.FLAG_TO_FUNC["_related_suite"]
    return seen


def run_jpsro(iterations: int = 10, reps: int = 2) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Meta-solve times of the recorded meta-game sequence per warm-start mode, modes
    interleaved per meta-game (order alternating), ``reps`` runs after one warm-up run.

    Returns ``(per meta-game rows of the last run, per-run totals)``; the last totals row,
    ``run="best"``, sums each meta-game's least time over the ``reps`` runs: the iteration
    counts are the same in every run, and on a loaded machine the per-run totals (the
    large meta-games' facial-reduction LPs above all) vary by 1.1-1.7x."""
    from hybrid_nes.integrations import openspiel as hos

    seen = _record_meta_games(iterations)
    per_game: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []
    best: dict[tuple[int, str, str], float] = {}
    for rep in range(reps + 1):
        solvers_ = {m: hos.meta_solver("hn_mece", warm_start=m) for m in JPSRO_MODES}
        spent = dict.fromkeys(JPSRO_MODES, 0.0)
        cpu = dict.fromkeys(JPSRO_MODES, 0.0)
        last = {}
        for i, (game, repeats, ignore) in enumerate(seen):
            order = JPSRO_MODES if i % 2 == 0 else JPSRO_MODES[::-1]
            for mode in order:
                t0, c0 = time.perf_counter(), time.process_time()
                _, meta = solvers_[mode](game, repeats, ignore)
                elapsed = time.perf_counter() - t0
                spent[mode] += elapsed
                cpu[mode] += time.process_time() - c0
                if rep > 0:
                    for key, value in (("s", elapsed), ("cpu_s", time.process_time() - c0)):
                        best[i, mode, key] = min(best.get((i, mode, key), math.inf), value)
                last[mode] = meta
                if rep == reps:
                    per_game.append(dict(
                        shape="x".join(map(str, game.shape[1:])), mode=mode, ms=1e3 * elapsed,
                        start=meta["warm_start"], related=meta.get("related_start") or "",
                        face=meta.get("face_source") or "", method=meta["method"], iterations=meta["iterations"],
                        normalised_gap=meta["normalised_gap"], certified=meta["certified"],
                    ))
        if rep == 0:
            continue
        row = {"run": rep}
        row.update({f"{m}_s": spent[m] for m in JPSRO_MODES})
        row.update({f"{m}_final_gap": last[m]["normalised_gap"] for m in JPSRO_MODES})
        row["related_speedup"] = spent["cold"] / spent["related"]
        row["auto_speedup"] = spent["cold"] / spent["auto"]
        row.update({f"{m}_cpu_s": cpu[m] for m in JPSRO_MODES})
        row["related_cpu_speedup"] = cpu["cold"] / cpu["related"]
        row["auto_cpu_speedup"] = cpu["cold"] / cpu["auto"]
        totals.append(row)
    if reps > 0:
        row = {"run": "best"}
        for key in ("s", "cpu_s"):
            row.update({f"{m}_{key}": sum(best[i, m, key] for i in range(len(seen))) for m in JPSRO_MODES})
        row.update({f"{m}_final_gap": last[m]["normalised_gap"] for m in JPSRO_MODES})
        for key, label in (("s", ""), ("cpu_s", "_cpu")):
            row[f"related{label}_speedup"] = row[f"cold_{key}"] / row[f"related_{key}"]
            row[f"auto{label}_speedup"] = row[f"cold_{key}"] / row[f"auto_{key}"]
        totals.append(row)
    return per_game, totals


def run(quick: bool, out_dir: Path, jpsro: bool = True, evaluation: bool = True) -> dict:
    """Runs the suite; writes ``related_suite.json`` and ``.md`` atomically into ``out_dir``
    (``evaluation=False`` / ``jpsro=False``: that section's rows of the
    ``related_suite.json`` already there)."""
    out = Path(out_dir)
    previous_file = out / "related_suite.json"
    previous = json.loads(previous_file.read_text()) if previous_file.exists() else {}
    ceiling: list[dict[str, Any]] = previous.get("ceiling", [])
    breakdown: list[dict[str, Any]] = previous.get("breakdown", [])
    seeds: list[dict[str, Any]] = previous.get("seeds", [])
    if evaluation:
        rows = run_evaluation("cce") + run_evaluation("cce", renormalise=False)
        if not quick:
            rows += run_evaluation("ce", reps=1) + run_evaluation("ce", reps=1, renormalise=False)
            ceiling = run_ceiling("cce") + run_ceiling("ce", reps=1, first_order=(None, 36, 0))
            breakdown = run_breakdown("ce")
            seeds = run_seeds("ce")
    else:
        rows = previous.get("evaluation", [])
    if jpsro:
        per_game, totals = run_jpsro(5 if quick else 10)
    else:
        per_game, totals = previous.get("jpsro_per_game", []), previous.get("jpsro_totals", [])
    data = {"evaluation": rows, "ceiling": ceiling, "breakdown": breakdown, "seeds": seeds, "jpsro_per_game": per_game,
            "jpsro_totals": totals}
    write_json_atomic(previous_file, data)
    text = "# Warm starts from a related game (solvers.related)\n\n"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text += (f"2-core CPU, load average at the end ({load}): warm and cold interleaved, one warm-up "
             "repetition discarded. `*_s`: wall seconds; `*_cpu_s`: this process's CPU seconds "
             "(steadier than wall time on a loaded machine; the solvers run one BLAS thread).\n\n")
    text += "## Evaluation game (players task, agent, agent)\n\n"
    if not evaluation:
        text += "(From the previous run of the suite: this one ran the JPSRO section only.)\n\n"
    text += markdown_table(rows) if rows else "(not run)\n"
    if ceiling:
        text += ("\n### What better start duals could buy (same grown game, plain `duals0` arrays)\n\n"
                 "Least time of the repetitions; `0.9 x own optimum` and `carried + own optimum on new rows` "
                 "use the new game's own optimal duals, which no warm start has: they bound what better "
                 "values for the mapped and the new rows could gain.\n\n" + markdown_table(ceiling))
    if breakdown:
        text += ("\n### What the warm CE solve consists of (renormalised grown game)\n\n"
                 "The warm CE solve takes the restricted route (`solvers.restricted`, label "
                 "`related→restricted`): the actions the previous joint left unplayed are tested for strict "
                 "dominance in the grown game (the previous duals' mixture first, an LP where it fails); the "
                 "dominated ones are dropped (no CE plays them), `newton_cg` solves the sub-game from zero "
                 "duals (on this game the carried duals took more Newton iterations there too), and the lifted "
                 "duals are certified on the full game. Its phases run one by one (least of 2), the whole warm "
                 "solve with and without that route, a cold solve (`solvers.solve`: 300 FISTA iterations "
                 "then Newton; cold `newton_cg` with 36 or 0 FISTA iterations is in the table above), then "
                 "the sub-game Newton phase's parts as fractions of its cProfile time.\n\n"
                 + markdown_table(breakdown))
    if seeds:
        text += ("\n### The CE on other score seeds (one cold/warm pair each)\n\n"
                 "`related→restricted` where the previous joint's unplayed agents are dominated in the grown "
                 "game and leave at most `RESTRICT_FRACTION` of the joints; `related` (the carried duals) "
                 "elsewhere.\n\n" + markdown_table(seeds))
    if totals:
        text += f"\n## JPSRO, {KUHN3}, hn_mece: total meta-solve seconds per run\n\n"
        if not jpsro:
            text += "(From the previous run of the suite: this one ran the evaluation sections only.)\n\n"
        text += markdown_table(totals) + "\n### Per meta-game (last run)\n\n" + markdown_table(per_game)
    write_text_atomic(out / "related_suite.md", text)
    print(text)
    return data


def main(argv: list[str] | None = None, *, quick: bool | None = None,
         out_dir: Path | str | None = None) -> dict:
    """Command line (``argv``), or ``benchmarks.run``'s ``main(quick=, out_dir=)``."""
    if quick is not None or out_dir is not None:
        return run(bool(quick), Path(out_dir or Path(__file__).parent / "results"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CCE evaluation game only, 5 JPSRO iterations")
    parser.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--no-jpsro", action="store_true",
                        help="evaluation sections only (keeps the JPSRO rows of the existing results)")
    parser.add_argument("--jpsro-only", action="store_true",
                        help="JPSRO section only (keeps the evaluation rows of the existing results)")
    args = parser.parse_args(argv)
    return run(args.quick, Path(args.out_dir), jpsro=not args.no_jpsro, evaluation=not args.jpsro_only)


if __name__ == "__main__":
    main()
