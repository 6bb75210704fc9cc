"""C-level SIGINT handlers for the CLI: one line on stderr, then ``_exit(130)``.

Python runs its signal handlers between bytecodes of the main thread, so a Ctrl-C during
a compiled kernel (numba kernels hold the GIL; a 64x64 MS-CE's refine took > 60 s) waits
for the kernel to return. These handlers are compiled C functions (numba ``cfunc``,
cached): they run at once, write their line with ``write(2)`` and end the process with
``_exit(130)``, both async-signal-safe; nothing is allocated and no lock is taken. Code
after the kernel, ``finally`` blocks included, does not run: an atomic write in progress
leaves its temporary, which the next write to that file removes (solvers/atomic.py).
Linux and macOS only; ``hybrid_nes.cli`` falls back to a Python-level handler elsewhere.
"""

from __future__ import annotations

import ctypes
import signal

import numba
from numba import types
from numba.extending import intrinsic

__all__ = ["install"]

_exit = types.ExternalFunction("_exit", types.void(types.int32))
_write = types.ExternalFunction("write", types.intp(types.int32, types.voidptr, types.uintp))


@intrinsic
def _cstr(typingctx, text):
    """A pointer to a constant copy of the string literal ``text`` (ASCII)."""
    if not isinstance(text, types.StringLiteral):
        return None
    value = text.literal_value

    def codegen(context, builder, signature, args):
        return context.insert_const_string(builder.module, value)

    return types.voidptr(text), codegen


_SOLVE = "hybrid-nes solve: interrupted\n"
_SOLVE_BATCH = "hybrid-nes solve-batch: interrupted\n"
_SOLVE_LEN = len(_SOLVE)
_SOLVE_BATCH_LEN = len(_SOLVE_BATCH)


@numba.cfunc(types.void(types.int32), cache=True)
def _on_sigint_solve(signum):
    _write(2, _cstr("hybrid-nes solve: interrupted\n"), _SOLVE_LEN)
    _exit(130)


@numba.cfunc(types.void(types.int32), cache=True)
def _on_sigint_solve_batch(signum):
    _write(2, _cstr("hybrid-nes solve-batch: interrupted\n"), _SOLVE_BATCH_LEN)
    _exit(130)


@numba.cfunc(types.void(types.int32), cache=True)
def _on_sigint_solve_batch_bar(signum):  # off the progress bar's line first
    _write(2, _cstr("\nhybrid-nes solve-batch: interrupted\n"), _SOLVE_BATCH_LEN + 1)
    _exit(130)


_HANDLERS = {"solve": _on_sigint_solve, "solve-batch": _on_sigint_solve_batch}


def install(command: str, newline: bool = False) -> None:
    """Makes SIGINT print ``hybrid-nes <command>: interrupted`` and exit with 130, at once.

    ``newline``: start on a new line (``solve-batch`` with its progress bar on stderr).
    Undo with ``signal.signal(signal.SIGINT, previous)``, which reinstalls Python's handler.
    """
    handler = _on_sigint_solve_batch_bar if newline and command == "solve-batch" else _HANDLERS[command]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal.restype = ctypes.c_void_p
    if libc.signal(int(signal.SIGINT), handler.address) == ctypes.c_void_p(-1).value:  # SIG_ERR
        raise OSError(ctypes.get_errno(), "signal(SIGINT) failed")
