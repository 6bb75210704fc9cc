"""Solving on a Dask cluster: ``solve_dask`` and ``solve_shards``.

Chunks of games (``[b, N, A1..AN]``, one shape) become Dask tasks; each task runs
``hybrid_nes.solve_batch`` on a worker and returns the per-game arrays of
``solvers.solution.stack_solutions``. Scheduling, retries and recovery from lost workers are
Dask's (``distributed``); this module only cuts the input into chunks, warms the workers
and writes the results. The shard files and reports are ``hybrid_nes.shards``'; the
``solve-batch --scheduler`` command is ``hybrid_nes.cli_cluster``.

    import dask.array as da
    from distributed import Client
    from hybrid_nes.distributed import solve_dask, solve_shards, warm_workers

    client = Client("tcp://scheduler:8786")
    games = da.from_npy_stack(...)  # or da.from_array(array, chunks=(1000, -1, -1, -1))
    warm_workers(client, "ce", games.shape[2:])        # Numba cache / network, once per worker
    out = solve_dask(games, "ce")                      # dict of lazy dask arrays, chunked like B
    joint, status = client.compute([out["joint"], out["status"]], retries=2, sync=True)

    # larger than memory: a directory of .npy shards -> a directory of .npz result shards,
    # each written atomically; a re-run skips the shards already complete
    report = solve_shards("games/", "results/", "ce", client=client, chunk=1000)

Needs the ``cluster`` extra (``pip install 'hybrid_nes[cluster]'``). ``import solvers`` and
``import hybrid_nes`` never import Dask; this module does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from hybrid_nes.shards import (
    FIELDS,
    META_KEY,
    ChunkFailure,
    ShardReport,
    Source,
    concat_chunks,
    is_complete,
    open_shard,
    save_npz,
    shard_files,
    shard_meta,
)
from solvers.gains import num_constraints
from solvers.selection import Selection

try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - without the cluster extra the names below say so
    _WorkerPlugin = object

__all__ = [
    "CONNECT_TIMEOUT",
    "FIELDS",
    "ChunkFailure",
    "SchedulerLostError",
    "ShardReport",
    "WarmUp",
    "close",
    "connect",
    "solve_chunk",
    "solve_dask",
    "solve_shards",
    "warm_workers",
]

#: Seconds to reach a scheduler before ``connect`` gives up with a clear error.
CONNECT_TIMEOUT = 10.0
#: Fixed-width string dtypes, so that dask arrays of status / method have a known dtype.
STATUS_DTYPE = np.dtype("<U16")
METHOD_DTYPE = np.dtype("<U64")
#: Chunks in flight per worker thread (bounds the client's memory on out-of-core runs).
IN_FLIGHT_PER_THREAD = 2


class SchedulerLostError(RuntimeError):
    """The connection to the scheduler was lost mid-run (complete shards are kept)."""


def _require_dask():
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "solving on a cluster needs dask and distributed: pip install 'hybrid_nes[cluster]'"
        ) from err


def _field_shapes(shape: Sequence[int], concept: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-game shape and dtype of every field for games of ``shape`` (``[A1..AN]``)."""
    n = len(shape)
    f64, i64 = np.dtype(np.float64), np.dtype(np.int64)
    out = {"joint": (tuple(shape), f64), "duals": ((num_constraints(shape, concept),), f64)}
    out.update({k: ((n,), f64) for k in ("eps", "gaps", "scale")})
    out.update({k: ((), f64) for k in ("gap", "normalised_gap", "duality_gap", "objective")})
    out.update({"iterations": ((), i64), "status": ((), STATUS_DTYPE), "method": ((), METHOD_DTYPE)})
    return out


def _check_options(concept: str, selection: str | Selection, options: Mapping[str, object],
                   selection_params: Mapping[str, object]) -> tuple[str, Selection, dict]:
    """Validates options on the client (clear errors before any task is sent)."""
    from hybrid_nes.pipeline import _check_options as check
    from hybrid_nes.pipeline import _check_warm_start

    known = {"warm_start", "tol", "method", "max_iter", "polish", "warm_options"}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown solve options {sorted(unknown)}; known: {sorted(known)}")
    if "warm_start" in options:
        start = _check_warm_start(options["warm_start"])
        if isinstance(start, np.ndarray):
            raise ValueError("warm_start duals cannot be given on a cluster; use 'auto', 'nes' or 'cold'")
    concept, sel, method = check(concept, selection, selection_params, options.get("method", "auto"))
    opts = dict(options)
    opts["method"] = method
    return concept, sel, opts


