"""solvers.ratings and ``hybrid-nes rate``: ratings at an equilibrium, agents and tasks rated from scores."""

from __future__ import annotations

import importlib
import itertools
import json
import re

import numpy as np
import pytest

import solvers
from hybrid_nes.cli import main, read_score_table
from solvers.evaluation_game import evaluation_game
from solvers.ratings import conditional_gains, rate, ratings

# the module (``solvers.ratings`` the attribute is the re-exported function)
ratings_module = importlib.import_module("solvers.ratings")


def _brute_ratings(game: np.ndarray, joint: np.ndarray) -> list[np.ndarray]:
    """r_p(a') = sum_a sigma(a) (G_p(a', a_-p) - G_p(a)), one joint action at a time."""
    out = []
    for p in range(game.shape[0]):
        r = np.zeros(game.shape[p + 1])
        for dev in range(game.shape[p + 1]):
            for a in itertools.product(*map(range, joint.shape)):
                moved = a[:p] + (dev,) + a[p + 1:]
                r[dev] += joint[a] * (game[(p, *moved)] - game[(p, *a)])
        out.append(r)
    return out


def _brute_conditional(game: np.ndarray, joint: np.ndarray, p: int) -> np.ndarray:
    n = game.shape[p + 1]
    c = np.zeros((n, n))
    for a in itertools.product(*map(range, joint.shape)):
        for dev in range(n):
            moved = a[:p] + (dev,) + a[p + 1:]
            c[a[p], dev] += joint[a] * (game[(p, *moved)] - game[(p, *a)])
    return c


def _random_joint(shape: tuple[int, ...], seed: int) -> np.ndarray:
    joint = np.random.default_rng(seed).random(shape)
    return joint / joint.sum()


def test_ratings_and_conditional_gains_match_brute_force():
    rng = np.random.default_rng(0)
    game = rng.normal(size=(3, 2, 3, 4))
    joint = _random_joint((2, 3, 4), 1)
    got = ratings(game, joint)
    for p, expected in enumerate(_brute_ratings(game, joint)):
        np.testing.assert_allclose(got[p], expected, atol=1e-13)
        c = conditional_gains(game, joint, p)
        np.testing.assert_allclose(c, _brute_conditional(game, joint, p), atol=1e-13)
        np.testing.assert_allclose(c.sum(axis=0), got[p], atol=1e-13)  # the two conventions agree
    # away from an equilibrium some rating is positive
    assert max(r.max() for r in got) > 1e-3


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_ratings_at_a_solved_equilibrium_are_non_positive(concept):
    game = np.random.default_rng(2).normal(size=(3, 3, 4, 3))
    sol = solvers.solve(game, concept)
    assert sol.ok
    got = ratings(game, sol.joint)
    for p in range(3):
        assert got[p].max() <= 1e-7
        np.testing.assert_allclose(got[p], _brute_ratings(game, sol.joint)[p], atol=1e-12)
        c = conditional_gains(game, sol.joint, p)
        if concept == "cce":  # the CCE gap is the largest rating
            assert got[p].max() == pytest.approx(sol.gaps[p], abs=1e-12)
        else:  # the CE gap is the largest conditional gain
            assert c.max() == pytest.approx(sol.gaps[p], abs=1e-12)
            assert c.max() <= 1e-7
    assert min(r.min() for r in got) < -1e-3  # not all zero: the test can fail


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_exchangeable_agents_get_equal_ratings(concept):
    scores = np.random.default_rng(3).normal(size=(5, 6))
    game = evaluation_game(scores, "zscore")
    sol = solvers.solve(game, concept)
    raw = ratings(game, sol.joint)  # no symmetrising: the solver's joint as it is
    np.testing.assert_allclose(raw[1], raw[2], atol=1e-7)
    sym = ratings(game, sol.joint, symmetry=((1, 2),))
    np.testing.assert_array_equal(sym[1], sym[2])
    np.testing.assert_allclose(sym[1], raw[1], atol=1e-7)
    assert ratings(game, sol.joint, symmetry="auto")[1].tolist() == sym[1].tolist()


