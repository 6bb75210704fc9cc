"""hybrid_nes.diff's compiled forward (``fast_forward`` kernel inside XLA through ``ffi``)
against the ``pure_callback`` path: the same packed outputs bit for bit (interior games and
guessed faces), the callback where a game needs an LP, ``jit``/``grad``/``vmap``, and the
callback alone where the FFI is unavailable."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_nes import diff
from hybrid_nes.diff import api, fast_forward, ffi, forward
from hybrid_nes.diff.status import Config

INTERIOR = (("cce", (8, 8), 0), ("cce", (8, 8), 1), ("ce", (8, 8), 2), ("ce", (4, 4, 4), 0))
#: 8x8 ME-CEs on a face that face_cert certifies without an LP (48, 56, 49, 36 of 64 joints).
FACE = (("ce", (8, 8), 0), ("ce", (8, 8), 1), ("ce", (8, 8), 7), ("ce", (8, 8), 8))
# On a face of 30 joints that needs the face LP: the callback serves it. (Seed 4, a face of
# 12 joints, needed it with Newton's damping before h-ceit's; now the guess certifies it.)
LP = ("ce", (8, 8), 40)


pytestmark = pytest.mark.usefixtures("x64")


@pytest.fixture
def callbacks(monkeypatch):
    """Counts the games ``forward.forward`` (the callback body) is called on, fresh traces."""
    seen = []
    real = api.forward

    def counting(cfg, dtype, inputs):
        seen.append(int(np.prod(np.shape(inputs)[:-1])))
        return real(cfg, dtype, inputs)

    monkeypatch.setattr(api, "forward", counting)
    jax.clear_caches()
    yield seen
    jax.clear_caches()


def _game(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(shape),) + shape)


def _cfg(concept: str, shape: tuple[int, ...]) -> Config:
    return Config(concept, shape, math.inf, 1e-10, None, 1e-7, 1e-6)


def _inputs(g: np.ndarray) -> np.ndarray:
    num_joint = int(np.prod(g.shape[1:]))
    return np.concatenate([g.reshape(-1), np.full(num_joint, -math.log(num_joint)), np.zeros(g.shape[0]), np.full(g.shape[0], np.inf)])


def _assert_same(a: diff.DiffSolution, b: diff.DiffSolution) -> None:
    np.testing.assert_allclose(np.asarray(a.joint), np.asarray(b.joint), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(a.duals), np.asarray(b.duals), rtol=1e-12, atol=1e-12)
    assert np.array_equal(np.asarray(a.free), np.asarray(b.free))
    assert np.array_equal(np.asarray(a.support), np.asarray(b.support))
    assert np.array_equal(np.asarray(a.status), np.asarray(b.status))


def test_the_ffi_is_available_here():
    assert ffi.available(), "the XLA:CPU typed FFI kernel failed its probe (see the logged reason)"


@pytest.mark.parametrize("concept, shape, seed", INTERIOR + FACE)
def test_kernel_writes_what_the_callback_writes(concept, shape, seed):
    cfg = _cfg(concept, shape)
    x = _inputs(_game(seed, shape))
    fast, ok = fast_forward.forward_np(cfg, x)
    assert ok, "the kernel serves interior games and guessed faces"
    ref = forward.forward(cfg, np.float64, x)
    assert np.array_equal(fast, ref), "bit for bit the callback's packed output"
    num_joint, num, _, _, dense = forward.packed_sizes(cfg)[:5]
    assert dense == 1 and fast[2 * num_joint + 2 * num] == 1.0, "-H_FF^-1 returned for the backward"
    support = fast[num_joint + 2 * num:2 * num_joint + 2 * num]
    assert (support.min() == 0.0) == ((concept, shape, seed) in FACE)


def test_kernel_declines_an_lp_face_game_and_bad_input():
    cfg = _cfg(LP[0], LP[1])
    assert not fast_forward.forward_np(cfg, _inputs(_game(LP[2], LP[1])))[1]
    bad = _inputs(_game(0, (8, 8)))
    bad[3] = np.nan
    assert not fast_forward.forward_np(_cfg("cce", (8, 8)), bad)[1]
    soft = _inputs(_game(FACE[0][2], FACE[0][1]))
    soft[-4:-2] = 1e-9  # eps_hat > 0 on a face: the face LP
    assert not fast_forward.forward_np(cfg, soft)[1]


@pytest.mark.parametrize("concept, shape, seed", INTERIOR[::2])
def test_interior_games_skip_the_callback_and_match_it(concept, shape, seed, callbacks, monkeypatch):
    g = jnp.asarray(_game(seed, shape))
    fast = diff.solve(g, concept)
    assert callbacks == [], "an interior game runs the FFI kernel, not pure_callback"
    monkeypatch.setattr(ffi, "available", lambda: False)
    jax.clear_caches()
    slow = diff.solve(g, concept)
    assert callbacks == [1]
    _assert_same(fast, slow)


@pytest.mark.parametrize("game", FACE[:2])
def test_a_guessed_face_skips_the_callback(game, callbacks, monkeypatch):
    concept, shape, seed = game
    g = jnp.asarray(_game(seed, shape))
    out = diff.solve(g, concept)
    assert callbacks == [], "a face certified without an LP runs in the FFI kernel"
    assert int(out.status) == 0 and not bool(jnp.all(out.support))
    monkeypatch.setattr(ffi, "available", lambda: False)
    jax.clear_caches()
    _assert_same(out, diff.solve(g, concept))
    assert callbacks == [1]


def test_a_face_that_needs_an_lp_takes_the_callback(callbacks, monkeypatch):
    concept, shape, seed = LP
    g = jnp.asarray(_game(seed, shape))
    out = diff.solve(g, concept)
    assert callbacks == [1]
    assert int(out.status) == 0 and not bool(jnp.all(out.support))
    monkeypatch.setattr(ffi, "available", lambda: False)
    jax.clear_caches()
    _assert_same(out, diff.solve(g, concept))


def test_jit_grad_and_vmap_agree_with_the_callback_path(callbacks, monkeypatch):
    shape = (8, 8)
    v = jnp.asarray(np.random.default_rng(7).standard_normal(shape))
    games = jnp.asarray(np.stack([_game(s, shape) for s in (0, 1, 2)]))  # cce: all interior

    def loss(p):
        return jnp.sum(diff.solve(p, "cce").joint * v)

    grads = jax.jit(jax.vmap(jax.grad(loss)))(games)
    single = jax.jit(jax.grad(loss))(games[1])
    assert callbacks == [], "vmap: one FFI call for the batch, the callback branch skipped"
    np.testing.assert_allclose(np.asarray(grads[1]), np.asarray(single), rtol=1e-12, atol=1e-14)
    monkeypatch.setattr(ffi, "available", lambda: False)
    jax.clear_caches()
    want = jax.jit(jax.vmap(jax.grad(loss)))(games)
    assert callbacks == [3]
    np.testing.assert_allclose(np.asarray(grads), np.asarray(want), rtol=1e-12, atol=1e-14)


def test_nested_vmap_is_one_ffi_call(callbacks):
    games = jnp.asarray(np.stack([_game(s, (8, 8)) for s in (0, 1, 3, 4)]).reshape((2, 2, 2, 8, 8)))
    joints = jax.jit(jax.vmap(jax.vmap(lambda p: diff.solve(p, "cce").joint)))(games)
    assert callbacks == [], "vmap of vmap: the batch flattened into one FFI call"
    np.testing.assert_allclose(np.asarray(joints[1, 0]), np.asarray(diff.solve(games[1, 0], "cce").joint),
                               rtol=0, atol=1e-12)


def test_vmap_with_an_lp_game_runs_the_callback_once_for_the_batch(callbacks):
    shape = LP[1]
    games = jnp.asarray(np.stack([_game(s, shape) for s in (2, FACE[0][2], LP[2])]))  # interior, face, LP
    batch = jax.jit(jax.vmap(lambda p: diff.solve(p, "ce")))(games)
    assert callbacks == [1], "the callback on the LP game alone"
    for i in range(3):
        one = jax.tree_util.tree_map(lambda x, i=i: x[i], batch)
        _assert_same(one, diff.solve(games[i], "ce"))


def test_without_the_ffi_the_callback_serves_everything(callbacks, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no FFI here")

    monkeypatch.setattr(ffi, "_register", broken)  # e.g. a jaxlib without the typed FFI
    assert ffi.available.__wrapped__() is False, "a failing registration reports the FFI unavailable"
    monkeypatch.setattr(ffi, "available", ffi.available.__wrapped__)
    g = jnp.asarray(_game(0, (8, 8)))
    out = diff.solve(g, "cce")
    assert callbacks == [1] and int(out.status) == 0


def test_other_ffi_headers_refuse_the_handler(monkeypatch):
    # The handler reads XLA's structs by offset: another FFI API version must not register it.
    assert ffi._header_version() == (ffi._API_MAJOR, ffi._API_MINOR)
    monkeypatch.setattr(ffi, "_header_version", lambda: (ffi._API_MAJOR, ffi._API_MINOR + 1))
    with pytest.raises(RuntimeError, match="XLA FFI API"):
        ffi._register.__wrapped__()


def test_float32_takes_the_kernel_and_matches_float64(callbacks):
    g = _game(0, (8, 8))
    want = diff.solve(jnp.asarray(g), "cce")
    jax.config.update("jax_enable_x64", False)
    try:
        out = diff.solve(jnp.asarray(g, dtype=jnp.float32), "cce")
        assert out.joint.dtype == jnp.float32
    finally:
        jax.config.update("jax_enable_x64", True)
    assert callbacks == [], "float32 inputs run the kernel too (converted to float64 inside)"
    np.testing.assert_allclose(np.asarray(out.joint, np.float64), np.asarray(want.joint), rtol=1e-5, atol=1e-7)


def test_cached_kernels_are_keyed_on_every_source(monkeypatch):
    from hybrid_nes.diff import numba_cache

    kernel = forward._eta_kernel
    kernel(np.ones((2, 3)), 1e-6)  # compiled (or loaded) and saved under the current sources
    sig, ctx = kernel.signatures[0], kernel.targetctx
    assert isinstance(kernel._cache, numba_cache.SourcesCache)
    assert isinstance(fast_forward.forward_batch._cache, numba_cache.SourcesCache)
    assert numba_cache.SourcesCache(kernel.py_func).load_overload(sig, ctx) is not None
    monkeypatch.setattr(numba_cache, "sources_digest", lambda: "an edit of a kernel it calls")
    assert numba_cache.SourcesCache(kernel.py_func).load_overload(sig, ctx) is None, "stale machine code reused"
