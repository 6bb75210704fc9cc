"""The Neural Equilibrium Solver network (paper sec. 4.4, Fig. 2, app. D.1).

    games [B, N, A1..AN] + SelectionInputs
      -> input features [B, N, A1..AN, F]
      -> payoff layers (32, 32, 32, 32), BatchNorm + ReLU after each
      -> payoffs-to-duals (64), BatchNorm + ReLU
      -> dual layers (32, 32), BatchNorm + ReLU
      -> dual layer (1 channel) + softplus: duals >= 0

Parameters do not depend on the game's shape or player count. BatchNorm statistics do
(they are per-shape state, see ``hybrid_nes.layers.BatchNorm``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp

from hybrid_nes.layers import BatchNorm, CCEDualLayer, CEDualLayer, PayoffLayer, PayoffToDuals
from hybrid_nes.loss import Duals, mask_diagonal
from hybrid_nes.sampling import SelectionInputs
from solvers.gains import check_concept

__all__ = [
    "NUM_FEATURES",
    "NetworkConfig",
    "input_features",
    "make_network",
    "make_activations",
    "count_parameters",
]

#: Input channels per (player, joint action) cell, see ``input_features``.
NUM_FEATURES = 8


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of the NES (defaults: the paper's [(32, 32, 32, 32), 64, (32, 32)]).

    Attributes:
      concept: "cce" or "ce": which duals the network predicts.
      payoff_channels: channels of the payoff layers.
      dual_channels: channels of the payoffs-to-duals layer.
      dual_layers: channels of the dual-to-dual layers.
      init_duals: the duals the untrained network predicts (softplus of the output bias);
        ~0.1 starts closer to typical optima than softplus(0) = 0.69.
      ce_pairwise: add the pairwise correlation term to the CE head (``PayoffToDuals``).
      bn_eps: BatchNorm epsilon.
    """

    concept: str = "cce"
    payoff_channels: tuple[int, ...] = (32, 32, 32, 32)
    dual_channels: int = 64
    dual_layers: tuple[int, ...] = (32, 32)
    init_duals: float = 0.1
    ce_pairwise: bool = True
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "concept", check_concept(self.concept))
        object.__setattr__(self, "payoff_channels", tuple(int(c) for c in self.payoff_channels))
        object.__setattr__(self, "dual_layers", tuple(int(c) for c in self.dual_layers))
        if any(c < 1 for c in (*self.payoff_channels, self.dual_channels, *self.dual_layers)):
            raise ValueError(f"channel counts must be >= 1, got {self}")
        if not self.init_duals > 0:
            raise ValueError(f"init_duals must be > 0, got {self.init_duals}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown network config keys {sorted(unknown)}")
        return cls(**data)


def input_features(payoffs: jax.Array, sel: SelectionInputs) -> jax.Array:
    """Per-cell input features ``[B, N, A1..AN, NUM_FEATURES]`` (float32).

    All are O(1) for the training distribution (DESIGN §5 normalisation):

    0. normalised payoff ``G_p(a)``;
    1. target joint ``Z_sigma (sigma_hat(a) - 1/|A|)`` with ``sigma_hat = softmax(b)``;
    2. centred base logits ``(b(a) - mean b) / 4``, clipped (log-target + welfare);
    3. ``eps_hat_p / Z2``;  4. ``exp(-eps_plus_p / Z2)`` (0 for hard constraints);
    5. ``1 / (1 + rho)`` (0 for hard constraints);
    6. ``ln A_p / 3``;  7. ``ln |A| / 5`` (game size: parameters are size-free).
    """
    b, n = payoffs.shape[:2]
    joint_shape = payoffs.shape[2:]
    num_joint = math.prod(joint_shape)
    z2 = math.sqrt(num_joint)
    z_sigma = num_joint * math.sqrt((num_joint + 1) / max(num_joint - 1, 1))
    dtype = jnp.float32
    payoffs = payoffs.astype(dtype)
    base = sel.base_logits.astype(dtype).reshape(b, num_joint)
    target = jax.nn.softmax(base, axis=-1)
    f_target = jnp.clip(z_sigma * (target - 1.0 / num_joint), -10.0, 10.0)
    f_logit = jnp.clip((base - base.mean(axis=-1, keepdims=True)) / 4.0, -5.0, 5.0)
    per_cell = jnp.stack([f_target, f_logit], axis=-1).reshape(b, 1, *joint_shape, 2)
    per_cell = jnp.broadcast_to(per_cell, (b, n, *joint_shape, 2))
    eps_hat = sel.eps_hat.astype(dtype) / z2
    eps_plus = jnp.exp(-jnp.clip(sel.eps_plus.astype(dtype) / z2, -2.0, 50.0))
    rho = 1.0 / (1.0 + sel.rho.astype(dtype))
    rho = jnp.broadcast_to(rho[:, None], (b, n))
    size_p = jnp.broadcast_to(jnp.log(jnp.asarray(joint_shape, dtype)) / 3.0, (b, n))
    size = jnp.full((b, n), math.log(num_joint) / 5.0, dtype)
    per_player = jnp.stack([eps_hat, eps_plus, rho, size_p, size], axis=-1)  # [B, N, 5]
    per_player = per_player.reshape(b, n, *([1] * len(joint_shape)), 5)
    per_player = jnp.broadcast_to(per_player, (b, n, *joint_shape, 5))
    return jnp.concatenate([payoffs[..., None], per_cell, per_player], axis=-1)


