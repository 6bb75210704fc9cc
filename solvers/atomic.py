"""Atomic file writes: write a temporary file beside the target, then ``os.replace``.

A reader never sees a half-written file, and a failed write leaves the old file as it
was. Shared by game files, checkpoints, run configs and benchmark results.

Temporaries and their clean-up
------------------------------
The temporary of a write to ``DIR/NAME`` is ``DIR/.NAME.<host>-<pid>.<random><suffix>``:
``<host>`` is 8 hex digits of a hash of the machine's name, ``<pid>`` the writing
process. A process killed outright (SIGKILL, power loss) during a write leaves it
behind. Every later write to the same ``DIR/NAME`` (``atomic_path``, ``check_destination``)
first removes the stale temporaries of that destination, and only those:

- a temporary made on this machine by a process that is no longer running, at once;
- any temporary of that destination not modified for ``STALE_AFTER_S`` seconds (one
  hour): those of other machines sharing the folder, of a process id since reused,
  or named by older versions (``.NAME.<8 random characters><suffix>``, no host or pid).

A temporary counts as one of ``DIR/NAME``'s when its name is ``.NAME.`` followed by
either form above; files of other destinations, and anything else, are never touched.
On Windows process ids are not checked (only the age rule applies).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STALE_AFTER_S", "atomic_path", "check_destination", "remove_stale_temporaries", "write_text_atomic"]

#: A temporary untouched for this long is stale whoever made it (see the module docstring).
STALE_AFTER_S: float = 3600.0

_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_RANDOM = r"[a-z0-9_]{8}"  # tempfile's random part


def _prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-{os.getpid()}."


def _temporary_re(path: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(path.name)}\.(?:(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)\.)?{_RANDOM}(?:\..*)?\Z")


def _running(pid: int) -> bool:
    if os.name == "nt" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but not ours, or not a pid we can ask about
    return True


def remove_stale_temporaries(path: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Removes the stale temporaries of writes to ``path`` (rule in the module docstring).

    Returns the paths removed. Files that vanish or cannot be removed meanwhile are skipped.
    """
    path = Path(path)
    pattern = _temporary_re(path)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            dead = match["host"] == _HOST and not _running(int(match["pid"]))
            if old or dead:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def check_destination(path: str | os.PathLike, suffix: str | None = None, create: bool = True) -> Path:
    """Checks that ``atomic_path(path)`` can write ``path``, before any costly work.

    Creates the folder (when ``create``), refuses a ``path`` that is a folder or lacks
    ``suffix`` (case-insensitive, when given), removes stale temporaries, and creates and
    removes a probe temporary there: permissions, read-only file systems and quotas on
    inodes show up now rather than after the work. Raises ``ValueError`` or ``OSError``
    with a one-line message naming ``path``.
    """
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix.lower():
        raise ValueError(f"{path}: expected a {suffix} file name")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected a file name")
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"cannot create the folder {path.parent} for {path}: {err.strerror or err}") from err
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"no folder {path.parent} for {path}")
    remove_stale_temporaries(path)
    try:
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=suffix or ".tmp")
    except OSError as err:
        raise OSError(f"cannot write {path}: {err.strerror or err}") from err
    os.close(fd)
    os.unlink(probe)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it replaces ``path`` (0644).

    ``suffix`` is the temporary file's extension, for writers that choose the format by
    it. On any exception the temporary file is removed and ``path`` is left untouched.
    Stale temporaries of earlier writes to ``path`` are removed first (module docstring).
    """
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results and weights are read by others
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically (creating its folder); returns ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
