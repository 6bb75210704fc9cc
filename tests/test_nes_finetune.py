"""Fine-tuning: a run started from existing weights (``TrainConfig.init_from``)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from hybrid_nes import checkpoint as ckpt_lib
from hybrid_nes.cli import main as cli_main
from hybrid_nes.network import NetworkConfig
from hybrid_nes.train import TrainConfig, initial_state, train

TINY = NetworkConfig(concept="cce", payoff_channels=(8,), dual_channels=8, dual_layers=(8,))
BASE = TrainConfig(network=TINY, shapes=((3, 3),), presets=("me",), steps=4, batch_size=16, eval_games=8,
                   eval_every=4, checkpoint_every=4, seed=3)


@pytest.fixture(scope="module")
def parent_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("parent")
    state, _ = train(BASE, out, progress=False)
    return out, state


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_fine_tune_starts_from_the_parent_weights_with_a_fresh_optimiser(parent_run):
    out, parent = parent_run
    for source in ("weights.npz", "checkpoint.npz"):
        config = dataclasses.replace(BASE, seed=99, init_from=str(out / source))
        state, note = initial_state(config)
        assert state.step == 0 and note["step"] == 4 and note["path"].endswith(source)
        for got, want in zip(_leaves(state.params), _leaves(parent.params), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)  # weights are stored float32
        fresh, _ = initial_state(dataclasses.replace(config, init_from=None))
        assert not all(np.allclose(a, b) for a, b in zip(_leaves(state.params), _leaves(fresh.params), strict=True))


def test_fine_tuned_weights_record_their_parent(parent_run, tmp_path):
    out, _ = parent_run
    config = dataclasses.replace(BASE, seed=4, init_from=str(out / "weights.npz"))
    state, history = train(config, tmp_path, progress=False)
    assert state.step == 4 and history[0]["step"] == 0
    meta = ckpt_lib.load(tmp_path / "weights.npz").meta
    assert meta["parent"]["step"] == 4 and meta["config"]["init_from"].endswith("weights.npz")
    parent_history = ckpt_lib.load(out / "weights.npz").meta["history"]
    assert meta["parent"]["history"] == parent_history and parent_history[-1]["step"] == 4
    assert ckpt_lib.load(tmp_path / "checkpoint.npz").meta["parent"]["path"].endswith("weights.npz")


def test_fine_tune_refuses_another_architecture(parent_run):
    out, _ = parent_run
    other = dataclasses.replace(BASE, network=dataclasses.replace(TINY, dual_channels=16),
                                init_from=str(out / "weights.npz"))
    with pytest.raises(ckpt_lib.CheckpointError, match="differs"):
        initial_state(other)


def test_cli_reports_a_missing_init_file(tmp_path, capsys):
    code = cli_main(["train", "--out", str(tmp_path / "run"), "--shape", "2x2", "--steps", "1", "--no-progress",
                     "--init-from", str(tmp_path / "missing.npz")])
    assert code == 2 and "missing.npz" in capsys.readouterr().err


def test_cli_export_turns_a_checkpoint_into_weights_and_recalibrates_weights(parent_run, tmp_path, capsys):
    out, parent = parent_run
    exported = tmp_path / "exported.npz"
    assert cli_main(["export", str(out / "checkpoint.npz"), str(exported), "--hardware", "test box"]) == 0
    meta = ckpt_lib.load(exported).meta
    assert meta["kind"] == "weights" and meta["step"] == 4 and meta["hardware"] == "test box"
    assert meta["calibration"]["games"] >= 8192
    # A weight file re-calibrated for another shape keeps its parameters and metadata.
    again = tmp_path / "again.npz"
    assert cli_main(["export", str(exported), str(again), "--shape", "5x5"]) == 0
    ck = ckpt_lib.load(again)
    assert set(ck.stats) == {(5, 5)} and ck.meta["hardware"] == "test box" and ck.meta["step"] == 4
    for got, want in zip(_leaves(ck.params), _leaves(parent.params), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert cli_main(["export", str(tmp_path / "missing.npz"), str(tmp_path / "x.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err


def test_frozen_statistics_fine_tune_ships_the_parents_statistics(parent_run, tmp_path):
    out, parent = parent_run
    parent_file = ckpt_lib.load(out / "weights.npz")
    config = dataclasses.replace(BASE, seed=5, learning_rate=1e-2, init_from=str(out / "weights.npz"),
                                 freeze_statistics=True, families=(("random", 1.0), ("zero_sum", 1.0)))
    state, history = train(config, tmp_path, progress=False)
    shipped = ckpt_lib.load(tmp_path / "weights.npz")
    assert set(shipped.stats) == set(parent_file.stats)
    for shape in parent_file.stats:  # unchanged, not re-calibrated on the mixture
        for got, want in zip(_leaves(shipped.stats[shape]), _leaves(parent_file.stats[shape]), strict=True):
            np.testing.assert_array_equal(got, want)
    assert shipped.meta["calibration"]["frozen_from"].endswith("weights.npz")
    assert not all(np.allclose(a, b) for a, b in zip(_leaves(state.params), _leaves(parent.params), strict=True))
    assert np.isfinite(history[-1]["3x3/solver_gap"])


def test_frozen_statistics_need_a_parent_with_them(parent_run):
    with pytest.raises(ValueError, match="freeze_statistics needs init_from"):
        dataclasses.replace(BASE, freeze_statistics=True)
    out, _ = parent_run
    config = dataclasses.replace(BASE, shapes=((4, 4),), init_from=str(out / "weights.npz"), freeze_statistics=True)
    with pytest.raises(ckpt_lib.CheckpointError, match="no statistics"):
        train(config, out / "bad", progress=False)
