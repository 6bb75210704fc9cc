"""hybrid_nes.distributed: solve_dask, solve_shards and solve-batch --scheduler on a
LocalCluster of 2 worker processes: results equal to local solve_batch, restart, faults."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("distributed")

import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from hybrid_nes import distributed as hd  # noqa: E402
from hybrid_nes.cli import main  # noqa: E402
from hybrid_nes.pipeline import solve_batch  # noqa: E402
from solvers.solution import stack_solutions  # noqa: E402

ATOL = 1e-7
FLOAT_FIELDS = ("joint", "duals", "eps", "gaps", "scale", "gap", "normalised_gap", "duality_gap", "objective")


def _games(num, shape=(8, 8), seed=0):
    return np.random.default_rng(seed).normal(size=(num, len(shape)) + shape)


def _local(games, concept="ce"):
    return stack_solutions(solve_batch(games, concept))


def _assert_same(got, want):
    assert got["joint"].shape == want["joint"].shape
    for key in FLOAT_FIELDS:
        np.testing.assert_allclose(got[key], want[key], atol=ATOL, rtol=0, err_msg=key)
    for key in ("status", "method", "iterations"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three shards of 8x8 games (40, 25, 30) and their local results."""
    root = tmp_path_factory.mktemp("shards")
    sizes = (40, 25, 30)
    local = {}
    for i, size in enumerate(sizes):
        games = _games(size, seed=10 + i)
        np.save(root / f"part{i}.npy", games)
        local[f"part{i}"] = _local(games)
    return root, local


def test_solve_dask_matches_local_solve_batch(client):
    games = _games(45, seed=1)
    out = hd.solve_dask(da.from_array(games, chunks=(20, 2, 8, 8)), "ce")
    assert set(out) == set(hd.FIELDS)
    assert out["joint"].chunks[0] == (20, 20, 5) and out["duals"].shape == (45, 2 * 8 * 7)
    got = dict(zip(out, client.compute(list(out.values()), retries=1, sync=True), strict=True))
    _assert_same(got, _local(games))
    assert set(got["status"]) == {"optimal"}


def test_solve_dask_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[B, N, A1..AN\]"):
        hd.solve_dask(da.zeros((4, 8, 8)), "ce")
    with pytest.raises(ValueError, match="concept"):
        hd.solve_dask(da.zeros((4, 2, 3, 3)), "nash")
    with pytest.raises(ValueError, match="warm_start duals"):
        hd.solve_shards(".", ".", "ce", client=object(), warm_start=np.zeros((1, 3)))


def test_shards_restart_skips_complete_shards(client, shards, tmp_path):
    in_dir, local = shards
    out_dir = tmp_path / "out"
    report = hd.solve_shards(in_dir, out_dir, "ce", client=client, chunk=16, progress=False)
    assert report.ok and report.games == 95 and report.certified == 95 and not report.skipped
    assert sorted(p.name for p in report.written) == ["part0.npz", "part1.npz", "part2.npz"]
    for name, want in local.items():
        with np.load(out_dir / f"{name}.npz") as data:
            _assert_same(data, want)
            meta = json.loads(str(data["meta"]))
        assert meta["source"] == f"{name}.npy" and meta["games"] == want["joint"].shape[0]
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temporary files left

    # Re-run after losing one result shard: only that shard is solved again.
    (out_dir / "part1.npz").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    seen = []
    again = hd.solve_shards(in_dir, out_dir, "ce", client=client, chunk=16, warm=False,
                            progress=lambda done, total: seen.append((done, total)))
    assert [p.name for p in again.written] == ["part1.npz"]
    assert sorted(p.name for p in again.skipped) == ["part0.npz", "part2.npz"]
    assert again.games == 25 and seen[-1] == (25, 25)
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir() if p.name in kept} == kept
    with np.load(out_dir / "part1.npz") as data:
        _assert_same(data, local["part1"])

    # A complete re-run does nothing; other options in the same directory are an error.
    assert hd.solve_shards(in_dir, out_dir, "ce", client=client, warm=False, progress=False).games == 0
    with pytest.raises(ValueError, match="other options"):
        hd.solve_shards(in_dir, out_dir, "cce", client=client, warm=False, progress=False)


def test_failing_chunk_is_reported_by_index(client, tmp_path):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    good, bad = _games(12, seed=3), _games(12, seed=4)
    bad[7, 0, 1, 1] = np.nan
    np.save(in_dir / "a_good.npy", good)
    np.save(in_dir / "b_bad.npy", bad)
    report = hd.solve_shards(in_dir, tmp_path / "out", "ce", client=client, chunk=5, retries=1,
                             warm=False, progress=False)
    assert not report.ok
    assert [(f.source, f.chunk, f.games) for f in report.failed] == [("b_bad.npy", 1, (5, 10))]
    assert "ValueError" in report.failed[0].error and "finite" in report.failed[0].error
    assert [p.name for p in report.written] == ["a_good.npz"]
    assert not (tmp_path / "out" / "b_bad.npz").exists()
    assert report.games == 12 + 7  # the failed chunk's games are not counted as solved


