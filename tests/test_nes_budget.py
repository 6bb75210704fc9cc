"""Time-budgeted training: the step count fits the budget, the compiled step is reused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from hybrid_nes.cli import main as cli_main
from hybrid_nes.network import NetworkConfig
from hybrid_nes.train import (
    TrainConfig,
    budget_steps,
    compile_steps,
    init_state,
    learning_rate_schedule,
    make_train_step,
    restore,
    train,
)

TINY = NetworkConfig(concept="cce", payoff_channels=(8,), dual_channels=8, dual_layers=(8,))


def test_budget_steps_weights_the_measured_step_times():
    config = TrainConfig(network=TINY, shapes=((2, 2), (4, 4)), shape_weights=(1.0, 3.0))
    # mean step time = 0.25 * 0.01 + 0.75 * 0.03 = 0.025 s
    assert budget_steps(config, 10.0, {(2, 2): 0.01, (4, 4): 0.03}) == 400
    assert budget_steps(config, 1e-6, {(2, 2): 0.01, (4, 4): 0.03}) == 1


def test_compiled_step_does_not_depend_on_steps_or_schedule():
    config = TrainConfig(network=TINY, shapes=((3, 3),), steps=10)
    other = dataclasses.replace(config, steps=999, learning_rate=1e-2, warmup_steps=5, eval_every=7)
    assert make_train_step(config) is make_train_step(other)
    assert make_train_step(config) is not make_train_step(dataclasses.replace(config, seed=1))


def test_ahead_of_time_steps_take_the_jitted_step():
    from hybrid_nes.families import TRAIN_MIXTURE

    # One shape: compiling the mixture sampler costs ~20 s a shape on the 2-core CPU; two
    # shapes through compile_steps are covered by test_time_budgeted_run_records_the_steps_it_chose.
    # test_nes_families' data-stream test reuses this config's jitted sampler: keep them in step.
    config = TrainConfig(network=TINY, shapes=((3, 2),), batch_size=16, families=TRAIN_MIXTURE)
    state = init_state(config)
    args = (state.params, state.bn_state, state.opt_state)
    compiled = compile_steps(config, state, config.shapes)
    assert set(compiled) == {(3, 2)}
    for shape, fn in compiled.items():
        for step in (0, 3):
            got = fn(*args, np.int32(step), np.float32(1e-2))
            want = make_train_step(config)(*args, np.int32(step), np.float32(1e-2), shape)
            np.testing.assert_allclose(float(got[3]), float(want[3]), rtol=1e-6)
            np.testing.assert_allclose(float(got[4]), float(want[4]), rtol=1e-6)
    loss = [float(compiled[(3, 2)](*args, np.int32(s), np.float32(0.0))[3]) for s in (0, 1)]
    assert loss[0] != loss[1]  # each step draws its own games


def test_schedule_warms_up_then_decays_to_the_final_factor():
    config = TrainConfig(network=TINY, steps=100, learning_rate=1e-3, warmup_steps=10, final_lr_factor=0.1)
    rates = np.array([float(learning_rate_schedule(config)(s)) for s in (0, 10, 100)])
    np.testing.assert_allclose(rates, [0.0, 1e-3, 1e-4], rtol=1e-5, atol=1e-9)


def test_time_budgeted_run_records_the_steps_it_chose(tmp_path):
    config = TrainConfig(network=TINY, shapes=((2, 2), (3, 3)), presets=("me",), steps=10**6, batch_size=32,
                         eval_shapes=((3, 3),), eval_games=16, seed=5)
    lines: list[str] = []
    state, history = train(config, tmp_path, progress=False, calibrate=False, log=lines.append, time_budget=8.0)
    budget = next(json.loads(line) for line in lines if "time_budget_s" in line)
    assert 1 <= budget["steps"] < 10**6 and set(budget["step_time_s"]) == {"2x2", "3x3"}
    saved, restored, saved_history, _ = restore(tmp_path / "checkpoint.npz")
    assert saved.steps == budget["steps"]  # a resume ends where this run was meant to
    assert restored.step == state.step == history[-1]["step"]
    stopped = any("stopped" in line for line in lines)
    assert stopped or state.step == saved.steps
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == saved.steps


def test_cli_rejects_a_non_positive_budget(tmp_path, capsys):
    assert cli_main(["train", "--out", str(tmp_path), "--shape", "2x2", "--time-budget", "0"]) == 2
    assert "--time-budget" in capsys.readouterr().err


def test_cli_no_weights_flag_defaults_off():
    from hybrid_nes.cli import build_parser

    assert build_parser().parse_args(["train", "--out", "x", "--no-weights"]).no_weights
    assert not build_parser().parse_args(["train", "--out", "x"]).no_weights
