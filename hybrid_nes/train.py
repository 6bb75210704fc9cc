"""Unsupervised training of the NES: minimise the dual loss of sampled games (paper sec. 4.3).

Each step draws one game shape (seeded by ``(seed, step)``, so a resumed run makes the
same draws as an uninterrupted one), samples a batch of games and selection parameters
in their own jitted function (the family mixture compiles once per shape, not into
every gradient step), and takes an Adam step (adaptive gradient clipping, warm-up + cosine
schedule) on ``mean_b L(alpha_theta(G_b))``. Evaluation uses a fixed validation set per
shape with exact reference optima. Device-agnostic: nothing here names a device.

BatchNorm calibration (``hybrid_nes.calibration``), validation (``hybrid_nes.validation``)
and shippable weight files (``hybrid_nes.weights``) have their own modules.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hybrid_nes import checkpoint as ckpt_lib
from hybrid_nes import train_sampler
from hybrid_nes.calibration import (  # re-exported: train's public names before calibration.py
    FIRST_USE_CALIBRATION,
    SHIPPED_CALIBRATION,
    Calibration,
    calibrate_statistics,
    calibration_plan,
    pool_statistics,
)
from hybrid_nes.families import check_mixture
from hybrid_nes.loss import batch_dual_metrics
from hybrid_nes.network import NetworkConfig, make_network
from hybrid_nes.sampling import TRAIN_PRESETS, check_shape, sample_batch
from hybrid_nes.validation import evaluate, validation_set
from hybrid_nes.weights import write_weights
from solvers.atomic import write_text_atomic

__all__ = [
    "TrainConfig",
    "TrainState",
    "make_optimizer",
    "init_state",
    "initial_state",
    "make_train_step",
    "make_sampler",
    "make_update",
    "shape_for_step",
    "Calibration",
    "calibration_plan",
    "calibrate_statistics",
    "pool_statistics",
    "SHIPPED_CALIBRATION",
    "FIRST_USE_CALIBRATION",
    "validation_set",
    "evaluate",
    "train",
    "restore",
    "write_weights",
    "export_weights",
]


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Attributes:
      network: the architecture (its ``concept`` is the run's concept).
      shapes: game shapes to train on, e.g. ``((8, 8), (4, 4))``.
      shape_weights: relative sampling weight of each shape (None = uniform).
      presets: selection presets sampled per game (``sampling.TRAIN_PRESETS``).
      steps: total optimiser steps.
      batch_size: games per step (paper: 4096).
      batch_cells: if set, a step on a shape with ``|A|`` joint actions uses
        ``clip(batch_cells // |A|, 16, batch_size)`` games, so that large games do not
        dominate the wall time.
      eval_shapes: shapes with a validation set (None = ``shapes``).
      learning_rate: peak Adam learning rate (paper: 4e-4).
      warmup_steps: linear warm-up; then cosine decay to ``final_lr_factor`` x peak.
      clip: adaptive gradient clipping factor (paper: 1e-3).
      seed: everything (init, data, shape draws, validation set) derives from it.
      eval_every, eval_games: validation period (steps) and games per shape.
      checkpoint_every: checkpoint period (steps).
      init_from: fine-tuning: a weight file or checkpoint of the same architecture
        whose parameters start the run (fresh optimiser state and schedule); None
        starts from ``seed``'s random initialisation.
      gap_weight: the objective is ``mean(L(alpha) + gap_weight * gap(alpha))``, with
        ``gap`` the (C)CE gap of the predicted joint. With hard constraints and
        ``eps_hat = 0`` (the ME and MRE presets) the penalty is zero at the exact duals,
        so it leaves the optimum alone and only reweights the network's error towards
        feasibility (soft presets have a positive gap at their optimum, which it would
        shift). 0 (default, the paper) trains on the dual loss alone.
      families: training games from a mixture of ``hybrid_nes.families`` (``(family,
        weight)`` pairs, e.g. ``families.TRAIN_MIXTURE``) for steps and BatchNorm
        calibration; None (default) samples the L2-invariant sphere only.
      freeze_statistics: fine-tuning with BatchNorm frozen: every layer normalises with
        the BatchNorm statistics that ``init_from`` (a weight file) ships for the step's
        shape, in training as at inference, and the run ships those statistics unchanged
        (no re-calibration). A mixture then cannot move the statistics that random games
        are normalised with; re-calibrating a network on a mixture costs random 8x8 games
        2.6x their solver gap (``benchmarks/results/nes_suite.finetune.md``).
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    shapes: tuple[tuple[int, ...], ...] = ((8, 8),)
    shape_weights: tuple[float, ...] | None = None
    presets: tuple[str, ...] = ("me", "mre")
    steps: int = 1000
    batch_size: int = 256
    batch_cells: int | None = None
    eval_shapes: tuple[tuple[int, ...], ...] | None = None
    learning_rate: float = 4e-4
    warmup_steps: int = 100
    final_lr_factor: float = 0.05
    clip: float = 1e-3
    seed: int = 0
    eval_every: int = 250
    eval_games: int = 256
    checkpoint_every: int = 500
    init_from: str | None = None
    gap_weight: float = 0.0
    families: tuple[tuple[str, float], ...] | None = None
    freeze_statistics: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", check_mixture(self.families))
        shapes = tuple(check_shape(s, "shapes") for s in self.shapes)
        if not shapes:
            raise ValueError("shapes must list at least one game shape")
        object.__setattr__(self, "shapes", shapes)
        if self.eval_shapes is not None:
            object.__setattr__(self, "eval_shapes", tuple(check_shape(s, "eval_shapes") for s in self.eval_shapes))
        object.__setattr__(self, "presets", tuple(self.presets))
        bad = [p for p in self.presets if p not in TRAIN_PRESETS]
        if bad or not self.presets:
            raise ValueError(f"presets must be a non-empty subset of {TRAIN_PRESETS}, got {self.presets!r}")
        if self.shape_weights is not None:
            weights = tuple(float(w) for w in self.shape_weights)
            if len(weights) != len(shapes) or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(
                    f"shape_weights must be {len(shapes)} non-negative numbers with a positive sum, "
                    f"got {self.shape_weights!r}"
                )
            object.__setattr__(self, "shape_weights", weights)
        for name in ("steps", "batch_size", "eval_every", "eval_games", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (math.isfinite(self.gap_weight) and self.gap_weight >= 0):
            raise ValueError(f"gap_weight must be a finite number >= 0, got {self.gap_weight!r}")
        if self.init_from is not None:
            object.__setattr__(self, "init_from", os.fspath(self.init_from))
        if self.freeze_statistics and self.init_from is None:
            raise ValueError("freeze_statistics needs init_from: a weight file whose statistics to keep")

    @property
    def concept(self) -> str:
        return self.network.concept

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["network"] = self.network.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["network"] = NetworkConfig.from_dict(dict(data.get("network", {})))
        data["shapes"] = tuple(tuple(s) for s in data.get("shapes", ((8, 8),)))
        if data.get("shape_weights") is not None:
            data["shape_weights"] = tuple(data["shape_weights"])
        data["presets"] = tuple(data.get("presets", ("me", "mre")))
        if data.get("eval_shapes") is not None:
            data["eval_shapes"] = tuple(tuple(s) for s in data["eval_shapes"])
        return cls(**data)

    def batch_for(self, shape: Sequence[int]) -> int:
        """Games per step for ``shape`` (see ``batch_cells``)."""
        if self.batch_cells is None:
            return self.batch_size
        return int(min(self.batch_size, max(16, self.batch_cells // math.prod(shape))))


class TrainState(NamedTuple):
    """Parameters, BatchNorm state, optimiser state and the step counter."""

    params: hk.Params
    bn_state: hk.State
    opt_state: optax.OptState
    step: int


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adaptive gradient clipping + Adam's direction (paper app. D.2), without the step size.

    The learning rate (``learning_rate_schedule``) multiplies the update in the train
    step and enters it as an argument, so the compiled step does not depend on
    ``config.steps``: a time-budgeted run fixes its step count after compiling.
    """
    return optax.chain(optax.adaptive_grad_clip(config.clip), optax.scale_by_adam())


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warm-up to ``learning_rate``, then cosine decay to ``final_lr_factor`` x peak."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=min(config.warmup_steps, max(config.steps - 1, 1)),
        decay_steps=max(config.steps, 2),
        end_value=config.learning_rate * config.final_lr_factor,
    )


