"""Training data: games on the L2-invariant sphere and selection parameters per preset.

Everything is generated on the fly from a ``jax.random`` key, inside jit, so a training
step never waits for the host (DESIGN §5, paper sec. 4.1 and Table 3).

Selection parameters travel as ``SelectionInputs``, a batched, JAX-friendly version of
``solvers.selection.SelectionParams`` in normalised units:

    base_logits: [B, A1..AN]  ln target + mu W
    eps_hat:     [B, N]
    eps_plus:    [B, N]       inf for hard constraints
    rho:         [B]          inf for hard constraints
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "TRAIN_PRESETS",
    "SelectionInputs",
    "sample_games",
    "sample_selection",
    "sample_batch",
    "selection_inputs",
    "check_shape",
]

#: Presets the sampler knows (paper Table 3). "me"/"mre" are the library's defaults
#: (hard constraints, eps_hat = 0); the "eps_" variants draw eps_hat ~ U(-Z2, Z2) with
#: soft constraints (eps_plus = 2 Z2, rho = SOFT_RHO); "ms" is maximum strength.
TRAIN_PRESETS: tuple[str, ...] = ("me", "mre", "mw", "eps_me", "eps_mre", "ms")

#: Welfare weight of the sampled "mw" games (normalised units), as solvers' MW default.
MW_WEIGHT = 10.0
#: Approximation weight of the sampled soft-constraint presets ("rho >> 1" in Table 3).
SOFT_RHO = 10.0


class SelectionInputs(NamedTuple):
    """A batch of selection problems in normalised units (see module docstring)."""

    base_logits: jax.Array
    eps_hat: jax.Array
    eps_plus: jax.Array
    rho: jax.Array


def check_shape(shape: Sequence[int], name: str = "shape") -> tuple[int, ...]:
    """Validates a game shape ``(A1..AN)``: N >= 2 players, every A_p >= 1."""
    try:
        out = tuple(int(n) for n in shape)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a sequence of action counts, got {shape!r}") from err
    if len(out) < 2:
        raise ValueError(f"{name} must have N >= 2 players, got {shape!r}")
    if any(n < 1 for n in out):
        raise ValueError(f"{name}: every player needs at least one action, got {shape!r}")
    return out


def sample_games(key: jax.Array, batch: int, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Games ``[B, N, A1..AN]`` uniform on the L2-invariant sphere (DESIGN §5).

    Each player's payoffs have mean 0 and L2 norm ``sqrt(|A|)`` (unit element variance).
    """
    shape = check_shape(shape)
    n = len(shape)
    num_joint = math.prod(shape)
    raw = jax.random.normal(key, (batch, n, num_joint), dtype=dtype)
    centred = raw - raw.mean(axis=-1, keepdims=True)
    norm = jnp.sqrt(jnp.sum(centred * centred, axis=-1, keepdims=True))
    games = centred * (math.sqrt(num_joint) / jnp.maximum(norm, 1e-12))
    return games.reshape((batch, n, *shape))


def _preset_index(presets: Sequence[str]) -> np.ndarray:
    bad = [p for p in presets if p not in TRAIN_PRESETS]
    if bad or not presets:
        raise ValueError(f"presets must be a non-empty subset of {TRAIN_PRESETS}, got {presets!r}")
    return np.array([TRAIN_PRESETS.index(p) for p in presets], dtype=np.int32)