def _forward(
    config: NetworkConfig,
    payoffs: jax.Array,
    sel: SelectionInputs,
    is_training: bool,
    collect: dict | None = None,
) -> Duals:
    x = input_features(payoffs, sel)
    for i, channels in enumerate(config.payoff_channels):
        x = PayoffLayer(channels, name=f"payoff_{i}")(x)
        (x,) = BatchNorm(config.bn_eps, name=f"payoff_bn_{i}")([x], is_training)
        x = jax.nn.relu(x)
        if collect is not None:
            collect[f"payoff_{i}"] = (x,)
    d = PayoffToDuals(config.dual_channels, config.concept, config.ce_pairwise, name="to_duals")(x)
    d = BatchNorm(config.bn_eps, name="to_duals_bn")(d, is_training)
    d = tuple(jax.nn.relu(a) for a in d)
    if collect is not None:
        collect["to_duals"] = d
    layer = CCEDualLayer if config.concept == "cce" else CEDualLayer
    for i, channels in enumerate(config.dual_layers):
        d = layer(channels, name=f"dual_{i}")(d)
        d = BatchNorm(config.bn_eps, name=f"dual_bn_{i}")(d, is_training)
        d = tuple(jax.nn.relu(a) for a in d)
        if collect is not None:
            collect[f"dual_{i}"] = d
    # Small output weights and bias softplus^-1(init_duals): the untrained network
    # predicts ~init_duals everywhere instead of softplus(0) = 0.69.
    out_bias = math.log(math.expm1(config.init_duals))
    d = layer(1, out_scale=0.1, out_bias=out_bias, name="output")(d)
    duals = tuple(jax.nn.softplus(a[..., 0]) for a in d)
    if config.concept == "ce":
        duals = tuple(mask_diagonal(a) for a in duals)
    return duals


def make_network(config: NetworkConfig) -> hk.TransformedWithState:
    """The network as ``(init, apply)`` with state (BatchNorm statistics).

    ``apply(params, state, None, payoffs [B, N, A1..AN], sel, is_training)`` returns
    ``(duals, new_state)``; ``duals`` is a tuple of N arrays ``[B, A_p]`` (CCE) or
    ``[B, A_p, A_p]`` (CE, zero diagonal), normalised units.
    """

    def forward(payoffs, sel, is_training):
        return _forward(config, payoffs, sel, is_training)

    return hk.transform_with_state(forward)


def make_activations(config: NetworkConfig) -> hk.TransformedWithState:
    """Like ``make_network`` but ``apply`` returns ``{layer: tuple of post-ReLU activations}``
    (channels last), for diagnosing dead units."""

    def forward(payoffs, sel, is_training):
        collect: dict = {}
        _forward(config, payoffs, sel, is_training, collect)
        return collect

    return hk.transform_with_state(forward)


def count_parameters(params: hk.Params) -> int:
    """The number of scalar parameters."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
