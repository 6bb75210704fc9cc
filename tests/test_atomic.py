"""Atomic writes: a failed write leaves the old file; a good one replaces it, readable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solvers.atomic import (
    STALE_AFTER_S,
    atomic_path,
    check_destination,
    remove_stale_temporaries,
    write_text_atomic,
)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_write_replaces_the_file_readable_by_others(tmp_path):
    target = write_text_atomic(tmp_path / "sub" / "config.json", "{}\n")
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


def test_temporary_keeps_the_requested_suffix(tmp_path):
    with atomic_path(tmp_path / "game.npz", suffix=".npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "game.npz").read_bytes() == b"x"


# --- stale temporaries (solvers.atomic module docstring) ---


_KILLED_WRITER = """
import sys, time
from solvers.atomic import atomic_path
with atomic_path(sys.argv[1], suffix=".npz") as tmp:
    tmp.write_bytes(b"half a file")
    print(tmp, flush=True)
    time.sleep(600)
"""


def _killed_writer(target: Path) -> Path:
    """Runs a writer that is SIGKILLed in the middle of an atomic write; returns its temporary."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        tmp = Path(proc.stdout.readline().strip())
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    return tmp


@pytest.mark.skipif(os.name == "nt", reason="process ids are not checked on Windows")
def test_the_next_write_removes_the_temporary_of_a_killed_writer(tmp_path):
    target = tmp_path / "results.npz"
    tmp = _killed_writer(target)
    assert tmp.exists() and tmp.name.startswith(".results.npz.") and tmp.name.endswith(".npz")
    assert not target.exists()
    with atomic_path(target, suffix=".npz") as new:
        new.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.npz"]


def test_live_and_foreign_temporaries_are_kept_until_stale(tmp_path):
    target = tmp_path / "results.npz"
    live = tmp_path / f".results.npz.00000000-{os.getpid()}.abcd_123.npz"  # this (running) process
    other_host = tmp_path / ".results.npz.ffffffff-1.abcdefgh.npz"  # pid 1 elsewhere: unknown
    legacy = tmp_path / ".results.npz.k2j4h5g6.npz"  # older versions: no host or pid
    other_dest = tmp_path / ".other.npz.ffffffff-1.abcdefgh.npz"
    user_file = tmp_path / ".results.npz.notes.txt"
    for p in (live, other_host, legacy, other_dest, user_file):
        p.write_bytes(b"x")
    # The host tag of `live` differs from this machine's, so only the age rule applies to it.
    assert remove_stale_temporaries(target) == []
    later = time.time() + STALE_AFTER_S + 60
    removed = remove_stale_temporaries(target, now=later)
    assert sorted(p.name for p in removed) == sorted(p.name for p in (live, other_host, legacy))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other_dest.name, user_file.name])


def test_check_destination_creates_the_folder_and_refuses_bad_targets(tmp_path):
    out = check_destination(tmp_path / "a" / "b" / "r.npz", suffix=".npz")
    assert out.parent.is_dir() and not out.exists() and list(out.parent.iterdir()) == []
    with pytest.raises(ValueError, match="expected a .npz file name"):
        check_destination(tmp_path / "r.json", suffix=".npz")
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        check_destination(tmp_path / "d.npz", suffix=".npz")
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="cannot create the folder"):
        check_destination(tmp_path / "file" / "r.npz")
    with pytest.raises(FileNotFoundError, match="no folder"):
        check_destination(tmp_path / "none" / "r.npz", create=False)


def test_check_destination_refuses_an_unwritable_folder(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o555)
    elif os.path.isdir("/proc/self"):
        folder = Path("/proc")  # read-only even for root
    else:
        pytest.skip("no folder this user cannot write")
    with pytest.raises(OSError, match=f"cannot write {folder / 'r.npz'}"):
        check_destination(folder / "r.npz", suffix=".npz", create=False)