def test_cli_scheduler_file_and_shards(client, shards, tmp_path, capsys):
    games = _games(30, seed=5)
    path = tmp_path / "games.npy"
    np.save(path, games)
    out = tmp_path / "res.npz"
    address = client.scheduler.address
    code = main(["solve-batch", str(path), "--out", str(out), "--concept", "ce", "--chunk", "8",
                 "--no-progress", "--scheduler", address])
    assert code == 0, capsys.readouterr().err
    with np.load(out) as data:
        assert sorted(data.files) == sorted(hd.FIELDS)
        _assert_same(data, _local(games))
    assert "certified 30/30" in capsys.readouterr().out

    in_dir, local = shards
    out_dir = tmp_path / "res"
    assert main(["solve-batch", str(in_dir), "--out", str(out_dir), "--concept", "ce", "--chunk", "16",
                 "--no-progress", "--scheduler", address]) == 0
    with np.load(out_dir / "part2.npz") as data:
        _assert_same(data, local["part2"])
    assert main(["solve-batch", str(in_dir), "--out", str(out_dir), "--concept", "ce",
                 "--no-progress", "--scheduler", address]) == 0
    assert "0 written, 3 already complete" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_addresses_fail_fast(monkeypatch, tmp_path, capsys):
    for address in ("nohost", "http://host:8786", "tcp://host", "local:0"):
        with pytest.raises(ValueError, match="address|protocol|N >= 1"):
            hd.connect(address)
    closed = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    # A port that answers, but not as a Dask scheduler (an HTTP server, say).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer():  # garbage to the first caller; later ones are accepted and never answered
        conn, _ = server.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)
        time.sleep(30)
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    other = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        # an unroutable host gets no answer at all
        for address in (closed, other, other, "tcp://10.255.255.1:8786"):
            start = time.perf_counter()
            with pytest.raises(ConnectionError, match="no Dask scheduler answered"):
                hd.connect(address, timeout=2)
            assert time.perf_counter() - start < 10
    finally:
        server.close()
    path = tmp_path / "g.npy"
    np.save(path, _games(2))
    monkeypatch.setattr(hd, "CONNECT_TIMEOUT", 2.0)
    start = time.perf_counter()
    code = main(["solve-batch", str(path), "--out", str(tmp_path / "r.npz"), "--no-progress",
                 "--scheduler", closed])
    assert code == 2 and time.perf_counter() - start < 10
    assert f"no Dask scheduler answered at {closed}" in capsys.readouterr().err
    assert not (tmp_path / "r.npz").exists()


def test_scheduler_lost_keeps_complete_shards(tmp_path):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    local = {}
    for i in range(4):
        games = _games(20, seed=20 + i)
        np.save(in_dir / f"s{i}.npy", games)
        local[f"s{i}"] = games
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    client = Client(cluster, timeout=3)

    def kill_scheduler(done, total):
        if done == 40:  # two shards complete
            cluster.sync(cluster.scheduler.close)

    try:
        start = time.perf_counter()
        with pytest.raises(hd.SchedulerLostError, match="lost the Dask scheduler"):
            hd.solve_shards(in_dir, tmp_path / "out", "ce", client=client, chunk=10, progress=kill_scheduler)
        assert time.perf_counter() - start < 60
    finally:
        client.close()
        with contextlib.suppress(TimeoutError):  # its scheduler is gone: don't wait 30 s for it
            cluster.close(timeout=3)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written and "s3.npz" not in written
    for name in written:
        with np.load(tmp_path / "out" / name) as data:
            _assert_same(data, _local(local[name[:-4]]))


def test_worker_killed_mid_run_loses_no_game(client, tmp_path):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    games = _games(120, seed=7)
    np.save(in_dir / "all.npy", games)
    hd.warm_workers(client, "ce", (8, 8))
    victim = sorted(client.scheduler_info()["workers"])[0]
    victim_pid = client.run(os.getpid, workers=[victim])[victim]

    def arm(dask_worker):
        import os
        import threading
        import time

        def watch():
            while not dask_worker.state.executing:
                time.sleep(0.002)
            time.sleep(0.02)  # mid-task
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()

    client.run(arm, workers=[victim])
    report = hd.solve_shards(in_dir, tmp_path / "out", "ce", client=client, chunk=10, warm=False,
                             progress=False)
    assert report.ok and report.games == 120
    client.wait_for_workers(2, timeout=120)
    assert victim_pid not in client.run(os.getpid).values()  # the worker did die (and was restarted)
    with np.load(tmp_path / "out" / "all.npz") as data:
        _assert_same(data, _local(games))  # every game once, in order