@functools.lru_cache(maxsize=8)
def _jitted_init(network: NetworkConfig) -> Callable:
    """``net.init`` jitted once per architecture (``is_training`` static)."""
    return jax.jit(make_network(network).init, static_argnums=3)


def init_state(config: TrainConfig) -> TrainState:
    """A fresh ``TrainState`` from ``config.seed``."""
    games, sel = sample_batch(jax.random.PRNGKey(config.seed), 2, config.shapes[0], config.presets)
    params, bn_state = _jitted_init(config.network)(jax.random.fold_in(jax.random.PRNGKey(config.seed), 1), games, sel, True)
    opt_state = make_optimizer(config).init(params)
    return TrainState(params, bn_state, opt_state, 0)


def initial_state(config: TrainConfig) -> tuple[TrainState, dict | None]:
    """The state a fresh run starts from, and a note on its parent run (None if none).

    With ``config.init_from`` the parameters come from that weight file or checkpoint
    (same architecture, else ``CheckpointError``); the BatchNorm state, optimiser state
    and step count start afresh.
    """
    state = init_state(config)
    if config.init_from is None:
        return state, None
    parent = ckpt_lib.load(config.init_from)
    saved = parent.meta.get("config", {}).get("network")
    if saved is not None and NetworkConfig.from_dict(dict(saved)) != config.network:
        raise ckpt_lib.CheckpointError(
            f"init_from {config.init_from!r}: its network {saved} differs from the run's {config.network.to_dict()}"
        )
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), parent.params)
    if jax.tree_util.tree_map(jnp.shape, params) != jax.tree_util.tree_map(jnp.shape, state.params):
        raise ckpt_lib.CheckpointError(f"init_from {config.init_from!r}: parameters do not match the network config")
    note = {
        "path": config.init_from,
        "step": int(parent.meta.get("step", 0)),
        "wall_time_s": float(parent.meta.get("wall_time_s", 0.0)),
        "hardware": parent.meta.get("hardware") or parent.meta.get("device"),
        "history": list(parent.meta.get("history", [])),  # its validation curve, for the model card
        "parent": parent.meta.get("parent"),
    }
    return TrainState(params, state.bn_state, make_optimizer(config).init(params), 0), note


