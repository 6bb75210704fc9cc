"""solve_exact / solve_batch: the NES warm-started hybrid pipeline (hybrid_nes.pipeline)."""

import warnings

import numpy as np
import pytest

import solvers
from hybrid_nes import pipeline
from hybrid_nes.model import NESModel, load_pretrained, pretrained_path


def _games(seed: int, count: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, len(shape), *shape))


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_warm_and_cold_agree_with_the_exact_solver(concept):
    games = _games(0, 6, (5, 5)) * 3.0 + 1.0  # payoff units, not normalised
    cold = solvers.solve_batch(games, concept, "me")
    for start in ("nes", "cold", "auto"):
        sols = pipeline.solve_batch(games, concept, "me", warm_start=start)
        for ref, sol in zip(cold, sols, strict=True):
            assert sol.ok and sol.normalised_gap <= 1e-8
            np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-7)
            assert sol.info["warm_start"] in ("nes", "cold")
    warm = pipeline.solve_batch(games, concept, "me", warm_start="nes")
    assert all(s.info["warm_start"] == "nes" and s.timings["inference"] > 0 for s in warm)


def test_solve_exact_single_game_and_mre():
    game = _games(1, 1, (4, 4))[0]
    target = np.random.default_rng(2).dirichlet(np.ones(16)).reshape(4, 4)
    ref = solvers.solve(game, "ce", "mre", target=target)
    sol = pipeline.solve_exact(game, "ce", "mre", warm_start="nes", target=target)
    assert sol.ok
    np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-7)
    assert {"inference", "refine", "total"} <= set(sol.timings)


def test_given_duals_round_trip_as_warm_start():
    game = _games(3, 1, (6, 6))[0]
    first = pipeline.solve_exact(game, "cce", warm_start="cold")
    again = pipeline.solve_exact(game, "cce", warm_start=first.duals)
    assert again.info["warm_start"] == "given" and again.iterations <= 1
    np.testing.assert_allclose(again.joint, first.joint, atol=1e-9)


def test_first_use_of_an_unshipped_shape_times_calibration_apart():
    model = NESModel.from_file(pretrained_path("cce"))  # a fresh instance: nothing cached
    shape = (3, 7)
    assert not model.has_statistics(shape)
    games = _games(8, 2, shape)
    first = pipeline.solve_batch(games, "cce", warm_start="nes", model=model)
    assert model.has_statistics(shape) and model.has_statistics(shape[::-1])
    assert first[0].timings["calibrate"] > 0 and first[0].timings["compile"] > 0
    again = pipeline.solve_batch(games, "cce", warm_start="nes", model=model)
    assert "calibrate" not in again[0].timings and "compile" not in again[0].timings
    for a, b in zip(first, again, strict=True):
        assert a.ok and b.ok
        np.testing.assert_allclose(a.joint, b.joint, atol=1e-9)


def test_uncovered_shape_falls_back_to_cold_with_a_warning():
    games = _games(4, 2, (2, 2, 2, 2))  # 4 players: the shipped networks take 2- and 3-player games
    with pytest.warns(UserWarning, match="starting cold"):
        sols = pipeline.solve_batch(games, "cce", warm_start="nes")
    assert all(s.ok and s.info["warm_start"] == "cold" for s in sols)


def test_mixed_shapes_are_grouped_in_input_order():
    games = [_games(5, 1, (3, 3))[0], _games(6, 1, (2, 4))[0], _games(7, 1, (3, 3))[0]]
    sols = pipeline.solve_batch(games, "cce", warm_start="nes")
    assert [s.joint.shape for s in sols] == [(3, 3), (2, 4), (3, 3)]
    for g, s in zip(games, sols, strict=True):
        np.testing.assert_allclose(s.joint, solvers.solve(g, "cce").joint, atol=1e-7)


def test_polish_switch_reaches_the_exact_solver():
    game = _games(5, 1, (6, 6))[0]
    plain = pipeline.solve_exact(game, "ce", warm_start="cold", max_iter=1, polish=False)
    assert plain.status is solvers.Status.MAX_ITER and "cvxpy" not in plain.method
    batch = pipeline.solve_batch(_games(6, 3, (6, 6)), "ce", warm_start="nes", max_iter=1, polish=False)
    assert all("cvxpy" not in s.method for s in batch)
    assert any(s.status is solvers.Status.MAX_ITER for s in batch)
    assert all(s.ok or s.status is solvers.Status.MAX_ITER for s in batch)
    assert "cvxpy" in pipeline.solve_exact(game, "ce", warm_start="cold", max_iter=1).method


