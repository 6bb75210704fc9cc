"""Reading and writing games: NumPy ``.npy`` / ``.npz`` and Gambit ``.nfg`` files.

``.nfg`` goes through pygambit (extra ``openspiel`` installs it).

The readers check a file before they read its payoffs: a ``.npy`` (or ``.npz`` member)
header, or the header of an ``.nfg`` (players and strategies), declares the size, and a
file declaring more than ``max_entries`` payoff numbers is refused before anything that
size is allocated. Defaults: ``MAX_ENTRIES`` (2**25, 256 MiB as float64) for ``.npy`` /
``.npz``; ``MAX_NFG_ENTRIES`` (2**20) for ``.nfg``, whose reader holds ~230 bytes per
payoff (a 3000x3000 ``.nfg`` took 4.2 GB). Pass ``max_entries=`` (CLI: ``--max-entries``)
to allow more. Unreadable files (empty, truncated, corrupt, a ``.npy`` named ``.npz``,
pickled objects, payoffs beyond float64) raise ``ValueError`` with one line naming the
file and the problem; a missing file raises ``FileNotFoundError``.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from solvers.atomic import atomic_path
from solvers.game import as_game, as_game_batch

__all__ = ["MAX_ENTRIES", "MAX_NFG_ENTRIES", "load_game", "load_games", "save_game"]

NPZ_KEYS: tuple[str, ...] = ("payoffs", "game", "arr_0")

#: The most payoff numbers a ``.npy`` / ``.npz`` file may declare unless ``max_entries`` says otherwise.
MAX_ENTRIES: int = 2**25
#: The same for ``.nfg`` files (pygambit holds ~230 bytes per payoff).
MAX_NFG_ENTRIES: int = 2**20

_NPY_MAGIC = b"\x93NUMPY"
#: Errors of reading a damaged file, reported as ``ValueError`` with the file's name.
_READ_ERRORS = (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, OverflowError, KeyError,
                IndexError, RuntimeError, UnicodeDecodeError, MemoryError)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _check_entries(path: Path, shape: tuple[int, ...], limit: int, what: str = "", nfg: bool = False) -> int:
    entries = math.prod(shape)
    if entries > limit:
        dims = (f"a {shape[0]}-player {'x'.join(map(str, shape[1:]))} game" if nfg
                else f"shape {tuple(shape)}")
        raise ValueError(
            f"{path}: {what}declares {dims}, {entries:,} payoff numbers, over the limit of {limit:,} "
            f"(raise it with max_entries= or --max-entries)")
    return entries


def _npy_header(fp, path: Path, limit: int, available: int, what: str = "") -> None:
    """Reads a ``.npy`` header from ``fp`` (left at the data) and checks it against
    ``limit`` and the ``available`` bytes of the whole stream."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, EOFError, SyntaxError, TypeError) as err:
        raise ValueError(f"{path}: {what}not a valid .npy array: {_one_line(err)}") from err
    if dtype.hasobject:
        raise ValueError(f"{path}: {what}holds Python objects (pickled data), not payoff numbers")
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise ValueError(f"{path}: {what}holds {dtype} data, not payoff numbers")
    entries = _check_entries(path, shape, limit, what)
    need = entries * dtype.itemsize
    have = available - fp.tell()
    if have < need:
        raise ValueError(f"{path}: {what}truncated: shape {shape} needs {need:,} bytes of data, "
                         f"the file holds {max(have, 0):,}")