def frozen_statistics(config: TrainConfig) -> dict[tuple[int, ...], hk.State] | None:
    """The BatchNorm statistics per shape that ``init_from`` ships, when ``freeze_statistics``
    (every training shape must have them, else ``CheckpointError``); None otherwise."""
    if not config.freeze_statistics:
        return None
    stats = ckpt_lib.load(config.init_from).stats
    missing = [s for s in config.shapes if s not in stats]
    if missing:
        raise ckpt_lib.CheckpointError(
            f"freeze_statistics: init_from {config.init_from!r} ships no statistics for shapes {missing}")
    return {s: jax.tree_util.tree_map(jnp.asarray, t) for s, t in stats.items()}


def shape_for_step(config: TrainConfig, step: int) -> tuple[int, ...]:
    """The game shape of ``step``: a function of ``(seed, step)`` only (resume-safe)."""
    if len(config.shapes) == 1:
        return config.shapes[0]
    weights = np.ones(len(config.shapes)) if config.shape_weights is None else np.asarray(config.shape_weights)
    rng = np.random.default_rng([config.seed, step, 7])
    return config.shapes[int(rng.choice(len(config.shapes), p=weights / weights.sum()))]


def _step_key(config: TrainConfig) -> TrainConfig:
    """``config`` with the fields the compiled step does not read set to defaults."""
    return dataclasses.replace(
        config, steps=1, learning_rate=1.0, warmup_steps=0, final_lr_factor=1.0, eval_every=1,
        eval_games=1, eval_shapes=None, checkpoint_every=1, shape_weights=None,
        init_from=config.init_from if config.freeze_statistics else None,  # the frozen statistics
    )


def make_train_step(config: TrainConfig) -> Callable:
    """``step(params, bn_state, opt_state, step, lr, shape) -> (params, bn_state, opt_state, loss, gap)``.

    Samples the step's games (``make_sampler``) and takes the gradient step
    (``make_update``): two jitted functions, each compiled once per game shape. Cached
    on the fields the step reads (not ``steps`` or the schedule), so a resumed or
    re-budgeted run in the same process reuses the compiled steps.
    """
    return _make_train_step(_step_key(config))


def make_sampler(config: TrainConfig) -> Callable:
    """``sample(step, shape) -> (games, sel)``, jitted apart from the step (``train_sampler``)."""
    return train_sampler.make_sampler(_step_key(config))


def make_update(config: TrainConfig) -> Callable:
    """``update(params, bn_state, opt_state, games, sel, lr) -> (params, bn_state, opt_state, loss, gap)``, jitted."""
    return _make_update(_update_key(config))


