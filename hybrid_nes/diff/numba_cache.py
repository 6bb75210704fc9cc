"""Numba's on-disk cache of ``hybrid_nes.diff``'s kernels, keyed on every source they compile in.

Numba keys a cached function on its own file: a caller whose callee in another file was
edited keeps its stale machine code (the callee is linked into the caller's library). The
kernels here (``forward``, ``fast_forward``, ``linalg``, the FFI handler) call kernels of
``solvers``, so ``SourcesCache`` stamps them with ``sources_digest`` too: an edit of any
module of ``solvers`` or ``hybrid_nes.diff`` recompiles them. (Kernels of ``solvers`` that
call one another across files keep Numba's own key.)
"""

from __future__ import annotations

import functools
import hashlib
import pathlib

from numba.core.caching import FunctionCache, IndexDataCacheFile, NullCache
from numba.core.dispatcher import Dispatcher

import solvers

__all__ = ["SourcesCache", "key_on_sources", "sources_digest"]


@functools.cache
def sources_digest() -> str:
    """sha256 of the ``*.py`` files of ``solvers`` and ``hybrid_nes.diff`` (once a process)."""
    digest = hashlib.sha256()
    for folder in (pathlib.Path(solvers.__file__).parent, pathlib.Path(__file__).parent):
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class SourcesCache(FunctionCache):
    """``FunctionCache`` whose stamp is the function's file and ``sources_digest``."""

    def __init__(self, py_func):
        super().__init__(py_func)
        stamp = (self._impl.locator.get_source_stamp(), sources_digest())
        self._cache_file = IndexDataCacheFile(cache_path=self._cache_path, filename_base=self._impl.filename_base,
                                              source_stamp=stamp)


def key_on_sources(namespace: dict) -> None:
    """Gives every cached Numba dispatcher defined in ``namespace`` (a module's
    ``globals()``) a ``SourcesCache``; call it at the end of the module, before any call."""
    for obj in list(namespace.values()):
        if (isinstance(obj, Dispatcher) and obj.py_func.__module__ == namespace["__name__"]
                and not isinstance(obj._cache, NullCache)):
            obj._cache = SourcesCache(obj.py_func)