def solve_chunk(games: np.ndarray, concept: str, selection: Selection,
                options: Mapping[str, object]) -> dict[str, np.ndarray]:
    """One task: ``hybrid_nes.solve_batch`` on ``games [b, N, A1..AN]`` -> per-game arrays.

    Returns the arrays of ``stack_solutions`` with ``status`` / ``method`` as the fixed-width
    ``STATUS_DTYPE`` / ``METHOD_DTYPE``. The pretrained network is cached per process
    (``hybrid_nes.pipeline``), so a worker loads it once.
    """
    from hybrid_nes.pipeline import solve_batch
    from solvers.solution import stack_solutions

    arrays = stack_solutions(solve_batch(np.asarray(games), concept, selection, **options))
    for key, dtype in (("status", STATUS_DTYPE), ("method", METHOD_DTYPE)):
        longest = max(len(s) for s in arrays[key])
        if longest > dtype.itemsize // 4:
            raise ValueError(f"{key} {arrays[key][0]!r} longer than {dtype}")
        arrays[key] = arrays[key].astype(dtype)
    return arrays


# --- workers: warm once ----------------------------------------------------------------


class WarmUp(_WorkerPlugin):
    """A Dask ``WorkerPlugin``: solves a few games of each shape on every worker (current
    and future, e.g. restarted ones) when registered, so that Numba's cached kernels are
    loaded, and the network loaded, once per worker instead of in the first task.
    Register with ``warm_workers`` (or ``client.register_plugin(WarmUp(...))``).

    ``batches``: the batch sizes solved per shape. Two games load every kernel; where the
    network gives the warm start, JAX compiles once per padded batch size, so the tasks'
    chunk size belongs here too (``warm_workers(batch=...)`` adds it for those cells only).
    """

    name = "hybrid-nes-warmup"

    def __init__(self, concept: str, shapes: Sequence[Sequence[int]], selection: Selection | str = "me",
                 options: Mapping[str, object] | None = None,
                 batches: Mapping[tuple[int, ...], Sequence[int]] | None = None):
        self.concept = concept
        self.shapes = [tuple(int(n) for n in s) for s in shapes]
        self.selection = selection
        self.options = dict(options or {})
        self.batches = {s: sorted({int(b) for b in (batches or {}).get(s, (2,))}) for s in self.shapes}

    def _warm(self) -> float:
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        for shape in self.shapes:
            for batch in self.batches[shape]:
                games = rng.normal(size=(batch, len(shape)) + shape)
                solve_chunk(games, self.concept, self.selection, self.options)
        return time.perf_counter() - t0

    async def setup(self, worker) -> None:
        # Off the event loop: the worker keeps answering heartbeats while it compiles.
        seconds = await asyncio.get_running_loop().run_in_executor(None, self._warm)
        worker.hybrid_nes_warmup_s = seconds



def _uses_network(concept: str, shape: tuple[int, ...], sel: Selection, opts: Mapping) -> bool:
    """Whether ``solve_batch`` would run the network for these games (``plan_for``)."""
    from hybrid_nes.pipeline import plan_for

    plan = plan_for(concept, shape, sel, str(opts.get("warm_start", "auto")), str(opts.get("method", "auto")))
    return plan.warm and sel.objective == "entropy"


def warm_workers(client, concept: str, shapes: Sequence[int] | Sequence[Sequence[int]],
                 selection: str | Selection = "me", *, batch: int | None = None,
                 **options: object) -> dict[str, float]:
    """Registers a ``WarmUp`` plugin for ``shapes`` (one ``[A1..AN]`` or a list of them):
    every worker, now and when it (re)starts, solves two games of each shape once, and
    ``batch`` games (the tasks' chunk size) of the shapes whose warm start is the network's
    (JAX compiles per batch size).

    Returns the seconds each current worker spent warming up, by worker address.
    """
    _require_dask()
    shapes = [shapes] if all(isinstance(n, (int, np.integer)) for n in shapes) else shapes
    shapes = [tuple(int(n) for n in s) for s in shapes]
    concept, sel, opts = _check_options(concept, selection, options, {})
    batches = {s: (2, batch) if batch and _uses_network(concept, s, sel, opts) else (2,) for s in shapes}
    client.register_plugin(WarmUp(concept, shapes, sel, opts, batches), name=WarmUp.name)
    return client.run(lambda dask_worker: getattr(dask_worker, "hybrid_nes_warmup_s", float("nan")))