def _update_key(config: TrainConfig) -> TrainConfig:
    """``_step_key`` less the seed: the gradient step does not read it (shared by seeds)."""
    return dataclasses.replace(_step_key(config), seed=0)


@functools.lru_cache(maxsize=8)
def _make_update(config: TrainConfig) -> Callable:
    net = make_network(config.network)
    opt = make_optimizer(config)
    concept = config.concept
    frozen = frozen_statistics(config)

    def loss_fn(params, bn_state, games, sel):
        if frozen is None:
            duals, new_state = net.apply(params, bn_state, None, games, sel, True)
        else:  # inference-mode normalisation: the function that ships is the one trained
            duals, new_state = net.apply(params, frozen[games.shape[2:]], None, games, sel, False)[0], bn_state
        metrics = batch_dual_metrics(games, sel, duals, concept)  # one pass: loss, gap and joint
        loss, gap = metrics.loss.mean(), metrics.gap.mean()
        # with no weight the gap is only reported, so autodiff never goes through it
        objective = loss + config.gap_weight * gap if config.gap_weight else loss
        return objective, (new_state, loss, gap)

    def update(params, bn_state, opt_state, games, sel, lr):
        (_, (new_state, loss, gap)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, bn_state, games, sel)
        direction, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree_util.tree_map(lambda u: -lr * u, direction))
        return params, new_state, opt_state, loss, gap

    return jax.jit(update)


@functools.lru_cache(maxsize=8)
def _make_train_step(config: TrainConfig) -> Callable:
    sample, update = train_sampler.make_sampler(config), _make_update(_update_key(config))

    def step_fn(params, bn_state, opt_state, step, lr, shape):
        games, sel = sample(step, tuple(shape))
        return update(params, bn_state, opt_state, games, sel, lr)

    return step_fn


def compile_steps(config: TrainConfig, state: TrainState, shapes: Sequence[Sequence[int]],
                  workers: int | None = None) -> dict[tuple[int, ...], Callable]:
    """Ahead-of-time compiles the sampler and update of every shape, in parallel threads.

    Returns ``{shape: compiled}``, each called as ``compiled(params, bn_state, opt_state,
    step, lr)`` with ``step`` an int32 and ``lr`` a float32 scalar.
    """
    return train_sampler.compile_sampled_steps(make_sampler(config), make_update(config),
                                               (state.params, state.bn_state, state.opt_state), shapes, workers)


def budget_steps(config: TrainConfig, seconds: float, step_time: dict[tuple[int, ...], float]) -> int:
    """Steps that fit in ``seconds`` given the measured seconds per step of each shape."""
    weights = np.ones(len(config.shapes)) if config.shape_weights is None else np.asarray(config.shape_weights)
    mean = float(np.dot(weights / weights.sum(), [step_time[s] for s in config.shapes]))
    return max(1, int(seconds / mean))


def _save_checkpoint(path: Path, config: TrainConfig, state: TrainState, history: list, stats=None, wall: float = 0.0,
                     parent: dict | None = None) -> None:
    meta = {
        "kind": "checkpoint",
        "config": config.to_dict(),
        "step": int(state.step),
        "wall_time_s": wall,
        "history": history,
        "jax_version": jax.__version__,
        "device": f"{jax.default_backend()}: {jax.devices()[0].device_kind}",
        "parent": parent,
    }
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state.opt_state)]
    ckpt_lib.save(
        path,
        ckpt_lib.Checkpoint(
            meta=meta,
            params=jax.tree_util.tree_map(np.asarray, state.params),
            state=jax.tree_util.tree_map(np.asarray, state.bn_state),
            stats=stats or {},
            opt=leaves,
        ),
    )


def restore(path: str | os.PathLike, config: TrainConfig | None = None) -> tuple[TrainConfig, TrainState, list, float]:
    """Loads a training checkpoint: ``(config, state, history, wall_time_s)``."""
    return _restore_loaded(ckpt_lib.load(path), path, config)


