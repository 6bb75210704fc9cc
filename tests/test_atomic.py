"""Atomic writes: a failed write leaves the old file; a good one replaces it, readable."""

from __future__ import annotations

import os
import stat

import pytest

from solvers.atomic import atomic_path, write_text_atomic


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
