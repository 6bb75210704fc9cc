"""The ``hybrid-nes`` CLI on bad files, unwritable outputs, Ctrl-C and strict JSON (issue 18)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hybrid_nes.cli import _strict, main

ROOT = Path(__file__).resolve().parents[1]
_PD = ('NFG 1 R "PD" { "1" "2" }\n\n{ { "C" "D" }\n{ "C" "D" }\n}\n""\n\n'
       '{\n{ "" 3, 3 }\n{ "" 5, 0 }\n{ "" 0, 5 }\n{ "" 1, 1 }\n}\n1 2 3 4\n')


def _strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _unwritable_folder(tmp_path) -> Path:
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o555)
        return folder
    if os.path.isdir("/proc/self"):
        return Path("/proc")  # read-only even for root
    pytest.skip("no folder this user cannot write")


def _one_error_line(err: str, prefix: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and "Traceback" not in err, err
    return lines[0]


# --- the output location is checked before anything is loaded or solved ---

def test_solve_batch_checks_an_unwritable_out_before_reading_or_solving(tmp_path, capsys):
    folder = _unwritable_folder(tmp_path)
    # The games file does not exist: the --out error shows that the output came first.
    code = main(["solve-batch", str(tmp_path / "missing.npy"), "--out", str(folder / "r.npz"), "--no-progress"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err, "hybrid-nes solve-batch: --out: ")
    assert f"cannot write {folder / 'r.npz'}" in line


def test_solve_batch_out_folder_is_created_and_a_folder_out_is_refused(tmp_path, capsys):
    np.save(tmp_path / "g.npy", np.random.default_rng(0).normal(size=(2, 2, 3, 3)))
    out = tmp_path / "new" / "sub" / "r.npz"
    assert main(["solve-batch", str(tmp_path / "g.npy"), "--out", str(out), "--no-progress", "--no-polish"]) == 0
    with np.load(out) as res:
        assert res["joint"].shape == (2, 3, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.npz"]
    capsys.readouterr()
    (tmp_path / "d.npz").mkdir()
    assert main(["solve-batch", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "d.npz"), "--no-progress"]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err, "hybrid-nes solve-batch: --out: ")
    (tmp_path / "file").write_text("")
    assert main(["solve-batch", str(tmp_path / "g.npy"), "--out", str(tmp_path / "file" / "r.npz"),
                 "--no-progress"]) == 2
    assert "cannot create the folder" in _one_error_line(capsys.readouterr().err, "hybrid-nes solve-batch: --out: ")


# --- damaged game files: one line on stderr, exit 2, in solve and solve-batch ---

def _write_damaged(tmp_path: Path) -> dict[str, str]:
    games = np.random.default_rng(1).normal(size=(2, 2, 3, 3))
    np.save(tmp_path / "good.npy", games)
    np.savez_compressed(tmp_path / "good_z.npz", games=games)
    npy = (tmp_path / "good.npy").read_bytes()
    zipped = bytearray((tmp_path / "good_z.npz").read_bytes())
    zipped[120] ^= 0xFF
    files = {
        "empty.npz": (b"", "empty file"),
        "empty.npy": (b"", "empty file"),
        "trunc.npy": (npy[:140], "truncated"),
        "trunc.npz": (bytes(zipped[:100]), "not a valid .npz (zip) file"),
        "renamed.npz": (npy, "a .npy file named .npz"),
        "corrupt.npz": (bytes(zipped), "unreadable"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: message for name, (_, message) in files.items()}


def test_damaged_files_give_one_line_and_exit_2(tmp_path, capsys):
    for name, message in _write_damaged(tmp_path).items():
        path = tmp_path / name
        assert main(["solve-batch", str(path), "--out", str(tmp_path / "r.npz"), "--no-progress"]) == 2, name
        line = _one_error_line(capsys.readouterr().err, f"hybrid-nes solve-batch: {path}: ")
        assert message in line, line
        assert main(["solve", str(path)]) == 2, name
        line = _one_error_line(capsys.readouterr().err, f"hybrid-nes solve: {path}: ")
        assert message in line, line
    assert not (tmp_path / "r.npz").exists()


def test_nfg_overflow_and_oversized_header_give_one_line_and_exit_2(tmp_path, capsys):
    pytest.importorskip("pygambit", reason="pygambit (extra 'openspiel') reads .nfg files")
    cases = {
        "overflow.nfg": (_PD.replace('"" 3, 3', '"" 1e400, 3'), "a payoff is beyond float64 range"),
        "huge.nfg": ('NFG 1 R "" { "1" "2" } { 20000 20000 }\n\n1 2\n',
                     "declares a 2-player 20000x20000 game, 800,000,000 payoff numbers, over the limit"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        start = time.perf_counter()
        assert main(["solve", str(tmp_path / name)]) == 2
        assert time.perf_counter() - start < 60  # 20000x20000 passed 22 GB in 300 s before
        assert message in _one_error_line(capsys.readouterr().err, f"hybrid-nes solve: {tmp_path / name}: ")


def test_max_entries_option(tmp_path, capsys):
    pytest.importorskip("pygambit", reason="pygambit (extra 'openspiel') reads .nfg files")
    (tmp_path / "pd.nfg").write_text(_PD)  # 2 x 2 x 2 = 8 payoffs
    assert main(["solve", str(tmp_path / "pd.nfg"), "--max-entries", "7"]) == 2
    assert "over the limit of 7" in _one_error_line(capsys.readouterr().err, "hybrid-nes solve: ")
    assert main(["solve", str(tmp_path / "pd.nfg"), "--max-entries", "8", "--warm-start", "cold"]) == 0
    assert "status optimal" in capsys.readouterr().out
    np.save(tmp_path / "g.npy", np.zeros((3, 2, 2, 2)))  # 24 payoffs
    argv = ["solve-batch", str(tmp_path / "g.npy"), "--out", str(tmp_path / "r.npz"), "--no-progress"]
    assert main([*argv, "--max-entries", "23"]) == 2
    assert "over the limit of 23" in _one_error_line(capsys.readouterr().err, "hybrid-nes solve-batch: ")
    assert not (tmp_path / "r.npz").exists()
    with pytest.raises(SystemExit) as info:
        main([*argv, "--max-entries", "0"])
    assert info.value.code == 2
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


# --- strict JSON ---

def test_solve_json_is_strict_json_with_null_for_non_finite_figures(tmp_path, capsys):
    game = np.random.default_rng(0).normal(size=(2, 3, 3))
    np.save(tmp_path / "g.npy", game)
    # A negative eps-hat makes the CE infeasible: no primal point, a NaN duality gap.
    assert main(["solve", str(tmp_path / "g.npy"), "--concept", "ce", "--eps-hat", "-1", "--json",
                 "--warm-start", "cold"]) == 1
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    data = _strict_loads(out)
    assert data["status"] == "infeasible" and data["duality_gap"] is None
    # A finite solution keeps its numbers.
    assert main(["solve", str(tmp_path / "g.npy"), "--concept", "ce", "--json", "--warm-start", "cold"]) == 0
    data = _strict_loads(capsys.readouterr().out)
    assert data["status"] == "optimal" and isinstance(data["duality_gap"], float)
    assert abs(sum(map(sum, data["joint"])) - 1) < 1e-9


def test_strict_maps_every_non_finite_float_to_none():
    value = {"a": math.nan, "b": [1.0, -math.inf, [math.inf, 2]], "c": (3.5, math.nan), "d": "NaN", "e": 7}
    assert _strict(value) == {"a": None, "b": [1.0, None, [None, 2]], "c": [3.5, None], "d": "NaN", "e": 7}
    _strict_loads(json.dumps(_strict(value), allow_nan=False))


# --- Ctrl-C ---

def _interrupt(argv: list[str], ready, tmp_path: Path, env_extra: dict | None = None,
               entry: tuple[str, ...] = ("-m", "hybrid_nes.cli")):
    """Runs the CLI, sends SIGINT once ``ready(stderr_so_far, elapsed)``; returns (rc, stderr, seconds to exit)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    # SIGINT as an interactive shell leaves it (a test run started in the background
    # inherits it ignored, and the CLI rightly keeps an ignored SIGINT ignored).
    proc = subprocess.Popen([sys.executable, *entry, *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.set_blocking(proc.stderr.fileno(), False)
    err, start = b"", time.perf_counter()
    try:
        while not ready(err, time.perf_counter() - start):
            assert proc.poll() is None, f"ended before the interrupt: {err.decode()}"
            time.sleep(0.1)
            err += proc.stderr.read() or b""
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        took = time.perf_counter() - sent
        os.set_blocking(proc.stderr.fileno(), True)
        err += proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return proc.returncode, err.decode(), took


def _bar_started(err: bytes, elapsed: float) -> bool:
    return b"game/s" in err and elapsed > 1.0


needs_posix = pytest.mark.skipif(os.name != "posix", reason="SIGINT to a subprocess")


@needs_posix
def test_sigint_during_solve_batch_exits_130_with_one_line(tmp_path):
    np.save(tmp_path / "games.npy", np.random.default_rng(1).normal(size=(4000, 2, 16, 16)))
    rc, err, took = _interrupt(["solve-batch", "games.npy", "--out", "r.npz", "--concept", "ce"],
                               _bar_started, tmp_path)
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == "hybrid-nes solve-batch: interrupted" and "Traceback" not in err, err
    assert took < 5, took
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.npy"]  # no result, no temporary


@needs_posix
def test_sigint_inside_a_long_kernel_of_solve_exits_promptly(tmp_path):
    # A 96x96 maximum-strength CE: the refine kernel runs for tens of seconds without
    # returning to Python (64x64 took ~60 s under load, ~10 s on an idle machine: too close).
    np.save(tmp_path / "g.npy", np.random.default_rng(2).normal(size=(2, 96, 96)))
    rc, err, took = _interrupt(["solve", "g.npy", "--concept", "ce", "--selection", "ms", "--warm-start", "cold"],
                               lambda err, elapsed: elapsed > 8, tmp_path)
    assert rc == 130, err
    assert err.strip().splitlines() == ["hybrid-nes solve: interrupted"], err
    assert took < 5, took


_NO_CFUNC = "import sys; sys.modules['hybrid_nes._sigint'] = None; from hybrid_nes.cli import main; sys.exit(main())"


@needs_posix
def test_sigint_fallback_without_the_compiled_handler(tmp_path):
    # Where the C-level handler is unavailable the Python-level one answers, between kernels.
    # The interrupt goes once the progress bar shows (solving has begun), not after a fixed
    # sleep: an idle machine finished 4,000 games within the 12 s the test used to wait.
    np.save(tmp_path / "games.npy", np.random.default_rng(1).normal(size=(20000, 2, 16, 16)))
    rc, err, took = _interrupt(["solve-batch", "games.npy", "--out", "r.npz", "--concept", "ce", "--chunk", "20"],
                               _bar_started, tmp_path, entry=("-c", _NO_CFUNC))
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == "hybrid-nes solve-batch: interrupted" and "Traceback" not in err, err
    assert took < 10, took


@needs_posix
def test_an_ignored_sigint_stays_ignored(tmp_path):
    # Shells start background jobs with SIGINT ignored; the CLI must not take it back.
    np.save(tmp_path / "games.npy", np.random.default_rng(1).normal(size=(20000, 2, 16, 16)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "hybrid_nes.cli", "solve-batch", "games.npy", "--out", "r.npz",
                             "--concept", "ce", "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(8)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        time.sleep(2)
        assert proc.poll() is None, proc.stderr.read()
    finally:
        proc.kill()
        proc.communicate()
