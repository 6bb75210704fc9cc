"""BatchNorm calibration: population statistics of a trained network, per game shape.

The network normalises with batch statistics while it trains. Inference on one game
(``is_training=False``) needs fixed statistics instead: ``calibrate_statistics`` runs fresh
batches of the training distribution through the network in training mode and pools the
batch means and variances (``pool_statistics``). ``SHIPPED_CALIBRATION`` is behind the
statistics of the shipped weight files (``hybrid_nes.weights``); ``FIRST_USE_CALIBRATION``
is what ``NESModel.statistics`` runs for a shape the file does not ship.

``config`` below is a ``hybrid_nes.train.TrainConfig``: only its ``network`` and
``presets`` (the training distribution) are read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from hybrid_nes.families import sample_training_batch
from hybrid_nes.network import make_network
from hybrid_nes.sampling import check_shape, sample_batch

if TYPE_CHECKING:
    from hybrid_nes.train import TrainConfig

__all__ = [
    "Calibration",
    "SHIPPED_CALIBRATION",
    "FIRST_USE_CALIBRATION",
    "calibration_plan",
    "pool_statistics",
    "calibrate_statistics",
    "zero_statistics",
]


class Calibration(NamedTuple):
    """How many fresh games estimate a shape's BatchNorm statistics (``calibrate_statistics``).

    Attributes:
      games: games in all, at most (the training distribution, mixed presets).
      max_cells: joint actions in all, at most (caps the work on large shapes).
      seed: PRNG seed of the calibration games.
    """

    games: int
    max_cells: int
    seed: int = 12345


#: Behind the shipped statistics (``hybrid_nes.weights.write_weights``). Predictions are
#: sensitive to the estimate; the games behind this choice are measured in
#: ``benchmarks/results/hybrid_nes_constants.md`` (BatchNorm calibration).
SHIPPED_CALIBRATION = Calibration(games=32768, max_cells=1 << 25)
#: For a shape calibrated on first use (``NESModel.statistics``), where latency matters.
FIRST_USE_CALIBRATION = Calibration(games=4096, max_cells=1 << 22)
#: Games per calibration batch: at most 512, at least 64 (a batch needs a mix of presets),
#: else ``2**18 // joint actions`` (bounds the memory of one batch).
_CALIBRATION_BATCH = (64, 512, 1 << 18)


def calibration_plan(shape: Sequence[int], calibration: Calibration = SHIPPED_CALIBRATION) -> tuple[int, int]:
    """``(batches, games per batch)`` that calibrate ``shape``'s statistics."""
    cells = math.prod(check_shape(shape))
    low, high, batch_cells = _CALIBRATION_BATCH
    per_batch = min(high, max(low, batch_cells // cells))
    total = min(calibration.games, max(per_batch, calibration.max_cells // cells))
    return max(1, total // per_batch), per_batch


def pool_statistics(states: Sequence[hk.State]) -> hk.State:
    """Population BatchNorm statistics from per-batch ones (equal batches): the mean of the
    means, and the law of total variance (mean of the variances + variance of the means)."""
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x, np.float64) for x in xs]), *states)
    pooled = {}
    for module, entry in stacked.items():
        mean = entry["mean"].mean(0)
        var = entry["var"].mean(0) + entry["mean"].var(0)
        pooled[module] = {**{k: v.mean(0) for k, v in entry.items()}, "mean": mean, "var": var}
    return jax.tree_util.tree_map(lambda x: x.astype(np.float32), pooled)


def calibrate_statistics(
    config: TrainConfig,
    params: hk.Params,
    shape: Sequence[int],
    calibration: Calibration = SHIPPED_CALIBRATION,
    progress: bool | None = False,
) -> hk.State:
    """Population BatchNorm statistics for one game shape.

    Runs fresh batches of the training distribution (``calibration_plan``) in training mode
    and pools each layer's batch means and variances (``pool_statistics``). With these,
    inference (``is_training=False``) on a single game scores like batch-statistics
    inference on a large batch. ``progress``: a tqdm bar (None: only on a terminal).
    """
    shape = check_shape(shape)
    batches, batch_size = calibration_plan(shape, calibration)
    net = make_network(config.network)

    @jax.jit
    def stats(key):
        games, sel = sample_training_batch(key, batch_size, shape, config.presets, config.families)
        _, state = net.apply(params, zero_statistics(config, shape), None, games, sel, True)
        return state

    from tqdm import trange

    key = jax.random.PRNGKey(calibration.seed)
    label = f"calibrating BatchNorm statistics for {'x'.join(map(str, shape))}"
    disable = None if progress is None else not progress  # tqdm's None: a bar on a terminal only
    states = [stats(jax.random.fold_in(key, i)) for i in trange(batches, desc=label, leave=False, disable=disable)]
    return pool_statistics(states)


def zero_statistics(config: TrainConfig, shape: tuple[int, ...]) -> hk.State:
    """Zeros in the structure of the network's BatchNorm state for ``shape`` (training mode
    only writes the state, so this is what a batch-statistics forward pass is given)."""
    net = make_network(config.network)
    games, sel = sample_batch(jax.random.PRNGKey(0), 2, shape, config.presets)
    _, state = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), games, sel, True))
    return jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), state)

