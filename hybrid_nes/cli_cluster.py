"""``hybrid-nes solve-batch --scheduler ADDRESS``: solving a games file or a shard directory on Dask.

``hybrid_nes.cli`` hands ``solve-batch`` here when ``--scheduler`` is given; the work is
``hybrid_nes.distributed``'s (``connect``, ``warm_workers``, ``solve_shards`` and its
task loop) and the files are ``hybrid_nes.shards``'.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from hybrid_nes.distributed import (
    SchedulerLostError,
    _check_options,
    _require_dask,
    _run,
    close,
    connect,
    solve_shards,
    warm_workers,
)
from hybrid_nes.shards import ShardReport, Source, save_npz, shard_files

__all__ = ["solve_batch_cli"]


def solve_batch_cli(args) -> int:
    """``solve-batch`` with ``--scheduler``: IN a games file -> OUT a results .npz (as without
    the flag), or IN a directory of .npy shards -> OUT a directory of result shards
    (restartable). Exit 0 when every game is certified, 1 when some are not, 2 on errors
    (including chunks that kept failing, listed by index)."""
    def fail(message: str) -> int:
        print(f"hybrid-nes solve-batch: {message}", file=sys.stderr)
        return 2

    if args.chunk < 1:
        return fail(f"--chunk must be >= 1, got {args.chunk}")
    from hybrid_nes.cli import solve_options

    options, params = solve_options(args)
    shards = args.games.is_dir()
    try:
        _require_dask()
        concept, sel, opts = _check_options(args.concept, args.selection, options, params)
        if shards:
            if args.out.exists() and not args.out.is_dir():
                return fail(f"IN is a shard directory, so --out must be a directory; {args.out} is a file")
            files = shard_files(args.games)
        else:
            from solvers.atomic import check_destination
            from solvers.game_io import load_games

            check_destination(args.out, suffix=".npz")
            games = load_games(args.games, max_entries=args.max_entries)
    except (ImportError, OSError, ValueError, TypeError) as err:
        return fail(str(err))
    try:
        client = connect(args.scheduler)
    except (ValueError, ConnectionError) as err:
        return fail(str(err))
    progress = not args.no_progress
    status = None
    try:
        if shards:
            report = solve_shards(args.games, args.out, concept, sel, client=client, chunk=args.chunk,
                                  progress=progress, **opts)
            print(f"{len(files)} shards: {len(report.written)} written, {len(report.skipped)} already "
                  f"complete, {len(report.failed)} chunks failed; {report.games} games in "
                  f"{report.seconds:.2f} s (warm-up {report.warmup_seconds:.2f} s; "
                  f"{report.games / max(report.seconds - report.warmup_seconds, 1e-9):.0f} games/s after it), "
                  f"certified {report.certified}/{report.games}; results in {args.out}")
        else:
            report = ShardReport()
            start = time.perf_counter()
            warm_workers(client, concept, games.shape[2:], sel, batch=min(args.chunk, games.shape[0]), **opts)
            warmup = time.perf_counter() - start
            holder: dict[str, dict] = {}
            source = Source(str(args.games), games, lambda arrays: holder.update(arrays=arrays))
            _run(client, [source], concept, sel, opts, chunk=args.chunk, retries=2, progress=progress,
                 report=report)
            wall = time.perf_counter() - start
            if "arrays" in holder:
                save_npz(args.out, holder["arrays"])
                status = holder["arrays"]["status"]
                num = games.shape[0]
                print(f"{num} games {'x'.join(map(str, games.shape[2:]))}, {concept.upper()} ({sel.name}) "
                      f"on {args.scheduler}: {wall:.2f} s (warm-up {warmup:.2f} s; "
                      f"{num / max(wall - warmup, 1e-9):.0f} games/s after it); "
                      f"certified {report.certified}/{num}; wrote {args.out}")
    except SchedulerLostError as err:
        return fail(str(err))
    except (OSError, ValueError, TypeError) as err:
        return fail(str(err))
    finally:
        close(client)
    if report.failed:
        shown = "\n  ".join(str(f) for f in report.failed[:20])
        more = f"\n  ... and {len(report.failed) - 20} more" if len(report.failed) > 20 else ""
        what = "their shards were not written" if shards else f"{args.out} was not written"
        return fail(f"{len(report.failed)} chunks failed after retries ({what}):\n  {shown}{more}")
    if status is not None:
        bad = np.flatnonzero(status != "optimal")
        if bad.size:
            shown = ", ".join(f"{i} ({status[i]})" for i in bad[:20])
            print(f"not certified: {shown}{' ...' if bad.size > 20 else ''}")
    elif report.certified < report.games:
        print(f"not certified: {report.games - report.certified} of {report.games} games "
              "(see 'status' in the result shards)")
    return 0 if report.certified == report.games else 1