def _restore_loaded(ck: ckpt_lib.Checkpoint, path: str | os.PathLike,
                    config: TrainConfig | None) -> tuple[TrainConfig, TrainState, list, float]:
    """``restore`` of an already loaded checkpoint (callers that also read its meta)."""
    if ck.meta.get("kind") != "checkpoint":
        raise ckpt_lib.CheckpointError(f"{str(path)!r} holds weights only (no optimiser state); cannot resume")
    saved = TrainConfig.from_dict(ck.meta["config"])
    if config is not None and config.network != saved.network:
        raise ValueError(f"resume: network config {config.network} differs from the checkpoint's {saved.network}")
    config = config or saved
    template = jax.eval_shape(lambda: init_state(config))  # structure only: nothing is computed
    treedef = jax.tree_util.tree_structure(template.opt_state)
    if treedef.num_leaves != len(ck.opt):
        raise ckpt_lib.CheckpointError(
            f"{str(path)!r}: optimiser state has {len(ck.opt)} leaves, expected {treedef.num_leaves}"
        )
    opt_state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in ck.opt])
    params = jax.tree_util.tree_map(jnp.asarray, ck.params)
    if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(template.params):
        raise ckpt_lib.CheckpointError(f"{str(path)!r}: parameters do not match the network config")
    state = TrainState(params, jax.tree_util.tree_map(jnp.asarray, ck.state), opt_state, int(ck.meta["step"]))
    return config, state, list(ck.meta.get("history", [])), float(ck.meta.get("wall_time_s", 0.0))


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = True,
    progress: bool = True,
    calibrate: bool = True,
    log: Callable[[str], None] | None = None,
    stop_at: int | None = None,
    time_budget: float | None = None,
    sync_every: int = 20,
) -> tuple[TrainState, list[dict]]:
    """Trains (or resumes) a run in ``out_dir``; returns the final state and history.

    Writes ``out_dir/checkpoint.npz`` every ``checkpoint_every`` steps and at the end,
    ``out_dir/log.jsonl`` (one line per evaluation) and, when ``calibrate``,
    ``out_dir/weights.npz``: parameters plus BatchNorm statistics calibrated for every
    training shape (the format ``hybrid_nes.load_pretrained`` reads). ``stop_at`` ends
    this call early at that step (checkpointed), as an interruption would; a later call
    resumes and ends exactly as an uninterrupted run.

    ``time_budget`` (seconds, fresh runs only) replaces ``config.steps``: every shape's
    step is compiled first (in parallel), timed, and the run gets the number of steps
    that fits the budget (recorded in the checkpoint's config, so a resume ends the
    same). The learning-rate schedule then spans those steps. A run that still overruns
    the budget by 10% stops there, checkpointed. Losses are read back to the host every
    ``sync_every`` steps, so the device is never idle waiting for Python.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.npz"
    history: list[dict] = []
    wall0 = 0.0
    fresh = not (resume and ckpt_path.exists())
    if fresh:
        state, parent = initial_state(config)
    else:
        ck = ckpt_lib.load(ckpt_path)
        config, state, history, wall0 = _restore_loaded(ck, ckpt_path, config)
        parent = ck.meta.get("parent")
    compiled: dict[tuple[int, ...], Callable] = {}
    if time_budget is not None and fresh:
        compiled = compile_steps(config, state, config.shapes)
        step_time = {}
        for shape, fn in compiled.items():
            jax.block_until_ready(fn(state.params, state.bn_state, state.opt_state, np.int32(0), np.float32(0.0)))
            t = time.perf_counter()
            for i in range(3):
                out = fn(state.params, state.bn_state, state.opt_state, np.int32(i), np.float32(0.0))
            jax.block_until_ready(out)
            step_time[shape] = (time.perf_counter() - t) / 3
    jitted = make_train_step(config)

    def step_fn(shape):
        return compiled.get(shape) or (lambda *args: jitted(*args, shape))

    vals = {s: validation_set(config, s) for s in (config.eval_shapes or config.shapes)}
    frozen = frozen_statistics(config) or {}

    def record(step: int, wall: float) -> dict:
        entry = {"step": step, "wall_time_s": wall}
        for s, val in vals.items():
            for k, v in evaluate(config, state.params, frozen.get(s), val).items():
                entry[f"{ckpt_lib.shape_key(s)}/{k}"] = v
        history.append(entry)
        with open(out_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(entry) + "\n")
        if log:
            log(json.dumps(entry))
        return entry

    if state.step == 0 and not history:
        record(0, 0.0)
    if time_budget is not None and fresh:
        t_eval = time.perf_counter()
        for s, val in vals.items():
            evaluate(config, state.params, frozen.get(s), val)
        t_eval = time.perf_counter() - t_eval
        spent = time.perf_counter() - t_start
        # about 13 evaluations and checkpoints follow; keep 5% for the rest
        steps = budget_steps(config, max(time_budget - spent - 13 * t_eval, 1.0) * 0.95, step_time)
        config = dataclasses.replace(config, steps=steps, eval_every=max(1, steps // 12),
                                     checkpoint_every=max(1, min(config.checkpoint_every, steps // 12)))
        write_text_atomic(out_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
        if log:
            log(json.dumps({"time_budget_s": time_budget, "setup_s": spent, "steps": steps,
                            "step_time_s": {ckpt_lib.shape_key(s): t for s, t in step_time.items()}}))
    deadline = None if time_budget is None else t_start + 1.1 * time_budget
    rates = np.asarray(jax.jit(jax.vmap(learning_rate_schedule(config)))(jnp.arange(config.steps)), np.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=state.step, desc=f"train {config.concept}", dynamic_ncols=True)
    start = time.perf_counter()
    params, bn_state, opt_state = state.params, state.bn_state, state.opt_state
    ema_loss = ema_gap = None
    pending: list[tuple[int, tuple[int, ...], jax.Array, jax.Array]] = []
    step = state.step
    end = config.steps if stop_at is None else min(stop_at, config.steps)

    def flush() -> None:
        nonlocal ema_loss, ema_gap
        for at, shape, loss, gap in pending:
            loss, gap = float(loss), float(gap)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at step {at} (shape {shape})")
            ema_loss = loss if ema_loss is None else 0.95 * ema_loss + 0.05 * loss
            ema_gap = gap if ema_gap is None else 0.95 * ema_gap + 0.05 * gap
        if bar is not None and pending:
            bar.update(len(pending))
            bar.set_postfix(loss=f"{ema_loss:.4f}", gap=f"{ema_gap:.4f}", shape=ckpt_lib.shape_key(pending[-1][1]))
        pending.clear()

    while step < end:
        shape = shape_for_step(config, step)
        params, bn_state, opt_state, loss, gap = step_fn(shape)(params, bn_state, opt_state, np.int32(step), rates[step])
        step += 1
        pending.append((step, shape, loss, gap))
        evaluate_now = step % config.eval_every == 0 or step == config.steps
        save_now = step % config.checkpoint_every == 0 or step == end
        out_of_time = deadline is not None and time.perf_counter() > deadline
        if len(pending) >= sync_every or evaluate_now or save_now or out_of_time:
            flush()
        wall = wall0 + time.perf_counter() - start
        state = TrainState(params, bn_state, opt_state, step)
        if evaluate_now or out_of_time:
            entry = record(step, wall)
            if bar is not None:
                bar.write(" ".join(f"{k}={v:.4g}" for k, v in entry.items()))
        if save_now or out_of_time:
            _save_checkpoint(ckpt_path, config, state, history, wall=wall, parent=parent)
        if out_of_time:
            if log:
                log(json.dumps({"stopped": "time budget overrun", "step": step, "of": config.steps}))
            break
    if bar is not None:
        bar.close()
    if calibrate and step == config.steps:
        write_weights(out_dir / "weights.npz", config, state.params, history, wall0 + time.perf_counter() - start,
                      shapes=list(frozen) or None, extra_meta={"parent": parent} if parent else None,
                      stats=frozen or None)
    return state, history


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike,
                   shapes: Sequence[Sequence[int]] | None = None, extra_meta: dict | None = None) -> Path:
    """Turns a training checkpoint into a shippable weight file (``write_weights``).

    Given a weight file instead, re-calibrates its statistics (for ``shapes``, default the
    shapes it ships) and keeps the rest of its metadata.
    """
    ck = ckpt_lib.load(checkpoint)
    if ck.meta.get("kind") == "weights":
        config = TrainConfig.from_dict(ck.meta["config"])
        meta = {k: v for k, v in ck.meta.items() if k not in ("kind", "config", "wall_time_s", "history", "jax_version")}
        return write_weights(out, config, ck.params, list(ck.meta.get("history", [])), float(ck.meta.get("wall_time_s", 0.0)),
                             shapes=shapes or list(ck.stats), extra_meta={**meta, **(extra_meta or {})})
    config, state, history, wall = _restore_loaded(ck, checkpoint, None)
    from hybrid_nes.network import count_parameters

    parent = ck.meta.get("parent")
    meta = {"num_parameters": count_parameters(state.params), "step": int(state.step),
            **({"parent": parent} if parent else {}), **(extra_meta or {})}
    frozen = frozen_statistics(config)
    return write_weights(out, config, state.params, history, wall, shapes=shapes or (list(frozen) if frozen else config.shapes),
                         extra_meta=meta, stats=frozen)
