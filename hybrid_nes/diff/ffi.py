"""The compiled forward kernel (``fast_forward``) as an XLA:CPU typed-FFI custom call.

``jax.pure_callback`` costs ~0.2 ms a call (``benchmarks/results/diff_suite.md``), about
four 8x8 CCE solves. A Numba ``@cfunc`` registered as a typed XLA FFI handler
(``jax.ffi.register_ffi_target(..., api_version=1)``) runs inside XLA's executable with a
few microseconds of overhead. The handler parses the C structs of
``jax.ffi.include_dir()/xla/ffi/api/c_api.h`` itself (64-bit: pointers and ``size_t`` are
8 bytes):

- ``XLA_FFI_CallFrame``: ``extension_start`` (word 1), ``stage`` (word 4, int32), ``args``
  (words 5-9: size at 7, ``void**`` at 9), ``rets`` (words 10-14: size at 12, ``void**`` at 14).
- ``XLA_FFI_Buffer``: ``dtype`` (word 2, int32), ``data`` (word 3), ``rank``, ``dims``.
- XLA first calls a handler with a ``XLA_FFI_Metadata_Extension`` in ``extension_start``
  (type 1): the handler writes the FFI API version of the headers it follows
  (``XLA_FFI_API_MAJOR/MINOR``) and no traits, and returns NULL (no error).

The call takes the float inputs ``[B, n]`` (float64 or float32, as ``jax_enable_x64``) and
the kernel's ``plan_bytes`` (a uint8 constant), and returns ``packed [B, P]`` (same float
type; float32 is converted to float64 for the kernel and back, as the callback does) and
``ok [B]`` (int32: the kernel serves the game: interior, or a face certified without an
LP). A call it does not recognise (argument count, dtypes, sizes) leaves ``ok`` 0, so the
callback serves it. ``available()`` compiles, registers and probes the whole bridge once,
on the first trace of ``diff.solve`` (not at import: from an empty cache the Numba compile
took ~65 s CPU on the loaded machine, ~0.4 s from Numba's on-disk cache), against the
NumPy kernel; on any failure the caller keeps to ``pure_callback``. The handler's cache,
like that of every cached kernel of ``hybrid_nes.diff``, is keyed on the sources of
``solvers`` and ``hybrid_nes.diff`` (``numba_cache``): editing a kernel it calls
recompiles it.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numba import carray, njit, types
from numba.core import cgutils, sigutils
from numba.core.ccallback import CFunc
from numba.extending import intrinsic

from hybrid_nes.diff import fast_forward as ff
from hybrid_nes.diff.numba_cache import SourcesCache

__all__ = ["TARGET", "available", "call"]

TARGET = "hybrid_nes_diff_forward"
#: ``XLA_FFI_API_MAJOR`` / ``XLA_FFI_API_MINOR`` of the headers this handler follows.
_API_MAJOR, _API_MINOR = 0, 3
_STAGE_EXECUTE = 3
_EXTENSION_METADATA = 1
_F32, _F64, _U8, _S32 = 11, 12, 6, 4  # XLA_FFI_DataType (XLA's PrimitiveType numbers)

_log = logging.getLogger(__name__)


@intrinsic
def _as_pointer(typingctx, address):
    """``(void*) address`` for an int64 address."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(address), codegen


@intrinsic
def _null(typingctx):
    def codegen(context, builder, signature, args):
        return cgutils.voidptr_t(None)
    return types.voidptr(), codegen


@njit
def _words(address, n):
    return carray(_as_pointer(address), (n,), dtype=np.int64)


