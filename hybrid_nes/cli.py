"""The ``hybrid-nes`` command line.

    hybrid-nes train --concept cce --shape 8x8 --shape 4x4 --steps 5000 --out runs/cce
    hybrid-nes train --config run.json --out runs/cce       # a TrainConfig as JSON
    hybrid-nes train --out runs/cce                         # resumes runs/cce/checkpoint.npz
    hybrid-nes train --config run.json --out runs/gpu --time-budget 420   # as many steps as fit
    hybrid-nes train --config run.json --out runs/ft --init-from hybrid_nes/pretrained/nes_ce.npz   # fine-tune
    hybrid-nes solve game.nfg --concept ce --selection me   # also .npy / .npz; --json
    hybrid-nes solve-batch games.npy --out results.npz --concept ce   # [B, N, A1..AN], progress bar
    hybrid-nes solve-batch shards/ --out results/ --scheduler tcp://host:8786   # on a Dask cluster
    hybrid-nes demo                                         # classic + random games, timed
    hybrid-nes rate scores.csv --concept cce --plot ratings.png   # rate agents and tasks; --json
    hybrid-nes policy --from benchmarks/results/pipeline_suite.json   # the auto policy's changes; --write

Each subcommand is registered by an ``add_<name>_parser(subparsers)`` function, so that
later subcommands (``solve``) join the same parser.

Errors (unreadable or oversized game files, an unwritable ``--out``, bad options) are one
line on stderr and exit code 2. Ctrl-C (SIGINT) during ``solve`` / ``solve-batch`` prints
one line and exits with 130 at once, even inside a compiled kernel (``hybrid_nes._sigint``:
a C-level handler; a Python-level one with an ``INTERRUPT_GRACE_S`` timer where that is
unavailable). A result file being written is left as it was; its temporary is removed by
the next write (solvers/atomic.py).
``solve --json`` prints strict JSON: non-finite figures (the NaN duality gap of an
infeasible problem, an infinite eps) are ``null``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from hybrid_nes.cli_rate import (  # noqa: F401 - RATE_PROGRESS_AFTER_S, read_score_table: re-exported
    RATE_PROGRESS_AFTER_S,
    add_rate_parser,
    read_score_table,
)

__all__ = [
    "build_parser",
    "main",
    "add_train_parser",
    "add_export_parser",
    "add_solve_parser",
    "add_solve_batch_parser",
    "add_demo_parser",
    "add_rate_parser",
    "add_policy_parser",
    "INTERRUPT_GRACE_S",
]

#: Seconds after a Ctrl-C before the process ends without waiting for the running code.
INTERRUPT_GRACE_S: float = 5.0


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"shape must look like 8x8 or 2x3x4, got {text!r}") from err
    if len(shape) < 2 or any(n < 1 for n in shape):
        raise argparse.ArgumentTypeError(f"shape needs >= 2 players with >= 1 action each, got {text!r}")
    return shape


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``train``."""
    p = subparsers.add_parser("train", help="train a neural equilibrium solver", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="TrainConfig as JSON; flags below override it")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoint, log, weights)")
    p.add_argument("--concept", choices=("cce", "ce"))
    p.add_argument("--shape", type=_shape, action="append", help="game shape, e.g. 8x8 (repeatable)")
    p.add_argument("--shape-weight", type=float, action="append", help="sampling weight per --shape")
    p.add_argument("--eval-shape", type=_shape, action="append", help="validation shape (repeatable)")
    p.add_argument("--preset", action="append", help="selection preset to sample (repeatable): me, mre, ...")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int, help="games per step")
    p.add_argument("--batch-cells", type=int, help="cap games x joint actions per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--init-from", metavar="WEIGHTS",
                   help="fine-tune: start from this weight file or checkpoint (same architecture)")
    p.add_argument("--gap-weight", type=float,
                   help="objective L + w * (C)CE gap of the predicted joint (default 0: the dual loss)")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--eval-games", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="fresh runs: compile and time every shape first, then train as many steps as fit "
                        "(replaces --steps; the schedule spans them)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--no-weights", action="store_true",
                   help="skip writing weights.npz at the end (export the checkpoint later)")
    p.set_defaults(func=_run_train)
    return p


