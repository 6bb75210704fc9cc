"""Shippable weight files: float32 parameters plus BatchNorm statistics calibrated per shape.

The format ``hybrid_nes.load_pretrained`` / ``NESModel.from_file`` reads
(``hybrid_nes.checkpoint``, ``kind: "weights"``). ``hybrid_nes.train`` writes one at the
end of a run and ``hybrid_nes.train.export_weights`` from a checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import haiku as hk
import jax
import numpy as np

from hybrid_nes import checkpoint as ckpt_lib
from hybrid_nes.calibration import SHIPPED_CALIBRATION, calibrate_statistics
from hybrid_nes.sampling import check_shape

if TYPE_CHECKING:
    from hybrid_nes.train import TrainConfig

__all__ = ["write_weights"]


def write_weights(path: str | os.PathLike, config: TrainConfig, params: hk.Params, history: list, wall: float,
                  shapes: Sequence[Sequence[int]] | None = None, extra_meta: dict | None = None,
                  stats: dict | None = None) -> Path:
    """Writes shippable weights: float32 parameters + calibrated statistics per shape.

    ``stats`` (``{shape: BatchNorm state}``, e.g. frozen ones: ``TrainConfig.freeze_statistics``)
    ships those for the shapes it has instead of calibrating them.
    """
    shapes = [check_shape(s) for s in (shapes or config.shapes)]
    calibration = SHIPPED_CALIBRATION
    given = stats or {}
    stats = {s: given[s] if s in given else calibrate_statistics(config, params, s, calibration) for s in shapes}
    meta = {
        "kind": "weights",
        "config": config.to_dict(),
        "step": (extra_meta or {}).get("step", history[-1]["step"] if history else 0),
        "wall_time_s": wall,
        "history": history,
        "jax_version": jax.__version__,
        **(extra_meta or {}),
        "calibration": {**calibration._asdict(), **({"frozen_from": config.init_from} if given else {})},
    }
    params32 = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)
    stats32 = {s: jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), t) for s, t in stats.items()}
    return ckpt_lib.save(path, ckpt_lib.Checkpoint(meta, params32, {}, stats32, []))
