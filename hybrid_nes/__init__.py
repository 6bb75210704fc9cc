"""hybrid_nes: neural equilibrium solver (JAX / Haiku) + exact dual refinement + polish."""

from hybrid_nes.checkpoint import CheckpointError
from hybrid_nes.model import (
    NESModel,
    duals_to_normalised_units,
    duals_to_payoff_units,
    load_pretrained,
)
from hybrid_nes.network import NetworkConfig
from hybrid_nes.sampling import SelectionInputs
from hybrid_nes.train import TrainConfig

__all__ = [
    "CheckpointError",
    "NESModel",
    "NetworkConfig",
    "SelectionInputs",
    "TrainConfig",
    "duals_to_normalised_units",
    "duals_to_payoff_units",
    "load_pretrained",
]