# --- dask.array --------------------------------------------------------------------------


def solve_dask(games, concept: str = "cce", selection: str | Selection = "me", *,
               warm_start: str = "auto", tol: float = 1e-8, method: str = "auto",
               max_iter: int | None = None, polish: bool = True,
               **selection_params: object) -> dict[str, object]:
    """Certified equilibria of a ``dask.array`` of games, lazily: one task per chunk.

    Args:
      games: ``[B, N, A1..AN]`` dask array (or NumPy array) chunked along ``B``; other axes
        are merged into one chunk. Each chunk of games is one task.
      concept, selection, warm_start, tol, method, max_iter, polish, **selection_params:
        as ``hybrid_nes.solve_batch``.

    Returns:
      A dict of lazy dask arrays chunked like ``games`` along ``B``: ``joint [B, A1..AN]``,
      ``duals [B, K]`` (payoff units), ``eps``, ``gaps``, ``scale [B, N]``, ``gap``,
      ``normalised_gap``, ``duality_gap``, ``objective [B]`` float64, ``iterations [B]``
      int64, ``status [B]`` and ``method [B]`` fixed-width str. The arrays share their
      solve tasks: compute them together (``dask.compute(*out.values())`` or
      ``client.compute(list(out.values()), retries=2)``), not one at a time.
    """
    _require_dask()
    import dask
    import dask.array as da

    concept, sel, opts = _check_options(
        concept, selection,
        {"warm_start": warm_start, "tol": tol, "method": method, "max_iter": max_iter, "polish": polish},
        selection_params)
    games = da.asarray(games)
    if games.ndim < 4 or games.ndim != games.shape[1] + 2:
        raise ValueError(f"games must have shape [B, N, A1..AN], got shape {games.shape}")
    if any(np.isnan(c) for c in games.chunks[0]):
        raise ValueError("games has unknown chunk sizes along B; call games.compute_chunk_sizes() first")
    if not np.issubdtype(games.dtype, np.number):
        raise TypeError(f"games must be numeric, got dtype {games.dtype}")
    games = games.rechunk({i: -1 for i in range(1, games.ndim)})
    shapes = _field_shapes(games.shape[2:], concept)
    token = dask.base.tokenize(games.name, concept, sel, opts)
    pieces: dict[str, list] = {k: [] for k in FIELDS}
    for i, block in enumerate(games.to_delayed().ravel()):
        rows = games.chunks[0][i]
        result = dask.delayed(solve_chunk, pure=True)(block, concept, sel, opts,
                                                     dask_key_name=f"hybrid-nes-solve-{token}-{i}")
        for key in FIELDS:
            shape, dtype = shapes[key]
            pieces[key].append(da.from_delayed(result[key], shape=(rows,) + shape, dtype=dtype))
    return {key: da.concatenate(parts, axis=0) for key, parts in pieces.items()}


# --- connecting --------------------------------------------------------------------------

_LOCAL = re.compile(r"^local(?::(\d+))?$")