def _handler(frame_ptr):  # pragma: no cover - compiled (_compiled); runs inside XLA
    frame = carray(frame_ptr, (15,), dtype=np.int64)
    if frame[0] < 120:  # struct_size: a call frame shorter than the words read here
        return _null()
    ext = frame[1]
    if ext != 0:
        base = _words(ext, 4)
        if carray(_as_pointer(ext), (4,), dtype=np.int32)[2] == _EXTENSION_METADATA:
            meta = base[3]
            # XLA_FFI_Metadata: struct_size, XLA_FFI_Api_Version (struct_size,
            # extension_start, int major, int minor), uint32 traits.
            mw = _words(meta, 5)
            mw[1] = 28
            mw[2] = 0
            mi = carray(_as_pointer(meta), (10,), dtype=np.int32)
            mi[6] = _API_MAJOR
            mi[7] = _API_MINOR
            mi[8] = 0
            return _null()
    if carray(frame_ptr, (10,), dtype=np.int32)[8] != _STAGE_EXECUTE:
        return _null()
    if frame[7] != 2 or frame[12] != 2:
        return _null()
    args = _words(frame[9], 2)
    rets = _words(frame[14], 2)
    x_buf, plan_buf = _words(args[0], 6), _words(args[1], 6)
    out_buf, ok_buf = _words(rets[0], 6), _words(rets[1], 6)
    x_dtype = carray(_as_pointer(args[0]), (6,), dtype=np.int32)[4]
    out_dtype = carray(_as_pointer(rets[0]), (6,), dtype=np.int32)[4]
    if x_dtype != out_dtype or x_buf[4] != 2 or out_buf[4] != 2:
        return _null()
    x_dims, out_dims = _words(x_buf[5], 2), _words(out_buf[5], 2)
    num_games, n_in, n_out = x_dims[0], x_dims[1], out_dims[1]
    plan_len = _words(plan_buf[5], 1)[0]
    words = carray(_as_pointer(plan_buf[3]), (plan_len // 8,), dtype=np.int64)
    if words[6] != n_in or words[7] != n_out or out_dims[0] != num_games or ok_buf[4] != 1:
        return _null()
    ok = carray(_as_pointer(ok_buf[3]), (num_games,), dtype=np.int32)
    ok[:] = 0
    if x_dtype == _F64:
        x = carray(_as_pointer(x_buf[3]), (num_games, n_in), dtype=np.float64)
        out = carray(_as_pointer(out_buf[3]), (num_games, n_out), dtype=np.float64)
        ff.forward_batch(words, x, out, ok)
    elif x_dtype == _F32:
        x32 = carray(_as_pointer(x_buf[3]), (num_games, n_in), dtype=np.float32)
        out32 = carray(_as_pointer(out_buf[3]), (num_games, n_out), dtype=np.float32)
        out = np.zeros((num_games, n_out))
        ff.forward_batch(words, x32.astype(np.float64), out, ok)
        for b in range(num_games):
            for i in range(n_out):
                out32[b, i] = np.float32(out[b, i])
    return _null()


class _CachedHandler(CFunc):
    """The handler's C function with its on-disk cache keyed on the sources it compiles in."""

    def enable_caching(self):
        self._cache = SourcesCache(self._pyfunc)


@functools.cache
def _compiled() -> CFunc:
    """The handler compiled as a C function (on first use; ``numba_cache.SourcesCache``)."""
    handler = _CachedHandler(_handler, sigutils.normalize_signature(types.voidptr(types.voidptr)), {}, {})
    handler.enable_caching()
    handler.compile()
    return handler


def _ffi_call(cfg, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(packed [B, P], ok int32 [B])`` of ``x [B, n]`` by the FFI kernel."""
    shapes = (jax.ShapeDtypeStruct((x.shape[0], ff.packed_size(cfg)), x.dtype),
              jax.ShapeDtypeStruct((x.shape[0],), jnp.int32))
    return jax.ffi.ffi_call(TARGET, shapes)(x, jnp.asarray(ff.plan_bytes(cfg)))


@functools.lru_cache(maxsize=64)
def _batched(cfg):
    """``x [B, n] -> (packed [B, P], ok [B], all_ok [])`` whose ``jax.vmap`` is one call on
    the flattened batch with ``all_ok`` unbatched (the kernel serves every game), so a
    ``lax.cond`` on it stays a cond (the callback is skipped) under ``vmap``."""

    @jax.custom_batching.custom_vmap
    def served(x):
        packed, ok = _ffi_call(cfg, x)
        return packed, ok, jnp.all(ok != 0)

    @served.def_vmap
    def _rule(axis_size, in_batched, x):
        if not in_batched[0]:
            return served(x), (False, False, False)
        packed, ok, all_ok = served(x.reshape((-1, x.shape[-1])))
        lead = (axis_size,) + x.shape[1:-1]
        return (packed.reshape(lead + packed.shape[-1:]), ok.reshape(lead), all_ok), (True, True, False)

    return served


def call(cfg, inputs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(packed [P], ok bool [], all_ok bool [])`` of one game's ``inputs [n]``
    (``forward.forward``'s layout) by the compiled kernel: ``ok`` where it serves the game
    (``packed`` is unspecified where it is not). Under ``jax.vmap``: one FFI call for the
    whole batch, ``ok`` per game and ``all_ok`` unbatched, for all its games."""
    _register()
    packed, ok, all_ok = _batched(cfg)(inputs[None])
    return packed[0], ok[0] != 0, all_ok


def _header_version() -> tuple[int, int]:
    """``(XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR)`` of the installed jaxlib's FFI headers."""
    text = (Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h").read_text()
    found = dict(re.findall(r"#define XLA_FFI_API_(MAJOR|MINOR) (\d+)", text))
    return int(found["MAJOR"]), int(found["MINOR"])


@functools.cache
def _register() -> None:
    # The handler reads XLA's structs by offset: only where the headers are the ones it follows.
    if (version := _header_version()) != (_API_MAJOR, _API_MINOR):
        raise RuntimeError(f"jaxlib's XLA FFI API is {version}, the handler follows {(_API_MAJOR, _API_MINOR)}")
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(_compiled().ctypes), platform="cpu", api_version=1)


@functools.cache
def available() -> bool:
    """Whether the FFI kernel is registered and reproduces ``fast_forward.forward_np``
    on a probe game (checked once; False, with the reason logged, on any failure)."""
    try:
        _register()
        from hybrid_nes.diff.status import Config

        cfg = Config("cce", (2, 2), float("inf"), 1e-10, None, 1e-7, 1e-6)
        game = np.array([[2.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0]])  # battle of the sexes: interior
        inputs = np.concatenate([game.reshape(-1), np.full(4, -np.log(4.0)), np.zeros(4)])
        dtype = jnp.asarray(0.0).dtype
        with jax.ensure_compile_time_eval():  # called while tracing diff.solve: run it now
            packed, ok, _ = jax.jit(functools.partial(call, cfg))(np.asarray(inputs, dtype))
        want, want_ok = ff.forward_np(cfg, inputs)
        if not (bool(ok) and want_ok) or not np.allclose(np.asarray(packed, np.float64), want, rtol=1e-5, atol=1e-6):
            raise RuntimeError(f"probe mismatch: ok {bool(ok)} vs {want_ok}")
    except Exception as exc:  # noqa: BLE001 - any failure: keep to pure_callback
        _log.warning("hybrid_nes.diff: XLA FFI forward unavailable (%s: %s); using pure_callback",
                     type(exc).__name__, exc)
        return False
    return True
