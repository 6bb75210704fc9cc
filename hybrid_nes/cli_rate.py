"""``hybrid-nes rate``: a score table (CSV) -> agents and tasks rated at an equilibrium.

    hybrid-nes rate scores.csv --concept cce --plot ratings.png   # --json, --tasks-as-rows

Reads the table (``read_score_table``), rates with ``solvers.ratings.rate`` (the
[task, agent, agent] evaluation game's max-entropy (C)CE), prints the rankings and
optionally plots them. Registered on the ``hybrid-nes`` parser by ``hybrid_nes.cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["RATE_PROGRESS_AFTER_S", "add_rate_parser", "read_score_table"]

RATE_PROGRESS_AFTER_S = 2.0  # a solve still running after this many seconds says so on stderr


def add_rate_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``rate``: a score table -> agents and tasks rated at an equilibrium."""
    p = subparsers.add_parser(
        "rate", help="rate agents and tasks from a score table (CSV) at an equilibrium",
        description="Reads a score table (CSV: a header row of names, a first column of names; rows are "
        "agents and columns tasks unless --tasks-as-rows), builds the [task, agent, agent] evaluation game "
        "(solvers.evaluation_game), solves its max-entropy (C)CE with solvers.solve and prints the agents "
        "and tasks ranked by rating (the gain of deviating to them; <= 0) with their equilibrium marginals. "
        "Exit code 0 when the equilibrium is certified, 1 when it is not, 2 on bad input.")
    p.add_argument("scores", type=Path, help="CSV score table, higher is better")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--tasks-as-columns", dest="tasks_as_rows", action="store_false",
                        help="rows are agents, columns tasks (the default)")
    layout.add_argument("--tasks-as-rows", dest="tasks_as_rows", action="store_true",
                        help="rows are tasks, columns agents")
    p.add_argument("--normaliser", choices=("ptp", "zscore", "rank", "winrate"), default="ptp",
                   help="per-task normalisation of the scores (default ptp)")
    p.add_argument("--sd", type=Path, help="CSV of standard deviations, same layout and names (winrate only)")
    p.add_argument("--concept", choices=("cce", "ce"), default="cce")
    p.add_argument("--method", choices=("auto", "newton", "gd", "cvxpy"), default="auto")
    p.add_argument("--tol", type=float, default=1e-8)
    p.add_argument("--plot", type=Path, help="write bar charts of the ratings to this image (.png, .pdf, .svg)")
    p.add_argument("--json", action="store_true", help="print the ratings as JSON")
    p.set_defaults(func=_run_rate, tasks_as_rows=False)
    return p


def read_score_table(path: Path, tasks_as_rows: bool = False) -> tuple[list[str], list[str], list[list[float]]]:
    """``(agents, tasks, scores [A][T])`` from a CSV table with a header row and a name column.

    Raises:
      ValueError: an empty table, rows of different lengths, duplicate names, or a cell that
        is not a number (naming its line, row name and column name).
    """
    import csv

    with open(path, newline="") as fh:
        rows = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header row and at least one data row, got {len(rows)} row(s)")
    header = [cell.strip() for cell in rows[0]]
    columns = header[1:]
    if not columns:
        raise ValueError(f"{path}: the header row names no columns")
    names, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {line} has {len(row)} cells, the header has {len(header)}")
        name = row[0].strip()
        numbers = []
        for column, cell in zip(columns, row[1:], strict=True):
            try:
                numbers.append(float(cell))
            except ValueError:
                raise ValueError(f"{path}: line {line}, row {name!r}, column {column!r}: {cell!r} is not a number") \
                    from None
        names.append(name)
        values.append(numbers)
    for what, labels in (("row", names), ("column", columns)):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"{path}: duplicate {what} names {dup}")
    if tasks_as_rows:
        return columns, names, [list(col) for col in zip(*values, strict=True)]
    return names, columns, values


