"""The training data stream, jitted apart from the gradient step (issue 21).

Compiling the (family mixture) sampler into the gradient step made XLA compile it into
every step's compilation; as its own jitted function it compiles once per shape, and the
step compiles only the network. The games of a step are a function of ``(seed, step)``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from hybrid_nes.families import sample_training_batch
from hybrid_nes.sampling import check_shape

__all__ = ["Sampler", "make_sampler", "compile_sampled_steps"]


class Sampler(NamedTuple):
    """``sample(step, shape) -> (games [B, N, A1..AN], sel)``: the games of ``step``.

    ``jitted(data_key, step, shape)`` is compiled once per shape and shared by every seed
    (the key is an argument, not a constant); ``lower(step, shape).compile()`` gives
    ``compiled(step)`` (ahead-of-time, as ``jax.jit``'s).
    """

    jitted: Callable
    data_key: jax.Array

    def __call__(self, step, shape):
        return self.jitted(self.data_key, step, shape)

    def lower(self, step, shape) -> _Lowered:
        return _Lowered(self.jitted.lower(self.data_key, step, shape), self.data_key)


class _Lowered(NamedTuple):
    lowered: Any
    data_key: jax.Array

    def compile(self) -> Callable:
        compiled = self.lowered.compile()
        return lambda step: compiled(self.data_key, step)


def make_sampler(config: Any) -> Sampler:
    """The sampler of ``config`` (a ``train.TrainConfig``: reads ``seed``, ``presets``,
    ``families`` and ``batch_for``). The key of a step is ``fold_in(fold_in(PRNGKey(seed),
    2), step)``, so a resumed run draws what an uninterrupted one draws.
    """
    data_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
    return Sampler(_jitted_sampler(dataclasses.replace(config, seed=0)), data_key)


@functools.lru_cache(maxsize=8)
def _jitted_sampler(config: Any) -> Callable:
    """``sample(data_key, step, shape)`` jitted with ``shape`` static, one per seedless config."""

    def sample(data_key, step, shape):
        key = jax.random.fold_in(data_key, step)
        return sample_training_batch(key, config.batch_for(shape), shape, config.presets, config.families)

    return jax.jit(sample, static_argnums=2)


def compile_sampled_steps(sample: Callable, update: Callable, state: Sequence, shapes: Sequence[Sequence[int]],
                          workers: int | None = None) -> dict[tuple[int, ...], Callable]:
    """Ahead-of-time compiles ``sample`` and ``update`` for every shape, in parallel threads.

    ``update(*state, games, sel, lr)`` is the jitted gradient step and ``state`` its
    ``(params, bn_state, opt_state)``. Returns ``{shape: step}``, each called as
    ``step(params, bn_state, opt_state, step, lr)``.
    """
    from concurrent.futures import ThreadPoolExecutor

    def compile_shape(shape):
        sampler = sample.lower(np.int32(0), shape).compile()
        batch = jax.eval_shape(lambda: sample(np.int32(0), shape))
        return sampler, update.lower(*state, *batch, np.float32(0.0)).compile()

    def chain(sampler, updater):
        return lambda params, bn_state, opt_state, step, lr: updater(params, bn_state, opt_state, *sampler(step), lr)

    shapes = [check_shape(s) for s in shapes]
    with ThreadPoolExecutor(max_workers=workers or min(len(shapes), os.cpu_count() or 1)) as pool:
        compiled = list(pool.map(compile_shape, shapes))
    return {s: chain(*c) for s, c in zip(shapes, compiled, strict=True)}