def _load_npy(path: Path, limit: int) -> np.ndarray:
    with open(path, "rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        if size == 0:
            raise ValueError(f"{path}: empty file")
        _npy_header(fp, path, limit, size)
        fp.seek(0)
        try:
            return np.lib.format.read_array(fp, allow_pickle=False)
        except _READ_ERRORS as err:
            raise ValueError(f"{path}: unreadable .npy data: {_one_line(err)}") from err


def _load_npz(path: Path, keys: tuple[str, ...], limit: int) -> np.ndarray:
    with open(path, "rb") as fp:
        head = fp.read(len(_NPY_MAGIC))
    if not head:
        raise ValueError(f"{path}: empty file")
    if head == _NPY_MAGIC:
        raise ValueError(f"{path}: a .npy file named .npz; rename it to .npy")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a valid .npz (zip) file: {_one_line(err)}") from err
    with archive:
        members = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
        key = next((k for k in keys if k in members), None)
        if key is None and len(members) == 1:
            key = next(iter(members))
        if key is None:
            raise ValueError(f"{path}: .npz holds {sorted(members)}; expected one array or a key in {keys}")
        info = members[key]
        what = f"array {key!r} "
        try:
            with archive.open(info) as fp:
                _npy_header(fp, path, limit, info.file_size, what)
            with archive.open(info) as fp:
                return np.lib.format.read_array(fp, allow_pickle=False)
        except ValueError as err:
            if str(err).startswith(f"{path}:"):
                raise
            raise ValueError(f"{path}: {what}unreadable: {_one_line(err)}") from err
        except _READ_ERRORS as err:
            raise ValueError(f"{path}: {what}unreadable: {_one_line(err)}") from err


def _nfg_tokens(fp):
    """Tokens of Gambit's .nfg text: ``{``, ``}``, quoted strings (as ``("str", text)``) and words."""
    buf, pos = "", 0

    def more() -> bool:
        nonlocal buf, pos
        chunk = fp.read(1 << 16)
        if not chunk:
            return False
        buf, pos = buf[pos:] + chunk, 0
        return True

    while True:
        while True:
            while pos < len(buf) and buf[pos].isspace():
                pos += 1
            if pos < len(buf) or not more():
                break
        if pos >= len(buf):
            return
        c = buf[pos]
        if c in "{}":
            pos += 1
            yield c
        elif c == '"':
            end, text = pos + 1, []
            while True:
                if end >= len(buf):
                    consumed = end - pos
                    if not more():
                        raise ValueError("unterminated string")
                    end = pos + consumed
                    continue
                if buf[end] == "\\" and end + 1 < len(buf):
                    text.append(buf[end + 1])
                    end += 2
                elif buf[end] == "\\":
                    consumed = end - pos
                    if not more():
                        raise ValueError("unterminated string")
                    end = pos + consumed
                elif buf[end] == '"':
                    break
                else:
                    text.append(buf[end])
                    end += 1
            pos = end + 1
            yield ("str", "".join(text))
        else:
            end = pos
            while True:
                while end < len(buf) and not buf[end].isspace() and buf[end] not in '{}"':
                    end += 1
                if end < len(buf):
                    break
                consumed = end - pos
                if not more():
                    break
                end = pos + consumed
            yield buf[pos:end]
            pos = end


def _nfg_shape(path: Path) -> tuple[int, ...]:
    """``(N, A1..AN)`` declared by an .nfg header, read without reading the payoffs."""
    with open(path, encoding="utf-8", errors="replace") as fp:
        tokens = _nfg_tokens(fp)

        def nxt():
            tok = next(tokens, None)
            if tok is None:
                raise ValueError("the header ends early")
            return tok

        try:
            if nxt() != "NFG":
                raise ValueError("no NFG header")
            version, kind = nxt(), nxt()
            if version not in ("1", "2") or kind not in ("R", "D"):
                raise ValueError(f"header 'NFG {version} {kind}' is not NFG 1 R or NFG 1 D")
            if not isinstance(nxt(), tuple):
                raise ValueError("no quoted title after 'NFG 1 R'")
            if nxt() != "{":
                raise ValueError("no player list")
            players = 0
            while (tok := nxt()) != "}":
                if not isinstance(tok, tuple):
                    raise ValueError(f"player names must be quoted, got {tok!r}")
                players += 1
            if nxt() != "{":
                raise ValueError("no strategy list")
            actions = []
            while (tok := nxt()) != "}":
                if tok == "{":
                    count = 0
                    while (name := nxt()) != "}":
                        if not isinstance(name, tuple):
                            raise ValueError(f"strategy names must be quoted, got {name!r}")
                        count += 1
                    actions.append(count)
                elif isinstance(tok, str) and tok.isdigit():
                    actions.append(int(tok))
                else:
                    raise ValueError(f"bad strategy count {tok!r}")
        except ValueError as err:
            raise ValueError(f"{path}: not a Gambit .nfg file: {_one_line(err)}") from err
    if players < 2 or len(actions) != players or min(actions) < 1:
        raise ValueError(f"{path}: the .nfg header declares {players} players and strategy counts {actions}; "
                         "need >= 2 players with >= 1 strategy each")
    return (players, *actions)


def _load_nfg(path: Path, limit: int) -> np.ndarray:
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    _check_entries(path, _nfg_shape(path), limit, nfg=True)
    gbt = _pygambit()
    try:
        game = gbt.read_nfg(str(path))
        arrays = game.to_arrays(dtype=float)
        return np.stack([np.asarray(a, dtype=np.float64) for a in arrays])
    except OverflowError as err:
        raise ValueError(f"{path}: a payoff is beyond float64 range ({_one_line(err)})") from err
    except _READ_ERRORS as err:
        raise ValueError(f"{path}: unreadable .nfg file: {_one_line(err)}") from err


def _pygambit():
    try:
        import pygambit
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading or writing .nfg files needs pygambit: pip install 'hybrid_nes[openspiel]'"
        ) from err
    return pygambit