def test_rate_ranks_a_dominated_agent_last_and_a_dominant_one_first():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(6, 8))
    scores[2] = scores.max(axis=0) + 1.0  # best on every task
    scores[4] = scores.min(axis=0) - 1.0  # worst on every task
    names = [f"m{i}" for i in range(6)]
    for concept in ("cce", "ce"):
        r = rate(scores, "ptp", concept, agents=names)
        assert r.ok and r.symmetry == ((1, 2),) and r.symmetry_violation == 0.0
        assert r.joint_asymmetry < 1e-7
        order = r.agent_order()
        assert names[order[0]] == "m2" and names[order[-1]] == "m4"
        assert r.agent_marginal[4] < 1e-6 and r.agent_ratings[4] < -0.5
        assert r.agent_ratings[2] == pytest.approx(0.0, abs=1e-7)
        np.testing.assert_allclose([r.agent_marginal.sum(), r.task_marginal.sum()], 1.0)
        assert np.all(r.agent_ratings <= 1e-7) and np.all(r.task_ratings <= 1e-7)
        np.testing.assert_allclose(r.task_ratings, ratings(r.game, r.solution.joint)[0], atol=1e-12)
        data = json.loads(json.dumps(r.to_dict()))
        assert [a["name"] for a in data["agents"]][:1] == ["m2"] and data["status"] == "optimal"


def test_rate_symmetry_options():
    scores = np.random.default_rng(6).normal(size=(4, 5))
    plain = rate(scores, "rank", "ce", symmetry=None)
    assert plain.symmetry == () and np.isnan(plain.symmetry_violation)
    raw = ratings(plain.game, plain.solution.joint)
    np.testing.assert_allclose(plain.agent_ratings, 0.5 * (raw[1] + raw[2]), atol=1e-15)
    assert json.loads(json.dumps(plain.to_dict()))["symmetry_violation"] is None
    explicit = rate(scores, "rank", "ce", symmetry=[(1, 2)])
    assert explicit.symmetry == ((1, 2),)
    np.testing.assert_allclose(explicit.agent_ratings, plain.agent_ratings, atol=1e-7)
    with pytest.raises(ValueError, match=r"players 0 and 1 are not exchangeable: 5 vs 4 actions"):
        rate(scores, symmetry=((0, 1),))


def test_rate_orders_ties_by_marginal_not_by_rounding():
    scores = np.array([[0.71, 0.55, 0.62, 0.80], [0.65, 0.70, 0.58, 0.75], [0.40, 0.35, 0.45, 0.60],
                       [0.72, 0.50, 0.66, 0.70]])
    r = rate(scores, "ptp", "cce")
    # Several agents rated 0 up to what the certificate's tolerance (1e-8) leaves: ~1e-9.
    tied = np.flatnonzero(np.abs(r.agent_ratings) < 1e-7)
    assert tied.size >= 2
    order = [i for i in r.agent_order() if i in tied]
    assert np.all(np.diff(r.agent_marginal[order]) <= 0)


def test_ratings_bad_input():
    game = np.random.default_rng(5).normal(size=(2, 3, 3))
    with pytest.raises(ValueError, match=r"joint must have the game's action shape \(3, 3\)"):
        ratings(game, np.ones((3, 2)) / 6)
    with pytest.raises(ValueError, match=r"joint must be a distribution"):
        ratings(game, np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"symmetry must be None, 'auto' or player groups"):
        ratings(game, np.ones((3, 3)) / 9, symmetry="yes")
    with pytest.raises(ValueError, match=r"players 0 and 1 are not exchangeable"):
        ratings(game, np.ones((3, 3)) / 9, symmetry=((0, 1),))
    with pytest.raises(ValueError, match=r"player must be in 0\.\.1"):
        conditional_gains(game, np.ones((3, 3)) / 9, 2)
    with pytest.raises(ValueError, match=r"task 1: every agent scores"):
        rate(np.array([[1.0, 2.0], [3.0, 2.0]]))


# --- hybrid-nes rate -------------------------------------------------------------------------------

TABLE = """model,math,code,reasoning,chat
alpha,0.71,0.55,0.62,0.80
beta,0.65,0.70,0.58,0.75
gamma,0.40,0.35,0.45,0.60
delta,0.72,0.50,0.66,0.70
"""


