"""hybrid_nes: neural equilibrium solver (JAX / Haiku) + exact dual refinement + polish.

Layout (the exact solvers are the separate ``solvers`` package, which needs no JAX):

- the hybrid pipeline: ``pipeline`` (``solve_exact``, ``solve_batch``, warm starts) and
  ``auto_policy`` (the measured table behind ``warm_start="auto"``);
- the network: ``network`` and ``layers`` (Haiku, for training), ``inference`` (the
  folded fast path), ``model`` (``NESModel``, ``load_pretrained``), ``loss`` (the dual
  loss in JAX), ``sampling`` (training games and selection inputs);
- training: ``train`` (config, step, time budget, the loop, checkpoints),
  ``calibration`` (BatchNorm statistics), ``validation`` and ``evaluation`` (exact
  reference optima and metrics), ``weights`` (shippable weight files), ``checkpoint``
  (the ``.npz`` format);
- ``diff``: exact gradients of equilibria; ``distributed`` and ``shards``: solving on a
  Dask cluster; ``integrations.openspiel``: JPSRO / PSRO meta-solvers;
- the ``hybrid-nes`` command: ``cli`` (with ``cli_rate``, ``cli_cluster``, ``demo``,
  ``_sigint``).

Names load on first access (PEP 562), so that ``hybrid_nes.integrations.openspiel``
and the cold path need not import JAX.
"""

import importlib

__all__ = [
    "CheckpointError",
    "NESModel",
    "NetworkConfig",
    "SelectionInputs",
    "TrainConfig",
    "WarmStartOptions",
    "duals_to_normalised_units",
    "duals_to_payoff_units",
    "load_pretrained",
    "solve_batch",
    "solve_exact",
]

_LAZY = {
    "CheckpointError": "hybrid_nes.checkpoint",
    "NESModel": "hybrid_nes.model",
    "duals_to_normalised_units": "hybrid_nes.model",
    "duals_to_payoff_units": "hybrid_nes.model",
    "load_pretrained": "hybrid_nes.model",
    "NetworkConfig": "hybrid_nes.network",
    "SelectionInputs": "hybrid_nes.sampling",
    "TrainConfig": "hybrid_nes.train",
    "WarmStartOptions": "hybrid_nes.pipeline",
    "solve_batch": "hybrid_nes.pipeline",
    "solve_exact": "hybrid_nes.pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hybrid_nes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