def _read_array(path: Path, what: str, npz_keys: tuple[str, ...], nfg: bool,
                max_entries: int | None = None) -> np.ndarray:
    """The raw array of a ``.npy`` / ``.npz`` (/ ``.nfg`` when ``nfg``) file."""
    if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                    or max_entries < 1):
        raise ValueError(f"max_entries must be a positive integer, got {max_entries!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, max_entries or MAX_ENTRIES)
    if suffix == ".npz":
        return _load_npz(path, npz_keys, max_entries or MAX_ENTRIES)
    if suffix == ".nfg" and nfg:
        return _load_nfg(path, max_entries or MAX_NFG_ENTRIES)
    types = ".npy, .npz or .nfg" if nfg else ".npy or .npz"
    raise ValueError(f"{path}: unknown {what} file type {suffix!r}; use {types}")


def load_game(path: str | os.PathLike, max_entries: int | None = None) -> np.ndarray:
    """Reads a game file into a validated ``[N, A1..AN]`` float64 tensor.

    Supports ``.npy`` (the tensor), ``.npz`` (key ``payoffs``/``game`` or a single array)
    and Gambit ``.nfg`` (strategic form, any number of players). ``max_entries``: the most
    payoff numbers the file may declare (default ``MAX_ENTRIES``, ``MAX_NFG_ENTRIES`` for
    ``.nfg``). Damaged files raise ``ValueError`` naming the file (module docstring).
    """
    path = Path(path)
    return as_game(_read_array(path, "game", NPZ_KEYS, nfg=True, max_entries=max_entries), name=str(path))


def load_games(path: str | os.PathLike, max_entries: int | None = None) -> np.ndarray:
    """Reads a batch of games of one shape, ``[B, N, A1..AN]`` float64, from ``.npy`` or
    ``.npz`` (key ``payoffs``/``games``/``game`` or a single array).

    The batch axis is required: ``[N, A1..AN]`` is ambiguous (a ``[3, 2, 4, 4]`` array is
    both one 3-player game and three 2-player ones); add it with ``array[None]``.
    ``max_entries`` bounds the whole batch's payoff numbers (default ``MAX_ENTRIES``).
    """
    path = Path(path)
    return as_game_batch(_read_array(path, "games", ("games",) + NPZ_KEYS, nfg=False, max_entries=max_entries),
                         name=str(path))


def save_game(game: np.ndarray, path: str | os.PathLike, title: str = "hybrid_nes game") -> None:
    """Writes ``game: [N, A1..AN]`` as ``.npy``, ``.npz`` or ``.nfg``, atomically."""
    game = as_game(game)
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix == ".npy":
            np.save(tmp, game)
        elif suffix == ".npz":
            np.savez(tmp, payoffs=game)
        elif suffix == ".nfg":
            gbt = _pygambit()
            written = gbt.Game.from_arrays(*game, title=title)
            tmp.write_text(written.to_nfg())
        else:
            raise ValueError(f"{path}: unknown game file type {suffix!r}; use .npy, .npz or .nfg")