def _plot_ratings(rating, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from solvers.atomic import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * max(len(rating.agents), len(rating.tasks)) + 1.8))
    for ax, names, values, order, what in (
        (axes[0], rating.agents, rating.agent_ratings, rating.agent_order(), "agents"),
        (axes[1], rating.tasks, rating.task_ratings, rating.task_order(), "tasks"),
    ):
        ax.barh([names[i] for i in order][::-1], values[order][::-1], color="tab:blue" if what == "agents"
                else "tab:orange")
        ax.set_title(f"{what}: rating at the {rating.solution.concept.upper()}")
        ax.set_xlabel("rating (gain of deviating to it; <= 0)")
        ax.axvline(0.0, color="black", linewidth=0.8)
    fig.suptitle(f"{rating.normaliser} scores, status {rating.solution.status.value}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(fig)


def _run_rate(args: argparse.Namespace) -> int:
    import threading
    import time

    from solvers.ratings import rate

    def fail(message: str) -> int:
        print(f"hybrid-nes rate: {message}", file=sys.stderr)
        return 2

    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        return fail(f"--plot must end in .png, .pdf or .svg, got {args.plot}")
    if args.sd is not None and args.normaliser != "winrate":
        return fail("--sd is used only with --normaliser winrate")
    try:
        agents, tasks, scores = read_score_table(args.scores, args.tasks_as_rows)
        sd = None
        if args.sd is not None:
            sd_agents, sd_tasks, sd = read_score_table(args.sd, args.tasks_as_rows)
            if (sd_agents, sd_tasks) != (agents, tasks):
                return fail(f"{args.sd}: its agent and task names differ from {args.scores}'s")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return fail(str(err))
    size = f"{len(tasks)} tasks x {len(agents)} agents"
    done = threading.Event()

    def progress() -> None:
        if not done.wait(RATE_PROGRESS_AFTER_S):
            print(f"hybrid-nes rate: solving the {args.concept.upper()} of the {size} evaluation game ...",
                  file=sys.stderr, flush=True)

    watcher = threading.Thread(target=progress, daemon=True)
    start = time.perf_counter()
    watcher.start()
    try:
        rating = rate(scores, args.normaliser, args.concept, sd, agents=agents, tasks=tasks,
                      method=args.method, tol=args.tol)
    except (ValueError, TypeError) as err:
        return fail(str(err))
    finally:
        done.set()
        watcher.join()
    wall = time.perf_counter() - start
    if args.plot is not None:
        _plot_ratings(rating, args.plot)
    sol = rating.solution
    if args.json:
        out = rating.to_dict()
        out["wall_s"] = wall
        print(json.dumps(out, indent=2))
    else:
        width = max(len(n) for n in (*agents, *tasks, "agent"))
        print(f"{args.scores}: {size}, {args.normaliser} scores; ME-{sol.concept.upper()} of the "
              f"[task, agent, agent] game in {wall:.2f} s")
        for what, names, values, marginal, order in (
            ("agent", rating.agents, rating.agent_ratings, rating.agent_marginal, rating.agent_order()),
            ("task", rating.tasks, rating.task_ratings, rating.task_marginal, rating.task_order()),
        ):
            print(f"\n{'rank':>4}  {what:<{width}}  {'rating':>11}  {'marginal':>9}")
            for r, i in enumerate(order, start=1):
                print(f"{r:>4}  {names[i]:<{width}}  {round(float(values[i]), 6) + 0.0:>11.6f}  {marginal[i]:>9.4f}")
        print(f"\nstatus {sol.status.value} ({'certified' if sol.ok else 'NOT certified'}), method {sol.method}, "
              f"gap {sol.gap:.2e}, duality gap {sol.duality_gap:.2e}, agent-swap asymmetry of the joint "
              f"{rating.joint_asymmetry:.1e}")
        if args.plot is not None:
            print(f"wrote {args.plot}")
    return 0 if sol.ok else 1