def _run_train(args: argparse.Namespace) -> int:
    from hybrid_nes.network import NetworkConfig
    from hybrid_nes.train import TrainConfig, train
    from solvers.atomic import write_text_atomic

    data = json.loads(args.config.read_text()) if args.config else {}
    if args.concept:
        data.setdefault("network", {})["concept"] = args.concept
    overrides = {
        "shapes": args.shape,
        "shape_weights": args.shape_weight,
        "eval_shapes": args.eval_shape,
        "presets": args.preset,
        "steps": args.steps,
        "batch_size": args.batch,
        "batch_cells": args.batch_cells,
        "learning_rate": args.lr,
        "seed": args.seed,
        "eval_every": args.eval_every,
        "eval_games": args.eval_games,
        "checkpoint_every": args.checkpoint_every,
        "init_from": args.init_from,
        "gap_weight": args.gap_weight,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    data.setdefault("network", NetworkConfig().to_dict())
    try:
        config = TrainConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        print(f"hybrid-nes train: bad configuration: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    if args.time_budget is not None and not args.time_budget > 0:
        print(f"hybrid-nes train: --time-budget must be > 0 seconds, got {args.time_budget}", file=sys.stderr)
        return 2
    from hybrid_nes.checkpoint import CheckpointError

    try:
        _, history = train(config, args.out, resume=not args.no_resume, progress=not args.no_progress,
                           log=lambda line: print(line, flush=True) if args.no_progress else None,
                           time_budget=args.time_budget, calibrate=not args.no_weights)
    except CheckpointError as err:
        print(f"hybrid-nes train: {err}", file=sys.stderr)
        return 2
    print(json.dumps(history[-1] if history else {}, indent=2))
    return 0


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``export``: checkpoint -> shippable weights with calibrated statistics."""
    p = subparsers.add_parser("export", help="turn a training checkpoint into a weight file (or re-calibrate one)")
    p.add_argument("checkpoint", type=Path, help="a training checkpoint, or a weight file to re-calibrate")
    p.add_argument("out", type=Path)
    p.add_argument("--shape", type=_shape, action="append",
                   help="shapes to calibrate (default: the training shapes, or the weight file's shapes)")
    p.add_argument("--hardware", default=None, help="hardware note for the model card")
    p.set_defaults(func=_run_export)
    return p


def _run_export(args: argparse.Namespace) -> int:
    from hybrid_nes.checkpoint import CheckpointError
    from hybrid_nes.train import export_weights

    try:
        extra = {"hardware": args.hardware} if args.hardware else None
        path = export_weights(args.checkpoint, args.out, shapes=args.shape, extra_meta=extra)
    except (CheckpointError, ValueError) as err:
        print(f"hybrid-nes export: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_solve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concept", choices=("cce", "ce"), default="cce")
    p.add_argument("--selection", default="me", help="preset: me, mw, ms, mg (mre/mwme need arrays: use the API)")
    p.add_argument("--eps-hat", type=float, default=0.0, help="target approximation, payoff units")
    p.add_argument("--warm-start", choices=("auto", "nes", "cold"), default="auto")
    p.add_argument("--method", choices=("auto", "newton", "gd", "cvxpy"), default="auto")
    p.add_argument("--tol", type=float, default=1e-8)
    p.add_argument("--no-polish", action="store_true",
                   help="no CVXPY finish for games the dual solvers leave short of --tol (reported as they are)")
    p.add_argument("--max-entries", type=_positive_int, default=None, metavar="N",
                   help="refuse game files declaring more than N payoff numbers, from their header "
                        "(default 2**25 for .npy/.npz, 2**20 for .nfg; see solvers.game_io)")
    p.set_defaults(interruptible=True)


def add_solve_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``solve``: one game file -> its certified (C)CE."""
    p = subparsers.add_parser("solve", help="solve a game file (.npy, .npz, Gambit .nfg)")
    p.add_argument("game", type=Path, help="payoffs [N, A1..AN] as .npy/.npz, or a Gambit .nfg file")
    _add_solve_options(p)
    p.add_argument("--json", action="store_true",
                   help="print the solution as strict JSON (non-finite figures, e.g. the duality gap "
                        "of an infeasible problem, are null)")
    p.set_defaults(func=_run_solve)
    return p


def add_solve_batch_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``solve-batch``: a file of games -> their certified (C)CEs as arrays."""
    p = subparsers.add_parser(
        "solve-batch", help="solve a batch of games [B, N, A1..AN] (.npy/.npz) into a results .npz",
        description="Solves every game of GAMES (one shape, [B, N, A1..AN]) with hybrid_nes.solve_batch "
        "in chunks, and writes joint, duals (payoff units), gaps, status, method and iterations per game "
        "to OUT (.npz, written atomically). Exit code 0 when every game is certified, 1 otherwise.")
    p.add_argument("games", type=Path, help="payoffs [B, N, A1..AN] as .npy, or .npz (key 'games' or one array)")
    p.add_argument("--out", type=Path, required=True, help="results file (.npz)")
    _add_solve_options(p)
    p.add_argument("--chunk", type=int, default=1024, help="games per solve_batch call (progress granularity)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="solve the chunks as tasks on a Dask cluster: tcp://host:8786, or local[:N] for "
                        "N local worker processes; GAMES may then be a directory of .npy shards and --out "
                        "a directory of result shards (restartable). Needs the 'cluster' extra")
    p.set_defaults(func=_run_solve_batch)
    return p


def _strict(value):
    """``value`` with every non-finite float (NaN, inf) replaced by ``None``, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _solution_dict(sol) -> dict:
    return {
        "status": sol.status.value,
        "concept": sol.concept,
        "selection": sol.selection.name,
        "method": sol.method,
        "joint": sol.joint.tolist(),
        "marginals": [m.tolist() for m in sol.marginals],
        "gap": sol.gap,
        "gaps": sol.gaps.tolist(),
        "normalised_gap": sol.normalised_gap,
        "duality_gap": sol.duality_gap,
        "eps": sol.eps.tolist(),
        "iterations": sol.iterations,
        "timings": {k: float(v) for k, v in sol.timings.items()},
    }


def solve_options(args: argparse.Namespace) -> tuple[dict, dict]:
    """``(solve options, selection parameters)`` from the ``solve`` / ``solve-batch`` flags."""
    options = {"warm_start": args.warm_start, "method": args.method, "tol": args.tol,
               "polish": not args.no_polish}
    return options, ({"eps_hat": args.eps_hat} if args.eps_hat else {})


def _run_solve(args: argparse.Namespace) -> int:
    import numpy as np

    from hybrid_nes.pipeline import solve_exact
    from solvers.game_io import load_game

    options, params = solve_options(args)
    try:
        game = load_game(args.game, max_entries=args.max_entries)
        sol = solve_exact(game, args.concept, args.selection, **options, **params)
    except (OSError, ValueError, TypeError, ImportError) as err:
        print(f"hybrid-nes solve: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_strict(_solution_dict(sol)), indent=2, allow_nan=False))
    else:
        with np.printoptions(precision=6, suppress=True):
            print(f"{args.game}: {game.shape[0]}-player {'x'.join(map(str, game.shape[1:]))} game")
            print(f"{sol.concept.upper()} ({sol.selection.name}), status {sol.status.value}, method {sol.method}")
            print(f"joint:\n{sol.joint}")
            for p, m in enumerate(sol.marginals):
                print(f"marginal of player {p}: {m}")
            print(f"gap {sol.gap:.3e} (per player {sol.gaps}), duality gap {sol.duality_gap:.3e}, "
                  f"iterations {sol.iterations}")
            print("timings (ms): " + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in sol.timings.items()))
    return 0 if sol.ok else 1


def _run_solve_batch(args: argparse.Namespace) -> int:
    if args.scheduler is not None:
        from hybrid_nes.cli_cluster import solve_batch_cli

        return solve_batch_cli(args)
    import time

    import numpy as np
    from tqdm import tqdm

    from hybrid_nes.pipeline import solve_batch
    from solvers.atomic import atomic_path, check_destination
    from solvers.game_io import load_games
    from solvers.solution import stack_solutions

    def fail(message: str) -> int:
        print(f"hybrid-nes solve-batch: {message}", file=sys.stderr)
        return 2

    if args.chunk < 1:
        return fail(f"--chunk must be >= 1, got {args.chunk}")
    if args.out.suffix.lower() != ".npz":
        return fail(f"--out must be a .npz file, got {args.out}")
    try:  # before solving: a folder that cannot be made or written would lose every result
        check_destination(args.out, suffix=".npz")
    except (OSError, ValueError) as err:
        return fail(f"--out: {err}")
    options, params = solve_options(args)
    try:
        games = load_games(args.games, max_entries=args.max_entries)
    except (OSError, ValueError, TypeError) as err:
        return fail(str(err))
    num = games.shape[0]
    sols = []
    certified = 0
    start = time.perf_counter()
    with tqdm(total=num, desc=f"{args.concept} {args.selection}", unit="game", disable=args.no_progress,
              dynamic_ncols=True) as bar:
        for lo in range(0, num, args.chunk):
            try:
                chunk = solve_batch(games[lo:lo + args.chunk], args.concept, args.selection,
                                    **options, **params)
            except (ValueError, TypeError) as err:
                return fail(str(err))
            sols.extend(chunk)
            certified += sum(sol.ok for sol in chunk)
            bar.update(len(chunk))
            bar.set_postfix(certified=f"{certified}/{len(sols)}")
    wall = time.perf_counter() - start
    arrays = stack_solutions(sols)
    try:
        with atomic_path(args.out, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
    except OSError as err:
        return fail(f"cannot write {args.out}: {err.strerror or err}")
    bad = np.flatnonzero(arrays["status"] != "optimal")
    print(f"{num} games {'x'.join(map(str, games.shape[2:]))}, {args.concept.upper()} ({args.selection}): "
          f"{wall:.2f} s, {num / wall:.0f} games/s; certified {num - bad.size}/{num}; wrote {args.out}")
    if bad.size:
        shown = ", ".join(f"{i} ({arrays['status'][i]})" for i in bad[:20])
        print(f"not certified: {shown}{' ...' if bad.size > 20 else ''}")
    return 0 if bad.size == 0 else 1


def add_demo_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``demo``."""
    p = subparsers.add_parser("demo", help="solve classic and random games with the shipped network")
    p.add_argument("--games", type=int, default=1000, help="random 8x8 games per concept")
    p.set_defaults(func=_run_demo)
    return p


def _run_demo(args: argparse.Namespace) -> int:
    from hybrid_nes.demo import run

    run(num_games=args.games)
    return 0


def add_policy_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``policy``: a pipeline benchmark run -> the table ``warm_start="auto"`` reads."""
    p = subparsers.add_parser(
        "policy", help="update the warm_start='auto' table from a pipeline_suite run (dry run unless --write)",
        description="Reads a benchmarks/pipeline_suite.py result (JSON), derives the fastest start and "
        "method per measured cell, and prints the cells of the auto policy table that would change. Only "
        "--write writes the table (atomically). Measured cells replace theirs; the others are kept unless "
        "--replace (needed when the run's tol differs from the table's).")
    p.add_argument("--from", dest="results", type=Path, required=True, metavar="RESULTS",
                   help="a pipeline_suite result, e.g. benchmarks/results/pipeline_suite.json")
    p.add_argument("--policy", type=Path, default=None,
                   help="the table to update (default: the one shipped in the package, "
                        "hybrid_nes/pretrained/auto_policy.json)")
    p.add_argument("--replace", action="store_true", help="replace the whole table by the measured cells")
    p.add_argument("--write", action="store_true", help="write the table (without it: print the changes only)")
    p.set_defaults(func=_run_policy)
    return p


def _run_policy(args: argparse.Namespace) -> int:
    from hybrid_nes import auto_policy

    target = args.policy or auto_policy.default_policy_path()
    try:
        results = auto_policy.load_results(args.results)
        measured = auto_policy.policy_from_results(results, str(args.results))
        current = auto_policy.read_policy(target)
        updated = auto_policy.updated_policy(current, measured, replace=args.replace)
    except (OSError, ValueError) as err:
        print(f"hybrid-nes policy: {err}", file=sys.stderr)
        return 2
    diff = auto_policy.changes(current, updated)
    print(f"{target} from {args.results} ({results.get('mode', 'unknown')} run, tol {measured['tol']:g}, "
          f"{len(measured['cells'])} cells measured)")
    for change in diff:
        print(f"  {change}")
    if not diff:
        print("no change")
    elif not args.write:
        print(f"{len(diff)} entries would change; pass --write to write them")
    else:
        try:
            auto_policy.write_policy(target, updated)
        except OSError as err:
            print(f"hybrid-nes policy: cannot write {target}: {err.strerror or err}", file=sys.stderr)
            return 2
        print(f"wrote {target}: {len(diff)} entries changed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="hybrid-nes", description="hybrid_nes: neural + exact (C)CE solvers")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    add_export_parser(subparsers)
    add_solve_parser(subparsers)
    add_solve_batch_parser(subparsers)
    add_demo_parser(subparsers)
    add_rate_parser(subparsers)
    add_policy_parser(subparsers)
    return parser


def _bar_open() -> bool:
    """Whether a tqdm bar is on stderr now (its line has no newline until it closes, also
    in a log file or pipe)."""
    tqdm_module = sys.modules.get("tqdm")
    return bool(tqdm_module is not None and getattr(tqdm_module.tqdm, "_instances", None))


class _Interrupt:
    """Ctrl-C for ``solve`` / ``solve-batch``: one line on stderr and exit code 130.

    On POSIX ``hybrid_nes._sigint`` replaces this by a compiled handler that exits at once
    (Python handlers wait for a running kernel to return); this class is the fallback.
    The first SIGINT raises ``KeyboardInterrupt`` (``finally`` blocks run: a temporary
    result file is removed) and starts a ``INTERRUPT_GRACE_S`` timer that ends the process
    with ``os._exit(130)`` if the command has not returned by then; a second SIGINT ends
    it at once. Whatever the command raises or returns after a SIGINT, ``main`` answers 130
    (numba turns the ``KeyboardInterrupt`` into a ``SystemError``, which library code may
    catch). A ``KeyboardInterrupt`` raised inside a C callback is dropped by Python (printed
    as "Exception ignored"); ``main`` silences that print and the timer ends the run.
    """

    def __init__(self, command: str):
        self.command = command
        self.event = threading.Event()
        self.reported = threading.Lock()
        self.timer: threading.Timer | None = None

    def report(self) -> None:
        if self.reported.acquire(blocking=False):
            lead = "\n" if sys.stderr.isatty() or _bar_open() else ""  # off a progress bar's line
            print(f"{lead}hybrid-nes {self.command}: interrupted", file=sys.stderr, flush=True)

    def hard_exit(self) -> None:
        self.report()
        os._exit(130)

    def __call__(self, signum, frame) -> None:
        if self.event.is_set():
            self.hard_exit()
        self.event.set()
        self.timer = threading.Timer(INTERRUPT_GRACE_S, self.hard_exit)
        self.timer.daemon = True
        self.timer.start()
        raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hybrid-nes`` script."""
    args = build_parser().parse_args(argv)
    if (not getattr(args, "interruptible", False) or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):  # e.g. nohup, `cmd &` in a script: keep ignoring
        return int(args.func(args) or 0)
    interrupt = _Interrupt(args.command)
    previous = signal.signal(signal.SIGINT, interrupt)
    unraisable = sys.unraisablehook

    def quiet_unraisable(info) -> None:  # the KeyboardInterrupt raised in a C callback (llvmlite's)
        if not (interrupt.event.is_set() and isinstance(info.exc_value, KeyboardInterrupt)):
            unraisable(info)

    sys.unraisablehook = quiet_unraisable
    if os.name == "posix":
        try:  # prompt even inside a compiled kernel; the Python handler stays as the fallback
            from hybrid_nes._sigint import install

            install(args.command, newline=not getattr(args, "no_progress", True))
        except Exception:  # noqa: BLE001 - no numba cfunc here: the Python-level handler serves
            pass
    try:
        code = int(args.func(args) or 0)
    except BaseException:
        if not interrupt.event.is_set():
            raise
        code = 130
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = unraisable
        if interrupt.timer is not None:
            interrupt.timer.cancel()
    if interrupt.event.is_set():
        interrupt.report()
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