def sample_selection(
    key: jax.Array,
    games: jax.Array,
    presets: Sequence[str] = ("me", "mre"),
) -> SelectionInputs:
    """Selection parameters per game, each game's preset drawn uniformly from ``presets``.

    Args:
      key: PRNG key.
      games: ``[B, N, A1..AN]`` normalised games (used by the welfare preset).
      presets: names from ``TRAIN_PRESETS``.

    Returns:
      ``SelectionInputs`` with ``base_logits [B, A1..AN]``, ``eps_hat, eps_plus [B, N]``,
      ``rho [B]``.
    """
    index = jnp.asarray(_preset_index(presets))
    b, n = games.shape[:2]
    joint_shape = games.shape[2:]
    num_joint = math.prod(joint_shape)
    z2 = math.sqrt(num_joint)
    dtype = games.dtype
    k_pre, k_dir, k_eps = jax.random.split(key, 3)
    which = index[jax.random.randint(k_pre, (b,), 0, index.shape[0])]  # [B] TRAIN_PRESETS ids
    is_ = {name: which == i for i, name in enumerate(TRAIN_PRESETS)}

    # MRE targets ~ Dirichlet(1) = normalised Exp(1) draws; kept in log space.
    log_exp = jnp.log(jax.random.exponential(k_dir, (b, num_joint), dtype=dtype) + 1e-30)
    log_target = log_exp - jax.nn.logsumexp(log_exp, axis=-1, keepdims=True)
    uniform = jnp.full((b, num_joint), -math.log(num_joint), dtype=dtype)
    relative = is_["mre"] | is_["eps_mre"]
    base = jnp.where(relative[:, None], log_target, uniform)
    welfare = games.reshape(b, n, num_joint).sum(axis=1)
    base = base + jnp.where(is_["mw"], MW_WEIGHT, 0.0)[:, None] * welfare
    base = base.reshape((b, *joint_shape))

    soft = is_["eps_me"] | is_["eps_mre"] | is_["ms"]
    eps_draw = jax.random.uniform(k_eps, (b, n), dtype=dtype, minval=-z2, maxval=z2)
    eps_hat = jnp.where((is_["eps_me"] | is_["eps_mre"])[:, None], eps_draw, 0.0)
    # eps_plus = 2 Z2 is solvers.resolve_selection's soft default (above every gain);
    # Maximum Strength sets eps_hat = -eps_plus as solvers' MS preset does.
    eps_hat = jnp.where(is_["ms"][:, None], -2.0 * z2, eps_hat)
    eps_plus = jnp.where(soft[:, None], jnp.full((b, n), 2.0 * z2, dtype), jnp.inf)
    rho = jnp.where(soft, SOFT_RHO, jnp.inf).astype(dtype)
    return SelectionInputs(base, eps_hat.astype(dtype), eps_plus.astype(dtype), rho)


def sample_batch(
    key: jax.Array,
    batch: int,
    shape: Sequence[int],
    presets: Sequence[str] = ("me", "mre"),
    dtype=jnp.float32,
) -> tuple[jax.Array, SelectionInputs]:
    """``(games [B, N, A1..AN], SelectionInputs)`` for one training or validation batch."""
    k_game, k_sel = jax.random.split(key)
    games = sample_games(k_game, batch, shape, dtype)
    return games, sample_selection(k_sel, games, presets)


def selection_inputs(params: Sequence, shape: Sequence[int]) -> SelectionInputs:
    """Stacks per-game ``solvers.selection.SelectionParams`` into ``SelectionInputs``.

    Args:
      params: B resolved selections (``solvers.resolve_selection`` on each normalised
        game), entropy objective only.
      shape: the games' action counts ``(A1..AN)``.

    Returns:
      NumPy-backed ``SelectionInputs`` (float64), normalised units.
    """
    shape = check_shape(shape)
    if len(params) == 0:
        raise ValueError("params is empty; expected one SelectionParams per game")
    num_joint = math.prod(shape)
    for i, p in enumerate(params):
        if getattr(p, "objective", "entropy") != "entropy":
            raise ValueError(
                f"params[{i}].objective is {p.objective!r}; the network predicts duals of the "
                "entropy objective only (Max Gini has no such dual)"
            )
        if np.shape(p.base_logits) not in ((num_joint,), shape):
            raise ValueError(
                f"params[{i}].base_logits has shape {np.shape(p.base_logits)}; expected "
                f"[{num_joint}] for games of shape {shape}"
            )
        if np.shape(p.eps_hat) != (len(shape),) or np.shape(p.eps_plus) != (len(shape),):
            raise ValueError(
                f"params[{i}]: eps_hat/eps_plus must have shape [{len(shape)}], got "
                f"{np.shape(p.eps_hat)} and {np.shape(p.eps_plus)}"
            )
        if np.any(np.isneginf(p.base_logits)):
            raise ValueError(f"params[{i}].base_logits has -inf entries (restricted support)")
    base = np.stack([np.asarray(p.base_logits, np.float64).reshape(shape) for p in params])
    eps_hat = np.stack([np.asarray(p.eps_hat, np.float64) for p in params])
    eps_plus = np.stack([np.asarray(p.eps_plus, np.float64) for p in params])
    rho = np.array([float(p.rho) for p in params])
    return SelectionInputs(base, eps_hat, eps_plus, rho)
