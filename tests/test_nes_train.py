"""Training: it learns, no dead units, determinism, resume, atomic checkpoints."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_nes import checkpoint as ckpt_lib
from hybrid_nes.calibration import (
    FIRST_USE_CALIBRATION,
    SHIPPED_CALIBRATION,
    calibrate_statistics,
    calibration_plan,
    pool_statistics,
)
from hybrid_nes.evaluation import score_duals, uniform_rule_duals
from hybrid_nes.network import NetworkConfig, make_activations
from hybrid_nes.train import (
    TrainConfig,
    init_state,
    make_train_step,
    restore,
    train,
)
from hybrid_nes.validation import evaluate, validation_set

SMALL = NetworkConfig(concept="cce", payoff_channels=(16, 16), dual_channels=16, dual_layers=(16,))
TINY = NetworkConfig(concept="cce", payoff_channels=(8,), dual_channels=8, dual_layers=(8,))  # plumbing only


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    config = TrainConfig(
        network=SMALL, shapes=((4, 4),), presets=("me",), steps=150, batch_size=128,
        learning_rate=3e-3, warmup_steps=10, eval_every=150, eval_games=64, checkpoint_every=150, seed=3,
    )
    out = tmp_path_factory.mktemp("short")
    state, history = train(config, out, resume=False, progress=False, calibrate=False)
    stats = calibrate_statistics(config, state.params, (4, 4))
    return config, state, history, stats


def test_short_training_beats_the_one_line_rule(short_run):
    config, state, history, stats = short_run
    val = validation_set(config, (4, 4))
    rule = min(
        float(score_duals(val.games, val.sel, uniform_rule_duals(val.games, "cce", c), "cce", val.ref).solver_gap.mean())
        for c in (1.0, 0.5)
    )
    before, after = history[0]["4x4/solver_gap"], history[-1]["4x4/solver_gap"]
    assert after < 0.6 * rule, (after, rule)
    assert after < 0.6 * before
    assert history[-1]["4x4/suboptimality"] < history[0]["4x4/suboptimality"]
    # Calibrated statistics (single-game inference) score like batch statistics.
    calibrated = evaluate(config, state.params, stats, val)
    assert calibrated["solver_gap"] < 1.15 * history[-1]["4x4/solver_gap"] + 0.01


def test_no_layer_is_dead_after_training(short_run):
    config, state, _, stats = short_run
    val = validation_set(config, (4, 4))
    apply = jax.jit(make_activations(config.network).apply, static_argnums=5)
    acts, _ = apply(state.params, stats, None, val.games, val.sel, False)
    for name, arrays in acts.items():
        flat = jnp.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays])
        alive = np.asarray(jnp.mean(flat > 0, axis=0))  # fraction of cells where a channel fires
        assert np.mean(alive > 0.01) > 0.7, (name, alive)  # most channels fire somewhere
        assert float(jnp.mean(flat > 0)) > 0.1, name


def test_same_seed_same_result_and_resume_is_exact(tmp_path):
    # TINY: what is checked is bitwise determinism and resume, not learning; a smaller
    # network compiles its two update steps (most of this test's time) faster.
    config = TrainConfig(network=TINY, shapes=((2, 2), (3, 3)), steps=6, batch_size=16, eval_every=6,
                         eval_games=4, checkpoint_every=2, seed=5, eval_shapes=((2, 2),))
    a, _ = train(config, tmp_path / "a", resume=False, progress=False, calibrate=False)
    b, _ = train(config, tmp_path / "b", resume=False, progress=False, calibrate=False, stop_at=3)
    assert b.step == 3
    b, _ = train(config, tmp_path / "b", resume=True, progress=False, calibrate=False)
    assert b.step == 6
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    other, _ = train(config.__class__(**{**config.__dict__, "seed": 6}), tmp_path / "c", resume=False,
                     progress=False, calibrate=False)
    assert not np.allclose(np.asarray(jax.tree_util.tree_leaves(a.params)[0]),
                           np.asarray(jax.tree_util.tree_leaves(other.params)[0]))
    restored_config, restored, _, _ = restore(tmp_path / "a" / "checkpoint.npz")
    assert restored_config == config and restored.step == 6


def test_corrupt_checkpoint_never_replaces_a_good_one(tmp_path, monkeypatch):
    good = ckpt_lib.Checkpoint({"kind": "weights", "step": 1}, {"m": {"w": np.ones(3)}}, {}, {}, [])
    path = ckpt_lib.save(tmp_path / "c.npz", good)
    original = path.read_bytes()

    def broken_savez(handle, **arrays):  # a write that dies half-way
        handle.write(b"PK\x03\x04 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        ckpt_lib.save(path, good._replace(meta={"kind": "weights", "step": 2}))
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert ckpt_lib.load(path).meta["step"] == 1

    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(ckpt_lib.CheckpointError, match="corrupt|checksum"):
        ckpt_lib.load(tmp_path / "bad.npz")
    with pytest.raises(ckpt_lib.CheckpointError, match="does not exist"):
        ckpt_lib.load(tmp_path / "missing.npz")


def test_config_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="presets"):
        TrainConfig(presets=("nope",))
    with pytest.raises(ValueError, match="shape_weights"):
        TrainConfig(shapes=((2, 2), (3, 3)), shape_weights=(1.0,))
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="N >= 2"):
        TrainConfig(shapes=((4,),))
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="gap_weight"):
            TrainConfig(gap_weight=bad)


def test_gap_weight_trades_dual_loss_for_a_lower_gap(short_run, tmp_path):
    """The penalty changes the objective, not what a step reports, and lowers the gap it weighs."""
    # short_run's config, so that its compiled step and validation set are reused
    base = dataclasses.replace(short_run[0], steps=60, eval_every=60, checkpoint_every=60)
    weighted = dataclasses.replace(base, gap_weight=3.0)
    state = init_state(base)
    args = (state.params, state.bn_state, state.opt_state, np.int32(0), np.float32(1e-3), (4, 4))
    plain_out, weighted_out = make_train_step(base)(*args), make_train_step(weighted)(*args)
    np.testing.assert_allclose(weighted_out[3:], plain_out[3:], rtol=1e-5)  # same batch: same loss and gap
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(plain_out[0]),
                                                     jax.tree_util.tree_leaves(weighted_out[0]), strict=True))
    scores = {}
    for name, config in (("plain", base), ("weighted", weighted)):
        _, history = train(config, tmp_path / name, resume=False, progress=False, calibrate=False)
        scores[name] = history[-1]
    assert scores["weighted"]["4x4/gap"] < 0.8 * scores["plain"]["4x4/gap"]
    assert scores["weighted"]["4x4/loss"] > scores["plain"]["4x4/loss"]


def test_calibration_plan_bounds_memory_and_work():
    shipped, first_use = SHIPPED_CALIBRATION, FIRST_USE_CALIBRATION
    assert calibration_plan((8, 8), shipped) == (64, 512)  # 32,768 games
    assert calibration_plan((8, 8), first_use) == (8, 512)
    batches, per_batch = calibration_plan((32, 32), shipped)
    assert per_batch == 256 and batches * per_batch == 32768  # 2**18 joint actions per batch
    for shape in ((64, 64), (256, 256), (16, 16, 16)):
        batches, per_batch = calibration_plan(shape, first_use)
        cells = math.prod(shape)
        assert per_batch >= 64 and per_batch * cells <= max(1 << 18, 64 * cells)
        assert batches * per_batch * cells <= max(first_use.max_cells, per_batch * cells)


def test_pooled_statistics_are_the_population_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 50, 3)) * [1.0, 2.0, 3.0] + rng.normal(size=(6, 1, 3))  # 6 batches with shifted means
    states = [{"bn": {"mean": b.mean(0), "var": b.var(0)}} for b in x]
    pooled = pool_statistics(states)
    np.testing.assert_allclose(pooled["bn"]["mean"], x.reshape(-1, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(pooled["bn"]["var"], x.reshape(-1, 3).var(0), rtol=1e-5)
    assert pooled["bn"]["var"].dtype == np.float32