def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` for ``address``: ``tcp://host:port`` (or another Dask
    protocol), or ``local[:N]`` for a new LocalCluster of N worker processes (default: one
    per CPU core) with one thread each, no dashboard and Dask's profiler off. Close it after
    use with ``close(client)``, which closes its LocalCluster too.

    Raises ``ValueError`` for a malformed address and ``ConnectionError`` when no
    scheduler answers within ``timeout`` seconds (default ``CONNECT_TIMEOUT``).
    """
    _require_dask()
    timeout = CONNECT_TIMEOUT if timeout is None else float(timeout)
    from distributed import Client, LocalCluster

    address = address.strip()
    match = _LOCAL.match(address)
    if match:
        workers = int(match.group(1)) if match.group(1) else (os.cpu_count() or 1)
        if workers < 1:
            raise ValueError(f"local:N needs N >= 1 worker processes, got {address!r}")
        import dask

        # Dask's statistical profiler samples every worker thread's stack every 10 ms: CPU
        # taken from the solves, for a profile nobody reads here (no dashboard).
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(cluster)
        client._hybrid_nes_cluster = cluster  # closed by close()
        return client
    if "://" in address:
        scheme = address.split("://", 1)[0]
        if scheme not in ("tcp", "tls", "inproc", "ucx", "ws", "wss"):
            raise ValueError(f"unknown scheduler protocol {scheme!r} in {address!r}; "
                             "use tcp://host:port or local[:N]")
    host_port = address.split("://", 1)[-1]
    if not re.match(r"^[\w.\-\[\]:]+:\d+$", host_port):
        raise ValueError(f"scheduler address must look like tcp://host:8786 or local[:N], got {address!r}")
    _probe(address, timeout)
    try:
        return Client(address, timeout=timeout)
    except Exception as err:
        raise ConnectionError(f"no Dask scheduler answered at {address} within {timeout:g} s "
                              f"({type(err).__name__}: {str(err)[:200]})") from err


def _probe(address: str, timeout: float) -> None:
    """Connects and handshakes with ``address`` within ``timeout`` seconds, or raises
    ``ConnectionError``. ``distributed.Client(timeout=)`` bounds the TCP connect but not the
    handshake: a port that accepts and never answers would hang it for ever."""
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect as comm_connect

    async def handshake() -> None:
        comm = await asyncio.wait_for(comm_connect(address, timeout=timeout), timeout)
        await comm.close()

    try:  # a fresh event loop in a thread: callable from inside a running loop (Jupyter) too
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, handshake()).result()
    except (OSError, TimeoutError, asyncio.TimeoutError) as err:
        raise ConnectionError(f"no Dask scheduler answered at {address} within {timeout:g} s "
                              f"({type(err).__name__}: {err})") from err
    except Exception as err:  # something answered, but not a Dask scheduler (garbled handshake)
        raise ConnectionError(f"no Dask scheduler answered at {address}: the handshake failed "
                              f"({type(err).__name__}: {str(err)[:200]}); is it a Dask scheduler port?") from err


def close(client) -> None:
    """Closes a client from ``connect``, and its LocalCluster where ``connect`` started one."""
    cluster = getattr(client, "_hybrid_nes_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


# --- shards: out-of-core, restartable ------------------------------------------------------



def _run(client, sources: Sequence[Source], concept: str, sel: Selection, opts: Mapping, *,
         chunk: int, retries: int, progress: bool | Callable[[int, int], None], report: ShardReport) -> None:
    """Sends the chunks of ``sources`` as tasks (a bounded window of them), collects results
    as they complete and writes each source once all its chunks are in."""
    from distributed import as_completed
    from tqdm import tqdm

    run_id = uuid.uuid4().hex[:8]
    tasks: Iterator[tuple[int, int, int, int]] = (
        (s, c, lo, min(lo + chunk, src.num))
        for s, src in enumerate(sources) for c, lo in enumerate(range(0, src.num, chunk)))
    threads = max(1, sum(client.nthreads().values()))
    window = IN_FLIGHT_PER_THREAD * threads
    total = sum(src.num for src in sources)
    where: dict[str, tuple[int, int, int, int]] = {}
    remaining = [len(range(0, src.num, chunk)) for src in sources]
    bar = tqdm(total=total, desc=f"{concept} {sel.name}", unit="game", dynamic_ncols=True,
               disable=progress is not True)
    pending = as_completed()

    def submit() -> bool:
        task = next(tasks, None)
        if task is None:
            return False
        s, c, lo, hi = task
        games = np.ascontiguousarray(sources[s].games[lo:hi])
        key = f"hybrid-nes-{run_id}-{s}-{c}"
        where[key] = task
        pending.add(client.submit(solve_chunk, games, concept, sel, opts, key=key, retries=retries,
                                  pure=False))
        return True

    try:
        for _ in range(window):
            if not submit():
                break
        for future in pending:
            s, c, lo, hi = where.pop(future.key)
            src = sources[s]
            if future.status == "finished":
                arrays = future.result()
                src.chunks[c] = arrays
                done = int(np.sum(arrays["status"] == "optimal"))
                report.games += hi - lo
                report.certified += done
                bar.update(hi - lo)
                bar.set_postfix(certified=f"{report.certified}/{report.games}")
                if callable(progress):
                    progress(report.games, total)
            elif future.status == "error":
                err = future.exception()
                src.failed = True
                report.failed.append(ChunkFailure(src.name, c, (lo, hi), f"{type(err).__name__}: {err}"))
            else:  # cancelled / lost: the client lost its scheduler
                raise SchedulerLostError(
                    f"lost the Dask scheduler ({future.status}) after {report.games}/{total} games; "
                    f"complete results were kept: {len(report.written)} written this run")
            future.release()
            remaining[s] -= 1
            if remaining[s] == 0:
                if not src.failed:
                    src.write(concat_chunks(src.chunks))
                src.chunks.clear()
            submit()
    finally:
        bar.close()
        for future in list(pending.futures):
            future.release()


def solve_shards(in_dir: str | os.PathLike, out_dir: str | os.PathLike, concept: str = "cce",
                 selection: str | Selection = "me", *, client=None, chunk: int = 1000, retries: int = 2,
                 warm: bool = True, progress: bool | Callable[[int, int], None] = True,
                 warm_start: str = "auto", tol: float = 1e-8, method: str = "auto",
                 max_iter: int | None = None, polish: bool = True,
                 **selection_params: object) -> ShardReport:
    """Solves a directory of ``.npy`` shards (each ``[B_i, N, A1..AN]``, any shapes) into a
    directory of result shards, restartably.

    ``out_dir/<shard>.npz`` holds the arrays of ``stack_solutions`` for every game of
    ``in_dir/<shard>.npy``, in order, and a ``meta`` entry (JSON: source, games, shape and
    options). Each is written atomically once all its chunks are solved, so a result shard
    is complete or absent; a re-run skips the complete ones (a result shard of other
    options is an error, not overwritten). Shards are read by the client as memory maps,
    ``chunk`` games at a time, with at most ``2 x`` the cluster's threads chunks in flight,
    so neither the client nor the cluster holds the whole input; workers need no shared
    file system.

    Args:
      client: a ``distributed.Client`` (default: the current one, ``distributed.get_client()``).
      chunk: games per task.
      retries: re-runs of a task that raised (a worker that dies is handled by Dask itself:
        its tasks move to other workers, up to ``distributed.scheduler.allowed-failures``).
      warm: register ``WarmUp`` for the shards' shapes first (Numba kernels and network
        loaded once per worker).
      progress: a tqdm bar of games certified; a callable ``(done, total)`` instead; False.
      other arguments: as ``hybrid_nes.solve_batch``.

    Returns:
      A ``ShardReport``. Chunks that still failed after their retries are listed in
      ``report.failed`` (shard, chunk index, game range, error); their shards are not written.

    Raises:
      SchedulerLostError: the scheduler went away; the shards written so far are kept.
    """
    _require_dask()
    from distributed import get_client

    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    if not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    concept, sel, opts = _check_options(
        concept, selection,
        {"warm_start": warm_start, "tol": tol, "method": method, "max_iter": max_iter, "polish": polish},
        selection_params)
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = shard_files(in_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    client = client if client is not None else get_client()
    report = ShardReport()
    start = time.perf_counter()
    sources = []
    for path in files:
        games = open_shard(path)
        target = out_dir / f"{path.stem}.npz"
        meta = shard_meta(path.name, games.shape, concept, sel, opts)
        if is_complete(target, meta):
            report.skipped.append(target)
            continue

        def write(arrays, target=target, meta=meta):
            save_npz(target, {**arrays, META_KEY: np.array(json.dumps(meta))})
            report.written.append(target)

        sources.append(Source(path.name, games, write))
    if sources:
        if warm:
            t0 = time.perf_counter()
            warm_workers(client, concept, sorted({tuple(s.games.shape[2:]) for s in sources}), sel,
                         batch=min(int(chunk), max(s.num for s in sources)), **opts)
            report.warmup_seconds = time.perf_counter() - t0
        _run(client, sources, concept, sel, opts, chunk=int(chunk), retries=int(retries),
             progress=progress, report=report)
    report.seconds = time.perf_counter() - start
    return report