def test_max_gini_ignores_the_network():
    game = _games(8, 1, (3, 3))[0]
    sol = pipeline.solve_exact(game, "cce", "mg")
    assert sol.ok and sol.info["warm_start"] == "cold"


def test_warm_duals_snaps_small_duals():
    alpha = np.array([[1.0, 0.01, 0.5, 0.0]])
    out = pipeline.warm_duals(alpha, pipeline.WarmStartOptions(snap=0.05, scale=2.0))
    np.testing.assert_array_equal(out, [[2.0, 0.0, 1.0, 0.0]])


def test_auto_plan_reads_the_measured_policy():
    plan = pipeline.plan_for("cce", (8, 8), solvers.Selection.me(), "auto", "auto")
    assert plan.method in ("auto", "newton", "gd")
    assert pipeline.plan_for("cce", (8, 8), solvers.Selection.me(), "cold", "newton") == pipeline.Plan(False, "newton", "user")


def test_a_chosen_warm_start_takes_the_measured_method(monkeypatch):
    policy = {"cells": {"ce/32x32/me": {"warm": True, "method": "newton"}}}
    monkeypatch.setattr(pipeline, "_policy", lambda: policy)
    me = solvers.Selection.me()
    for start in ("nes", "given"):
        assert pipeline.plan_for("ce", (32, 32), me, start, "auto") == pipeline.Plan(True, "newton", "user")
        assert pipeline.plan_for("ce", (32, 32), me, start, "gd") == pipeline.Plan(True, "gd", "user")
        assert pipeline.plan_for("ce", (16, 16), me, start, "auto") == pipeline.Plan(True, "auto", "user")
    assert pipeline.plan_for("ce", (32, 32), me, "cold", "auto") == pipeline.Plan(False, "auto", "user")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"warm_start": "lukewarm"}, ValueError, "warm_start"),
        ({"method": "simplex"}, ValueError, "method"),
        ({"concept": "ne"}, ValueError, "concept"),
        ({"selection": "maxent"}, ValueError, "preset"),
        ({"warm_start": np.zeros((3, 10))}, ValueError, "rows"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    games = _games(9, 2, (3, 3))
    with pytest.raises(error, match=message):
        pipeline.solve_batch(games, **kwargs)


def test_nan_game_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        pipeline.solve_exact(np.full((2, 2, 2), np.nan))


def test_shipped_models_cover_two_player_games():
    for concept in ("cce", "ce"):
        model = load_pretrained(concept)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert model.check_shape((8, 8)) == (8, 8)


def test_cli_solves_an_nfg_file(tmp_path, capsys):
    pytest.importorskip("pygambit", reason="pygambit (extra 'openspiel') reads .nfg files")
    import json

    from hybrid_nes.cli import main
    from solvers.game_io import save_game

    chicken = np.array([[[0.0, -1.0], [1.0, -10.0]], [[0.0, 1.0], [-1.0, -10.0]]])
    path = tmp_path / "chicken.nfg"
    save_game(chicken, path)
    assert main(["solve", str(path), "--concept", "ce", "--selection", "me", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "optimal" and out["gap"] <= 1e-8
    np.testing.assert_allclose(out["joint"], solvers.solve(chicken, "ce").joint, atol=1e-7)
    assert main(["solve", str(path), "--concept", "cce"]) == 0
    assert "status optimal" in capsys.readouterr().out
    assert main(["solve", str(tmp_path / "missing.nfg")]) == 2


def test_cli_solve_batch_writes_every_games_solution(tmp_path, capsys):
    from hybrid_nes.cli import main

    games = _games(40, 7, (4, 5))
    src = tmp_path / "games.npz"
    np.savez(src, games=games)
    out = tmp_path / "results.npz"
    argv = ["solve-batch", str(src), "--out", str(out), "--concept", "ce", "--chunk", "3", "--no-progress",
            "--no-polish"]
    assert main(argv) == 0
    assert "certified 7/7" in capsys.readouterr().out
    with np.load(out) as res:
        assert res["joint"].shape == (7, 4, 5) and res["duals"].shape == (7, solvers.num_constraints((4, 5), "ce"))
        assert list(res["status"]) == ["optimal"] * 7 and np.all(res["normalised_gap"] <= 1e-8)
        for g, joint, duals in zip(games, res["joint"], res["duals"], strict=True):
            ref = solvers.solve(g, "ce")
            np.testing.assert_allclose(joint, ref.joint, atol=1e-7)
            # The duals are a warm start in payoff units: they reproduce the joint at once.
            again = solvers.solve(g, "ce", duals0=duals)
            assert again.iterations <= 1
            np.testing.assert_allclose(again.joint, joint, atol=1e-9)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (lambda p: np.save(p / "g.npy", _games(0, 2, (3, 3))[0]), ["g.npy"], "shape [B, N, A1..AN]"),
        (lambda p: np.save(p / "g.npy", np.full((1, 2, 2, 2), np.nan)), ["g.npy"], "NaN"),
        (lambda p: None, ["missing.npy"], "no games file"),
        (lambda p: (p / "g.nfg").write_text("NFG 1 R"), ["g.nfg"], "unknown games file type '.nfg'"),
        (lambda p: np.save(p / "g.npy", _games(0, 2, (3, 3))), ["g.npy", "--chunk", "0"], "--chunk"),
        (lambda p: np.save(p / "g.npy", _games(0, 2, (3, 3))), ["g.npy", "--selection", "zz"], "zz"),
    ],
)
def test_cli_solve_batch_rejects_bad_input(tmp_path, capsys, setup, args, message):
    from hybrid_nes.cli import main

    setup(tmp_path)
    out = tmp_path / "results.npz"
    argv = ["solve-batch", str(tmp_path / args[0]), "--out", str(out), "--no-progress", *args[1:]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# Arguments: one dtype rule, unknown keywords, the model argument.


def test_complex_and_bool_games_follow_the_solvers_rule():
    game = _games(20, 1, (3, 3))[0]
    for call in (
        lambda g: pipeline.solve_exact(g, "ce", warm_start="cold"),
        lambda g: pipeline.solve_batch(g[None], "ce", warm_start="cold"),
        lambda g: pipeline.solve_batch([g], "ce", warm_start="cold"),
    ):
        with pytest.raises(TypeError, match="must be real"):
            call(game + 1j)
        ref = solvers.solve((game > 0).astype(np.float64), "ce")
        out = call(game > 0)
        sol = out[0] if isinstance(out, list) else out
        assert sol.ok
        np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-12)


@pytest.mark.parametrize("entry", ["solve_exact", "solve_batch"])
def test_unknown_keyword_is_a_type_error_naming_it(entry):
    games = _games(21, 2, (3, 3))
    call = getattr(pipeline, entry)
    arg = games[0] if entry == "solve_exact" else games
    with pytest.raises(TypeError, match="'modle'"):
        call(arg, "cce", "me", modle=None)
    with pytest.raises(ValueError, match="'mre'"):
        call(arg, "cce", "me", target=np.full((3, 3), 1 / 9))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"model": "cce"}, TypeError, "model must be an NESModel"),
        ({"model": 3}, TypeError, "model must be an NESModel"),
        ({"model": "ce-net", "warm_start": "nes"}, TypeError, "model"),
        ({"warm_options": {"snap": 0.1}}, TypeError, "warm_options"),
    ],
)
def test_bad_model_and_warm_options(kwargs, error, message):
    game = _games(22, 1, (3, 3))[0]
    with pytest.raises(error, match=message):
        pipeline.solve_exact(game, "cce", **kwargs)
    with pytest.raises(error, match=message):
        pipeline.solve_batch(game[None], "cce", **kwargs)


def test_a_model_that_would_be_ignored_is_refused():
    model = load_pretrained("cce")
    game = _games(23, 1, (3, 3))[0]
    for start in ("cold", None, np.zeros(6)):
        with pytest.raises(ValueError, match="model is only used for a NES warm start"):
            pipeline.solve_exact(game, "cce", warm_start=start, model=model)
    with pytest.raises(ValueError, match="CCE network"):
        pipeline.solve_exact(game, "ce", warm_start="nes", model=model)
    sol = pipeline.solve_exact(game, "cce", warm_start="nes", model=model)
    assert sol.ok and sol.info["warm_start"] == "nes"
