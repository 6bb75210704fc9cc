"""Validation of a network during training: fixed games per shape and their exact optima.

``validation_set`` draws games of the training distribution from keys disjoint from the
training steps' and solves them exactly (``hybrid_nes.evaluation.reference_optima``);
``evaluate`` scores the network on them (the metrics of ``hybrid_nes.evaluation``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from hybrid_nes.calibration import zero_statistics
from hybrid_nes.evaluation import Reference, reference_optima, score_duals
from hybrid_nes.network import NetworkConfig, make_network
from hybrid_nes.sampling import SelectionInputs, check_shape, sample_batch

if TYPE_CHECKING:
    from hybrid_nes.train import TrainConfig

__all__ = ["ValidationSet", "validation_set", "evaluate"]


@functools.lru_cache(maxsize=8)
def _jitted_apply(network: NetworkConfig) -> Callable:
    """``net.apply`` jitted with ``is_training`` static (eager Haiku is slow on CPU)."""
    return jax.jit(make_network(network).apply, static_argnums=5)


class ValidationSet(NamedTuple):
    """Fixed validation games of one shape and their exact optima."""

    games: jax.Array
    sel: SelectionInputs
    ref: Reference


def validation_set(config: TrainConfig, shape: Sequence[int], games: int | None = None) -> ValidationSet:
    """Fixed validation games (seeded by ``config.seed``, disjoint from training keys)."""
    shape = check_shape(shape)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
    g, sel = sample_batch(key, games or config.eval_games, shape, config.presets, dtype=jnp.float32)
    ref = reference_optima(np.asarray(g, np.float64), sel, config.concept)
    return ValidationSet(g, sel, ref)


def evaluate(config: TrainConfig, params: hk.Params, bn_state: hk.State | None, val: ValidationSet) -> dict[str, float]:
    """Mean metrics of the network on a validation set.

    ``bn_state=None`` normalises with the validation batch's own statistics; otherwise
    the given (calibrated) statistics are used, as at inference.
    """
    apply = _jitted_apply(config.network)
    if bn_state is None:
        duals, _ = apply(params, zero_statistics(config, val.games.shape[2:]), None, val.games, val.sel, True)
    else:
        duals, _ = apply(params, bn_state, None, val.games, val.sel, False)
    scores = score_duals(val.games, val.sel, duals, config.concept, val.ref)
    return {
        "gap": float(scores.gap.mean()),
        "solver_gap": float(scores.solver_gap.mean()),
        "suboptimality": float(scores.suboptimality.mean()),
        "loss": float(scores.loss.mean()),
    }