def _write(tmp_path, text: str, name: str = "scores.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cli_json_matches_the_api(tmp_path, capsys):
    path = _write(tmp_path, TABLE)
    assert main(["rate", str(path), "--json", "--concept", "ce"]) == 0
    data = json.loads(capsys.readouterr().out)
    agents, tasks, scores = read_score_table(path)
    r = rate(np.array(scores), "ptp", "ce", agents=agents, tasks=tasks)
    assert data["status"] == "optimal" and data["concept"] == "ce" and data["players"] == ["task", "agent", "agent"]
    by_name = {a["name"]: a for a in data["agents"]}
    for i, name in enumerate(agents):
        assert by_name[name]["rating"] == pytest.approx(r.agent_ratings[i], abs=1e-9)
        assert by_name[name]["marginal"] == pytest.approx(r.agent_marginal[i], abs=1e-9)
    assert [a["rank"] for a in data["agents"]] == [1, 2, 3, 4]
    assert data["agents"][-1]["name"] == "gamma"  # worst on every task
    assert sorted(t["name"] for t in data["tasks"]) == ["chat", "code", "math", "reasoning"]


def test_cli_table_transposed_input_and_plot(tmp_path, capsys):
    path = _write(tmp_path, TABLE)
    plot = tmp_path / "out" / "ratings.png"
    assert main(["rate", str(path), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "status optimal (certified)" in text and "rank  agent" in text and "rank  task" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in plot.parent.iterdir()] == ["ratings.png"]  # no temporary file left
    # the same table with tasks as rows gives the same ratings
    agents, tasks, scores = read_score_table(path)
    rows = ["task," + ",".join(agents)] + [
        ",".join([t] + [str(scores[a][j]) for a in range(len(agents))]) for j, t in enumerate(tasks)]
    flipped = _write(tmp_path, "\n".join(rows) + "\n", "flipped.csv")
    assert main(["rate", str(flipped), "--tasks-as-rows", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["rate", str(path), "--tasks-as-columns", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["agents"] == second["agents"] and first["tasks"] == second["tasks"]


@pytest.mark.parametrize(
    ("text", "extra", "match"),
    [
        ("model,math,code\nalpha,0.7,x\nbeta,0.6,0.5\n", [], r"line 2, row 'alpha', column 'code': 'x' is not a number"),
        ("model,math,code\nalpha,0.7,\nbeta,0.6,0.5\n", [], r"column 'code': '' is not a number"),
        ("model,math,code\nalpha,0.7,0.4\nbeta,0.7,0.5\n", [], r"task 0 \('math'\): every agent scores 0.7"),
        ("model,math,code\nalpha,0.7,nan\nbeta,0.6,0.5\n", [], r"agent 0 \('alpha'\), task 1 \('code'\)\) is nan"),
        ("model,math,code\nalpha,0.7,0.4\n", [], r">= 2 agents"),
        ("model,math,code\nalpha,0.7\nbeta,0.6,0.5\n", [], r"line 2 has 2 cells, the header has 3"),
        ("model,math,math\nalpha,0.7,0.4\nbeta,0.6,0.5\n", [], r"duplicate column names \['math'\]"),
        (TABLE, ["--plot", "out.gif"], r"--plot must end in .png, .pdf or .svg"),
        (TABLE, ["--sd", "sd.csv"], r"--sd is used only with --normaliser winrate"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_problem(tmp_path, capsys, text, extra, match):
    path = _write(tmp_path, text)
    assert main(["rate", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hybrid-nes rate: ")
    assert re.search(match, err), err


def test_cli_missing_or_undecodable_file_exits_2(tmp_path, capsys):
    assert main(["rate", str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv" in capsys.readouterr().err
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"model,a,b\n\xff\xfe,1,2\n")
    assert main(["rate", str(binary)]) == 2
    assert capsys.readouterr().err.startswith("hybrid-nes rate: ")


def test_cli_winrate_with_sd_table(tmp_path, capsys):
    path = _write(tmp_path, TABLE)
    sd = _write(tmp_path, TABLE.replace("0.", "0.0"), "sd.csv")  # same names, smaller numbers
    assert main(["rate", str(path), "--normaliser", "winrate", "--sd", str(sd), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["normaliser"] == "winrate" and data["status"] == "optimal"
    bad = _write(tmp_path, TABLE.replace("delta", "epsilon"), "sd_bad.csv")
    assert main(["rate", str(path), "--normaliser", "winrate", "--sd", str(bad)]) == 2
    assert "names differ" in capsys.readouterr().err


def test_cli_exits_1_when_not_certified(tmp_path, capsys, monkeypatch):
    real = ratings_module.solve

    def starved(game, concept, selection, **options):
        options.update(method="gd", max_iter=1, polish=False)
        return real(game, concept, selection, **options)

    monkeypatch.setattr(ratings_module, "solve", starved)
    path = _write(tmp_path, TABLE)
    assert main(["rate", str(path)]) == 1
    assert "NOT certified" in capsys.readouterr().out
