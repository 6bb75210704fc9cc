"""The OpenSpiel adapter: JPSRO/PSRO meta-solvers, repeats, warm starts, bad input."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import solvers
import solvers.api
from hybrid_nes.integrations import _face_stage as face_stage
from hybrid_nes.integrations import openspiel as hos
from hybrid_nes.integrations._face_stage import FaceSolver, KnownFace, grown_face
from solvers import Selection, Solution, Status
from solvers.dual import dual_problem
from solvers.face import PRESOLVE_MIN_JOINTS, face_certified, minimal_face, minimal_face_auto
from solvers.gains import dense_gains
from solvers.selection import resolve_selection

HAVE_OPENSPIEL = importlib.util.find_spec("open_spiel") is not None
needs_openspiel = pytest.mark.skipif(
    not HAVE_OPENSPIEL, reason="open_spiel is not installed (pip install 'hybrid_nes[openspiel]')"
)

MG_TOL = 1e-6  # agreement with OpenSpiel's CVXPY Max Gini
CCE_TOL = 1e-8  # payoff units


def _record_jpsro(game_name: str, iterations: int, solver) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Meta-games (and repeats) that OpenSpiel's JPSRO produces with ``solver`` (name or callable)."""
    import pyspiel
    from open_spiel.python.algorithms import jpsro

    inner = jpsro.FLAG_TO_FUNC[solver] if isinstance(solver, str) else solver
    seen: list[tuple[np.ndarray, list[np.ndarray]]] = []

    def recorder(meta_game, per_player_repeats, ignore_repeats=False):
        seen.append((np.array(meta_game), [np.array(r) for r in per_player_repeats]))
        return inner(meta_game, per_player_repeats, ignore_repeats=ignore_repeats)

    jpsro.FLAG_TO_FUNC["_test_recorder"] = recorder
    try:
        jpsro.run_loop(
            pyspiel.load_game(game_name), game_name, iterations=iterations,
            train_meta_solver="_test_recorder", eval_meta_solver="uni",
        )
    finally:
        del jpsro.FLAG_TO_FUNC["_test_recorder"]
    return [(g, r) for g, r in seen if np.prod(g.shape[1:]) > 1]


@pytest.fixture(scope="module")
def kuhn_meta_games():
    """Kuhn poker meta-games from an mgcce-driven JPSRO run (late ones repeat policies)."""
    games = _record_jpsro("kuhn_poker", 9, "mgcce")
    assert any(np.any(r != 1) for _, reps in games for r in reps), "expected repeated policies"
    return games


@pytest.fixture(scope="module")
def kuhn3_meta_games():
    return _record_jpsro("kuhn_poker(players=3)", 2, "uni")


@pytest.fixture(scope="module")
def kuhn3_me_meta_games():
    """3-player Kuhn meta-games from an hn_mecce-driven run: ME joints with tiny entries."""
    return _record_jpsro("kuhn_poker(players=3)", 3, hos.meta_solver("hn_mecce"))


def _openspiel_solver(name):
    from open_spiel.python.algorithms import jpsro

    return jpsro.FLAG_TO_FUNC[name]


# ---------------------------------------------------------------------------------------
# Agreement with OpenSpiel on its own meta-games.


@needs_openspiel
@pytest.mark.parametrize("ignore_repeats", [False, True])
def test_mgcce_matches_openspiel(kuhn_meta_games, ignore_repeats):
    ours = hos.meta_solver("hn_mgcce")
    theirs = _openspiel_solver("mgcce")
    for game, repeats in kuhn_meta_games:
        dist, meta = ours(game, repeats, ignore_repeats=ignore_repeats)
        ref, _ = theirs(game, repeats, ignore_repeats=ignore_repeats)
        assert meta["certified"], meta["status"]
        np.testing.assert_allclose(dist, ref, atol=MG_TOL, err_msg=f"shape {game.shape}")


@needs_openspiel
def test_mgce_matches_openspiel(kuhn_meta_games):
    ours = hos.meta_solver("hn_mgce")
    theirs = _openspiel_solver("mgce")
    for game, repeats in kuhn_meta_games:
        dist, meta = ours(game, repeats)
        ref, _ = theirs(game, repeats)
        np.testing.assert_allclose(dist, ref, atol=MG_TOL, err_msg=f"shape {game.shape}")
        assert meta["gap"] <= CCE_TOL


@needs_openspiel
def test_mgcce_matches_openspiel_three_players(kuhn3_meta_games):
    ours = hos.meta_solver("hn_mgcce")
    theirs = _openspiel_solver("mgcce")
    for game, repeats in kuhn3_meta_games:
        dist, _ = ours(game, repeats)
        ref, _ = theirs(game, repeats)
        np.testing.assert_allclose(dist, ref, atol=MG_TOL, err_msg=f"shape {game.shape}")


@needs_openspiel
@pytest.mark.parametrize("name", ["hn_mecce", "hn_mece"])
def test_max_entropy_is_equilibrium(kuhn_meta_games, kuhn3_meta_games, name):
    solver = hos.meta_solver(name)
    concept = hos.JPSRO_META_SOLVERS[name].concept
    for game, repeats in kuhn_meta_games + kuhn3_meta_games:
        dist, meta = solver(game, repeats)
        assert meta["certified"], meta["status"]
        assert np.all(dist >= 0) and abs(dist.sum() - 1) < 1e-12
        assert hos.equilibrium_gaps(game, dist, concept).max() <= CCE_TOL
        assert meta["gap"] == pytest.approx(hos.equilibrium_gaps(game, dist, concept).max())


@needs_openspiel
def test_sparsify_survives_jpsro_cleanup(kuhn3_me_meta_games, kuhn_meta_games):
    dense = hos.meta_solver("hn_mecce", sparsify=0.0)
    sparse = hos.meta_solver("hn_mecce")
    needed = 0
    for game, repeats in kuhn3_me_meta_games + kuhn_meta_games:
        _, meta_dense = dense(game, repeats)
        dist, meta = sparse(game, repeats)
        # What JPSRO actually uses: entries below 1e-8 zeroed, renormalised.
        used = hos.drop_below(dist, hos.JPSRO_DIST_TOL)
        assert hos.equilibrium_gaps(game, used, "cce").max() <= 1e-10
        assert meta["jpsro_gap"] == pytest.approx(hos.equilibrium_gaps(game, used, "cce").max(), abs=1e-15)
        if meta_dense["jpsro_gap"] > 1e-10:  # the clean-up breaks the dense ME joint
            needed += 1
            assert meta["sparsified"] and meta["dropped"] > 0
            assert not np.any((dist > 0) & (dist < hos.JPSRO_DIST_TOL))
    assert needed >= 1, "expected at least one meta-game whose ME joint JPSRO's clean-up breaks"


# ---------------------------------------------------------------------------------------
# Real JPSRO / PSRO runs (tiny).


@needs_openspiel
@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_register_and_run_jpsro(concept):
    import pyspiel
    from open_spiel.python.algorithms import jpsro

    train, other = f"hn_me{concept}", f"hn_mre{concept}"
    created = hos.register([train, other], warm_start="previous")
    assert jpsro.FLAG_TO_FUNC[train] is created[train]
    assert other in jpsro.META_SOLVERS
    dists, games = [], []

    metas = []

    def callback(iteration, repeats, policies, jp, jr, meta_games, train_dists, *rest):
        dists.append(train_dists[-1])
        games.append(meta_games[-1])
        metas.append(created[train].last_meta)
        return rest[-1]

    jpsro.run_loop(
        pyspiel.load_game("kuhn_poker"), "kuhn_poker", iterations=3, target_equilibrium=concept,
        train_meta_solver=train, eval_meta_solver=other, callback=callback,
    )
    for dist, game in zip(dists, games, strict=True):
        assert dist.shape == game.shape[1:]
        assert hos.equilibrium_gaps(game, dist, concept).max() <= 1e-7  # after JPSRO's 1e-8 clean-up
    assert all(meta["certified"] for meta in metas)
    # Each solve starts from the last one's duals unless facial reduction produced them.
    for before, after in zip(metas[:-1], metas[1:], strict=True):
        expected = "previous" if hos.reusable_duals(before["method"]) else "cold"
        assert after["warm_start"] == expected, (before["method"], after["warm_start"])
    assert any(meta["warm_start"] == "previous" for meta in metas)


@needs_openspiel
def test_psro_v2_meta_strategy_method():
    import pyspiel
    from open_spiel.python import policy
    from open_spiel.python.algorithms.psro_v2 import best_response_oracle, psro_v2

    np.random.seed(0)  # PSRO estimates the meta-game by sampling
    game = pyspiel.load_game("kuhn_poker")
    method = hos.psro_meta_strategy("cce", "me")
    solver = psro_v2.PSROSolver(
        game, best_response_oracle.BestResponseOracle(game=game, best_response_backend="cpp"),
        sims_per_entry=20, initial_policies=[policy.TabularPolicy(game)] * 2,
        meta_strategy_method=method, sample_from_marginals=False,
        training_strategy_selector="probabilistic",
    )
    for _ in range(2):
        solver.iteration()
    marginals = solver.get_meta_strategies()
    tables = np.stack(solver.get_meta_game())
    assert len(marginals) == 2
    for p, m in enumerate(marginals):
        assert m.shape == (tables.shape[p + 1],)
        assert abs(m.sum() - 1) < 1e-12
    joint = solver.get_and_update_non_marginalized_meta_strategies()
    assert joint.shape == tables.shape[1:]
    assert hos.equilibrium_gaps(tables, joint, "cce").max() <= CCE_TOL


class _FakePSRO:
    def __init__(self, tables):
        self._tables = tables

    def get_meta_game(self):
        return [np.copy(t) for t in self._tables]


def test_psro_callable_contract():
    rng = np.random.default_rng(1)
    tables = list(rng.normal(size=(3, 2, 3, 2)))
    method = hos.psro_meta_strategy("ce", "me")
    marginals = method(_FakePSRO(tables))
    marginals2, joint = method(_FakePSRO(tables), return_joint=True)
    assert [m.shape for m in marginals] == [(2,), (3,), (2,)]
    assert joint.shape == (2, 3, 2)
    for p, m in enumerate(marginals2):
        np.testing.assert_allclose(m, joint.sum(axis=tuple(q for q in range(3) if q != p)))
    assert hos.equilibrium_gaps(np.stack(tables), joint, "ce").max() <= CCE_TOL


# ---------------------------------------------------------------------------------------
# Repeats, warm starts, MRE targets.


def test_repeats_equal_expanded_game():
    rng = np.random.default_rng(2)
    game = rng.normal(size=(2, 3, 4))
    repeats = [np.array([1, 3, 1]), np.array([2, 1, 1, 1])]
    for name in ("hn_mecce", "hn_mece", "hn_mgcce"):
        dist, _ = hos.meta_solver(name)(game, repeats)
        expanded = hos.expand_meta_game(game, repeats)
        ones = [np.ones(n) for n in expanded.shape[1:]]
        dist_expanded, _ = hos.meta_solver(name)(expanded, ones)
        np.testing.assert_allclose(dist, hos.unexpand_joint(dist_expanded, repeats), atol=1e-6, err_msg=name)


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_meta_game_gains_match_solvers(concept):
    game = np.random.default_rng(11).normal(size=(3, 2, 4, 3))
    ours, ref = hos.meta_game_gains(game, concept), solvers.gains(game, concept)
    np.testing.assert_array_equal(ours.rows, ref.rows)
    np.testing.assert_array_equal(ours.player, ref.player)
    np.testing.assert_allclose(ours.values, ref.values, rtol=0, atol=1e-15)


# The games of the certificate checks: 2 and 3 players, and a player with one action
# (no CE rows: its gap is 0 by convention).
CERTIFICATE_SHAPES = [(2, 3, 4), (3, 2, 3, 2), (2, 1, 4)]


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize("shape", CERTIFICATE_SHAPES)
def test_equilibrium_gaps_equal_solvers_certificate(shape, concept):
    # Independent of the kernels the adapter uses: solvers.dual.certificate is the dense
    # NumPy reference. Its gaps of sigma(alpha) at random duals are normalised units.
    from solvers.dual import certificate, dual_problem

    rng = np.random.default_rng(sum(shape))
    game = rng.normal(size=shape)
    norm = solvers.normalise(game)
    problem = dual_problem(norm, concept, solvers.resolve_selection(solvers.Selection.me(), norm))
    for _ in range(3):
        alpha = rng.exponential(size=problem.num_constraints)
        cert = certificate(problem, alpha)
        joint = cert.joint.reshape(shape[1:])
        np.testing.assert_allclose(hos.equilibrium_gaps(norm.payoffs, joint, concept), cert.gaps, rtol=0, atol=1e-12)
        np.testing.assert_allclose(hos.equilibrium_gaps(game, joint, concept) * norm.scale, cert.gaps, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["hn_mecce", "hn_mece", "hn_mwce", "hn_mgcce"])
def test_meta_solver_gaps_equal_the_solution_certificate(name):
    # Without repeats or sparsifying, the distribution is the solve's joint (cleaned to
    # sum to 1), so the adapter's gaps are the Solution's own certificate.
    for shape in CERTIFICATE_SHAPES:
        game = np.random.default_rng(len(shape)).normal(size=shape)
        dist, meta = hos.meta_solver(name)(game, [np.ones(n) for n in shape[1:]])
        sol = meta["solution"]
        assert not meta["sparsified"] and meta["solution"] is meta["dense_solution"]
        np.testing.assert_allclose(meta["gaps"], sol.gaps, rtol=0, atol=1e-12)
        assert meta["gap"] == pytest.approx(sol.gap, abs=1e-12)
        assert meta["normalised_gap"] == pytest.approx(sol.normalised_gap, abs=1e-12)
        np.testing.assert_allclose(dist, sol.joint, rtol=0, atol=1e-12)


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_pad_duals_equal_related_map_duals(concept):
    # "previous" warm starts pad through solvers.related.map_duals; the public helper agrees.
    from solvers.related import map_duals

    game = np.random.default_rng(12).normal(size=(2, 5, 4))
    sol = solvers.solve(game[:, :3, :2], concept, "me")
    np.testing.assert_array_equal(
        hos.pad_duals(np.maximum(sol.duals, 0.0), (3, 2), (5, 4), concept), map_duals(sol, (5, 4), concept)
    )


def test_reusable_duals():
    assert hos.reusable_duals("newton") and hos.reusable_duals("gd+newton")
    assert not hos.reusable_duals("newton+face+newton")
    assert not hos.reusable_duals("cvxpy+clarabel") and not hos.reusable_duals("trivial")


def test_pad_duals_keeps_old_blocks():
    rng = np.random.default_rng(3)
    for concept in ("cce", "ce"):
        old, new = (2, 3), (3, 5)
        duals = rng.random(solvers.num_constraints(old, concept))
        padded = hos.pad_duals(duals, old, new, concept)
        assert padded.shape == (solvers.num_constraints(new, concept),)
        for p, (block_old, block_new) in enumerate(zip(
            solvers.duals_by_player(duals, old, concept),
            solvers.duals_by_player(padded, new, concept), strict=True,
        )):
            index = tuple(slice(0, old[p]) for _ in range(block_old.ndim))
            np.testing.assert_array_equal(block_new[index], block_old)
            assert block_new.sum() == pytest.approx(block_old.sum())


def test_warm_start_from_previous_iteration():
    rng = np.random.default_rng(4)
    big = rng.normal(size=(2, 5, 4))
    solver = hos.meta_solver("hn_mecce", warm_start="previous")
    _, first = solver(big[:, :4, :3], [np.ones(4), np.ones(3)])
    _, grown = solver(big, [np.ones(5), np.ones(4)])
    assert first["warm_start"] == "cold" and grown["warm_start"] == "previous"
    other = rng.normal(size=(2, 6, 4))  # does not extend the last game
    _, fresh = solver(other, [np.ones(6), np.ones(4)])
    assert fresh["warm_start"] == "cold"
    cold, meta = hos.meta_solver("hn_mecce")(big, [np.ones(5), np.ones(4)])
    assert meta["warm_start"] == "cold"  # the default
    warm, _ = solver(big, [np.ones(5), np.ones(4)])
    np.testing.assert_allclose(warm, cold, atol=1e-7)


def test_warm_start_hook_receives_padded_duals():
    rng = np.random.default_rng(5)
    big = rng.normal(size=(2, 4, 4))
    calls = []

    def hook(game, concept, selection, previous):
        calls.append((game.shape, concept, None if previous is None else previous.shape))
        return None if previous is None else np.zeros_like(previous)

    solver = hos.meta_solver("hn_mece", warm_start="previous", warm_start_hook=hook)
    _, first = solver(big[:, :3, :3], [np.ones(3), np.ones(3)])
    _, second = solver(big, [np.ones(4), np.ones(4)])
    assert calls == [((2, 3, 3), "ce", None), ((2, 4, 4), "ce", (24,))]
    assert first["warm_start"] == "cold" and second["warm_start"] == "hook"


class _FakeNES:
    """Stands in for ``hybrid_nes.NESModel``: predicts the exact duals, 2 players only."""

    concept = "cce"

    def __init__(self):
        self.calls = 0

    def predict_duals(self, games, selection, units="normalised"):
        assert units == "payoff"
        if games.shape[1] != 2:
            raise ValueError("untrained player count")
        self.calls += 1
        return np.stack([solvers.solve(g, "cce", selection).duals for g in games])


def test_nes_warm_start_hook():
    rng = np.random.default_rng(10)
    model = _FakeNES()
    solver = hos.meta_solver("hn_mecce", warm_start_hook=hos.nes_warm_start(model))
    dist, meta = solver(rng.normal(size=(2, 4, 4)), [np.ones(4), np.ones(4)])
    assert model.calls == 1 and meta["warm_start"] == "hook" and meta["certified"]
    assert meta["iterations"] <= 2  # started at the optimum
    _, meta3 = solver(rng.normal(size=(3, 2, 2, 2)), [np.ones(2)] * 3)  # the network declines
    assert model.calls == 1 and meta3["warm_start"] == "cold" and meta3["certified"]
    _, meta_mg = hos.meta_solver("hn_mgcce", warm_start_hook=hos.nes_warm_start(model))(
        rng.normal(size=(2, 3, 3)), [np.ones(3), np.ones(3)]
    )
    assert model.calls == 1 and meta_mg["warm_start"] == "cold"


def test_mre_target_extends_previous_joint():
    rng = np.random.default_rng(6)
    big = rng.normal(size=(2, 4, 3))
    solver = hos.meta_solver("hn_mrecce", target_mix=0.25)
    first, _ = solver(big[:, :3, :], [np.ones(3), np.ones(3)])
    second, _ = solver(big, [np.ones(4), np.ones(3)])
    target = 0.75 * hos.extend_joint(first, (4, 3)) + 0.25 / 12
    expected = solvers.solve(big, "cce", solvers.Selection.mre(target=target / target.sum()))
    np.testing.assert_allclose(second, expected.joint, atol=1e-7)
    me, _ = hos.meta_solver("hn_mecce")(big, [np.ones(4), np.ones(3)])
    np.testing.assert_allclose(first, hos.meta_solver("hn_mecce")(big[:, :3, :], [np.ones(3), np.ones(3)])[0], atol=1e-7)
    assert np.abs(second - me).max() > 1e-4  # the target matters


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_max_welfare_beats_max_entropy_welfare(concept):
    rng = np.random.default_rng(9)
    game = rng.normal(size=(2, 4, 4))
    repeats = [np.array([1, 2, 1, 1]), np.ones(4)]
    me, _ = hos.meta_solver(f"hn_me{concept}")(game, repeats)
    mw, meta = hos.meta_solver(f"hn_mw{concept}")(game, repeats)
    welfare = game.sum(axis=0)
    assert meta["certified"] and meta["gap"] <= CCE_TOL
    assert np.sum(mw * welfare) > np.sum(me * welfare) + 1e-3


def test_same_meta_game_twice_is_cached():
    rng = np.random.default_rng(7)
    game = rng.normal(size=(2, 3, 3))
    solver = hos.meta_solver("hn_mwcce")
    dist, meta = solver(game, [np.ones(3), np.ones(3)])
    again, meta2 = solver(game, [np.ones(3), np.ones(3)])
    np.testing.assert_array_equal(dist, again)
    assert not meta["cached"] and meta2["cached"]


def test_single_joint_meta_game():
    dist, meta = hos.meta_solver("hn_mecce")(np.zeros((3, 1, 1, 1)), [[1], [1], [1]])
    assert dist.shape == (1, 1, 1) and dist.item() == 1.0 and meta["certified"]


# ---------------------------------------------------------------------------------------
# Bad input and failures.


def test_nan_meta_game_is_rejected():
    game = np.zeros((2, 2, 2))
    game[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="meta_game contains NaN"):
        hos.meta_solver("hn_mecce")(game, [[1, 1], [1, 1]])


@pytest.mark.parametrize(
    "repeats, match",
    [
        ([[1, 1]], "has 1 entries but meta_game has 2 players"),
        ([[1, 1], [1, 1, 1]], r"per_player_repeats\[1\] has 3 counts but player 1 has 2"),
        ([[1, 0], [1, 1]], "positive finite counts"),
    ],
)
def test_mismatched_repeats_are_rejected(repeats, match):
    with pytest.raises(ValueError, match=match):
        hos.meta_solver("hn_mecce")(np.zeros((2, 2, 2)), repeats)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown meta-solver name 'hn_foo'"):
        hos.meta_solver("hn_foo")
    with pytest.raises(ValueError, match="unknown selection preset 'maxent'"):
        hos.make_meta_solver("cce", "maxent")
    with pytest.raises(ValueError, match="unknown concept 'nash'"):
        hos.make_meta_solver("nash", "me")


def test_uncertified_solve_falls_back_to_cvxpy(monkeypatch):
    real = solvers.solve
    methods = []

    def broken(game, concept, selection, **kw):
        methods.append(kw["method"])
        sol = real(game, concept, selection, **kw)
        if kw["method"] == "cvxpy":
            return sol
        garbage = np.full(sol.joint.shape, 1.0 / sol.joint.size)
        return Solution(
            garbage, solvers.marginals(garbage), sol.duals, sol.eps, 1.0, sol.gaps, sol.scale,
            1.0, sol.objective, 1, {}, Status.MAX_ITER, sol.concept, sol.selection, "newton",
        )

    monkeypatch.setattr(solvers, "solve", broken)
    game = np.random.default_rng(8).normal(size=(2, 3, 3))
    dist, meta = hos.meta_solver("hn_mecce")(game, [np.ones(3), np.ones(3)])
    assert methods == ["auto", "cvxpy"]
    assert meta["fallback"] and meta["fast_status"] == "max_iter"
    assert meta["method"].startswith("cvxpy")
    assert hos.equilibrium_gaps(game, dist, "cce").max() <= 1e-7


def test_register_without_openspiel_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_spiel.python.algorithms", None)
    with pytest.raises(ImportError, match=r"pip install 'hybrid_nes\[openspiel\]'"):
        hos.register()


# ---------------------------------------------------------------------------------------
# The returned distribution is certified itself (3-player Kuhn poker CE, 10x10x10).


KUHN3_CE_10 = Path(__file__).parent / "data" / "kuhn3_ce_meta_10x10x10.npy"


def _returned_normalised_gap(game: np.ndarray, dist: np.ndarray, concept: str) -> float:
    """The gap of ``dist`` from ``solvers``' dense constraint matrix and normalisation."""
    g = solvers.gains(game, concept)
    expected = dense_gains(g) @ dist.reshape(-1)
    gaps = np.array([expected[g.player == p].max() for p in range(game.shape[0])])
    return float(np.max(gaps * solvers.normalise(game).scale))


@pytest.fixture(scope="module")
def kuhn3_ce_10():
    """The 10x10x10 meta-game of an hn_mece JPSRO run on 3-player Kuhn poker (iteration
    9, no repeated policies): its ME-CE's first sparsified re-solve leaves an entry at
    9.8e-9, which JPSRO's clean-up threshold drops (7.7e-9 of normalised gap)."""
    game = np.load(KUHN3_CE_10)
    return game, [np.ones(n) for n in game.shape[1:]]


@pytest.fixture
def face_after_60(monkeypatch):
    """``solvers.policy.face_after`` 60: the Kuhn meta-game's ME-CE then takes the facial-
    reduction LP (at the default 100 its Newton converges without it), which the face tests
    below need."""
    import dataclasses

    import solvers.policy

    monkeypatch.setattr(solvers.policy, "DEFAULT_POLICY",
                        dataclasses.replace(solvers.policy.DEFAULT_POLICY, face_after=60))


def test_kuhn3_ce_sparsified_distribution_is_within_tol(kuhn3_ce_10):
    game, repeats = kuhn3_ce_10
    solver = hos.meta_solver("hn_mece")
    tol = solver.options.tol
    dist, meta = solver(game, repeats)
    returned = _returned_normalised_gap(game, dist, "ce")
    assert meta["sparsified"] and meta["dropped"] > 400
    assert meta["certified"] and meta["status"] == "optimal"
    assert returned <= tol  # was 7.7e-9 with tol 1e-10
    # Two summation orders of the same ~1e-12 gap: they differ by rounding (2.4e-17 seen).
    assert meta["normalised_gap"] == pytest.approx(returned, rel=1e-6, abs=1e-15)
    assert meta["gap"] == pytest.approx(hos.equilibrium_gaps(game, dist, "ce").max(), abs=1e-17)
    # meta["solution"] is the solve dist comes from: its figure is dist's (was 1.9e-11 vs 7.7e-9).
    assert abs(meta["solution"].normalised_gap - returned) <= tol
    assert meta["dense_solution"].ok
    # JPSRO's clean-up leaves it unchanged, so what JPSRO uses is within tol too.
    assert not np.any((dist > 0) & (dist < hos.JPSRO_DIST_TOL))
    assert meta["jpsro_gap"] * solvers.normalise(game).scale.max() <= tol


def test_kuhn3_ce_one_sparsify_round_keeps_the_entry_rather_than_break_tol(kuhn3_ce_10, monkeypatch):
    # One re-solve only: dropping its 9.8e-9 entry would cost 7.7e-9 > tol, so it is
    # kept (sparsify less) and JPSRO's clean-up gap is reported as it is.
    monkeypatch.setattr(hos, "SPARSIFY_ROUNDS", 1)
    game, repeats = kuhn3_ce_10
    solver = hos.meta_solver("hn_mece")
    dist, meta = solver(game, repeats)
    assert meta["sparsified"] and meta["certified"]
    assert _returned_normalised_gap(game, dist, "ce") <= solver.options.tol
    assert np.any((dist > 1e-9) & (dist < hos.JPSRO_DIST_TOL))
    assert meta["jpsro_gap"] == pytest.approx(
        hos.equilibrium_gaps(game, hos.drop_below(dist, hos.JPSRO_DIST_TOL), "ce").max(), abs=1e-17
    )
    assert meta["jpsro_gap"] > solver.options.tol


def test_kuhn3_ce_without_sparsify_rounds_returns_the_dense_joint(kuhn3_ce_10, monkeypatch):
    monkeypatch.setattr(hos, "SPARSIFY_ROUNDS", 0)
    game, repeats = kuhn3_ce_10
    solver = hos.meta_solver("hn_mece")
    dist, meta = solver(game, repeats)
    assert not meta["sparsified"] and meta["certified"]
    assert meta["solution"] is meta["dense_solution"]
    np.testing.assert_allclose(dist, hos.clean_joint(meta["solution"].joint), atol=0)
    assert _returned_normalised_gap(game, dist, "ce") <= solver.options.tol


def test_meta_solver_options_refuse_preset_parameters_up_front():
    with pytest.raises(TypeError, match="'modle'"):
        hos.make_meta_solver("cce", "me", modle=1)
    with pytest.raises(ValueError, match="eps_hat would be ignored"):
        hos.make_meta_solver("cce", "ms", eps_hat=0.1)
    with pytest.raises(ValueError, match="'mre'"):
        hos.make_meta_solver("cce", "me", target=np.full((2, 2), 0.25))
    assert hos.make_meta_solver("cce", "mw", mu=2.0).options.selection_params == {"mu": 2.0}


def test_repeat_weights_are_the_target_of_me_with_repeats():
    # ME with repeated policies is MRE to the repeat weights (module docstring); the
    # preset refuses target=, so the meta-solver sets it on the Selection.
    game = np.random.default_rng(5).normal(size=(2, 3, 2))
    repeats = [np.array([2.0, 1.0, 1.0]), np.array([1.0, 3.0])]
    dist, meta = hos.meta_solver("hn_mecce")(game, repeats)
    ref = solvers.solve(game, "cce", "mre", target=hos.repeat_weights(repeats), tol=1e-10)
    np.testing.assert_allclose(dist, hos.clean_joint(ref.joint), atol=1e-9)
    assert meta["solution"].selection.name == "me"


# ---------------------------------------------------------------------------------------
# The facial-reduction face kept for the clean-up re-solves (_face_stage.FaceSolver).


#: The module whose ``refine_batch`` runs the library's facial-reduction LP.
LIBRARY_FACE = sys.modules[solvers.api.refine_batch.__module__]


def _lp_face(game: np.ndarray, concept: str = "ce"):
    norm = solvers.normalise(game)
    return minimal_face(dual_problem(norm, concept, resolve_selection(Selection.me(), norm)))


def test_face_solver_matches_solve_and_keeps_the_lp_face(kuhn3_ce_10, monkeypatch, face_after_60):
    game, _ = kuhn3_ce_10
    reference = solvers.solve(game, "ce", "me")
    assert reference.info["face"]  # the game needs facial reduction

    def no_fallback(*args, **kwargs):
        raise AssertionError("FaceSolver handed the solve to solvers.solve")

    monkeypatch.setattr(solvers, "solve", no_fallback)
    keeper = FaceSolver()
    sol = keeper(game, "ce", "me")
    assert sol.status is Status.OPTIMAL and sol.info["face"] and "face" in sol.method
    assert np.abs(sol.joint - reference.joint).max() <= 1e-8
    assert np.all(sol.duals >= 0) and np.all(np.isfinite(sol.info["restricted_duals"]))
    lp = _lp_face(game)
    assert np.array_equal(keeper.face.support, lp.support)
    norm = solvers.normalise(game)
    assert face_certified(dual_problem(norm, "ce", resolve_selection(Selection.me(), norm)), keeper.face)


def test_reused_face_solves_another_target_without_the_lp(kuhn3_ce_10, monkeypatch, face_after_60):
    game, _ = kuhn3_ce_10
    keeper = FaceSolver()
    keeper(game, "ce", "me")
    target = np.random.default_rng(3).uniform(0.5, 1.5, size=game.shape[1:])
    selection = Selection.mre(target=target / target.sum())
    reference = solvers.solve(game, "ce", selection)

    def no_lp(*args, **kwargs):
        raise AssertionError("the facial-reduction LP ran")

    monkeypatch.setattr(face_stage, "support_face", no_lp)
    monkeypatch.setattr(LIBRARY_FACE, "support_face", no_lp)
    sol = FaceSolver(reuse=keeper.face)(game, "ce", selection, face="always")
    assert sol.status is Status.OPTIMAL and sol.method == "face+newton"
    assert np.abs(sol.joint - reference.joint).max() <= 1e-8
    assert sol.gap * solvers.normalise(game).scale.max() <= 1e-7


def test_stale_face_is_rejected_and_the_lp_runs(kuhn3_ce_10, monkeypatch):
    game, _ = kuhn3_ce_10
    reference = solvers.solve(game, "ce", "me")
    true_face = _lp_face(game)
    # A face that misses the optimum's heaviest joint action: not this polytope's face.
    support = true_face.support.copy()
    support[np.argmax(reference.joint.reshape(-1))] = False
    stale = true_face._replace(support=support)
    calls = []

    def counted(real_lp):
        def run(*args, **kwargs):
            calls.append(1)
            return real_lp(*args, **kwargs)
        return run

    monkeypatch.setattr(LIBRARY_FACE, "support_face", counted(LIBRARY_FACE.support_face))
    monkeypatch.setattr(face_stage, "support_face", counted(face_stage.support_face))
    sol = FaceSolver(reuse=stale)(game, "ce", "me", face="always")
    assert calls  # the stale face was not trusted: an LP ran
    assert sol.status is Status.OPTIMAL
    assert np.abs(sol.joint - reference.joint).max() <= 1e-8


def test_meta_solver_sparsify_reuses_the_dense_face(kuhn3_ce_10, monkeypatch, face_after_60):
    game, repeats = kuhn3_ce_10
    calls = []
    real_lp = face_stage.support_face

    def counted(*args, **kwargs):
        calls.append(1)
        return real_lp(*args, **kwargs)

    monkeypatch.setattr(face_stage, "support_face", counted)
    monkeypatch.setattr(LIBRARY_FACE, "support_face", counted)
    dist, meta = hos.meta_solver("hn_mece", warm_start="cold")(game, repeats)
    assert meta["sparsified"] and meta["certified"]
    assert len(calls) == 1  # the dense solve's LP only; its re-solves run on that face
    assert meta["solution"].method == "face+newton"
    assert _returned_normalised_gap(game, dist, "ce") <= hos.meta_solver("hn_mece").options.tol


def _me_problem(game: np.ndarray):
    norm = solvers.normalise(game)
    return dual_problem(norm, "ce", resolve_selection(Selection.me(), norm)), norm.scale


def test_grown_face_maps_the_previous_face_and_shrinks_the_lp(kuhn3_ce_10, monkeypatch):
    game, _ = kuhn3_ce_10
    old = game[:, :9, :9, :9]  # JPSRO's previous meta-game: the new policies come last
    old_problem, old_scale = _me_problem(old)
    known = KnownFace(minimal_face(old_problem), (9, 9, 9), old_scale)
    problem, scale = _me_problem(game)
    sizes = []
    real_lp = face_stage.support_face

    def sized(sub, *args, **kwargs):
        sizes.append(sub.rows.shape[0])
        return real_lp(sub, *args, **kwargs)

    monkeypatch.setattr(face_stage, "support_face", sized)
    fc = grown_face(problem, "ce", (10, 10, 10), scale, known)
    assert fc is not None and face_certified(problem, fc)
    assert len(sizes) == 1  # one LP, on the smaller problem
    assert sizes[0] < 0.8 * game[0].size  # the LP ran on the joints the mapped certificate left
    assert np.array_equal(fc.support, minimal_face(problem).support)
    # The meta-game solved on it: same joint as the library, the face from the mapping.
    reference = solvers.solve(game, "ce", "me")
    sol = FaceSolver(grown=known)(game, "ce", "me", face="always")
    assert sol.status is Status.OPTIMAL and sol.info["face_source"] == "grown"
    assert np.abs(sol.joint - reference.joint).max() <= 1e-8


def test_grown_face_lifts_new_joints_the_mapped_certificate_pushes_below_zero(kuhn3_ce_10, monkeypatch):
    game, _ = kuhn3_ce_10
    old_problem, old_scale = _me_problem(game[:, :8, :8, :8])
    problem, scale = _me_problem(game[:, :9, :9, :9])
    repairs = []
    real = face_stage._repaired

    def watched(*args, **kwargs):
        repairs.append(real(*args, **kwargs))
        return repairs[-1]

    monkeypatch.setattr(face_stage, "_repaired", watched)
    fc = grown_face(problem, "ce", (9, 9, 9), scale, KnownFace(minimal_face(old_problem), (8, 8, 8), old_scale))
    assert len(repairs) == 1 and repairs[0] is not None  # some new joints needed the new rows
    assert fc is not None and face_certified(problem, fc)
    assert np.array_equal(fc.support, minimal_face(problem).support)


def test_grown_face_of_another_game_is_not_trusted(kuhn3_ce_10):
    game, _ = kuhn3_ce_10
    other = game[:, :9, :9, :9].copy()
    other[0] = np.random.default_rng(0).permutation(other[0].reshape(-1)).reshape(other[0].shape)
    other_problem, other_scale = _me_problem(other)
    known = KnownFace(minimal_face(other_problem), (9, 9, 9), other_scale)
    problem, scale = _me_problem(game)
    fc = grown_face(problem, "ce", (10, 10, 10), scale, known)
    assert fc is None or face_certified(problem, fc)
    reference = solvers.solve(game, "ce", "me")
    sol = FaceSolver(grown=known)(game, "ce", "me", face="always")
    assert sol.status is Status.OPTIMAL
    assert np.abs(sol.joint - reference.joint).max() <= 1e-8


def test_presolved_face_lp_finds_the_same_face(kuhn3_ce_10):
    game, _ = kuhn3_ce_10
    assert game[0].size >= PRESOLVE_MIN_JOINTS  # HiGHS's presolve is on for this LP
    norm = solvers.normalise(game)
    problem = dual_problem(norm, "ce", resolve_selection(Selection.me(), norm))
    plain, presolved = minimal_face(problem), minimal_face_auto(problem)
    assert presolved.feasible and presolved.support.sum() < presolved.support.size
    assert np.array_equal(presolved.support, plain.support)
    assert np.array_equal(presolved.equalities, plain.equalities)
    # Its certificate proves the joints off the support zero: M'^T y = 0 on it, >= ~1 off it.
    g = solvers.gains(norm.payoffs, "ce")
    push = dense_gains(g).T @ presolved.certificate
    assert np.all(presolved.certificate >= 0)
    assert np.abs(push[presolved.support]).max() <= 1e-6
    assert push[~presolved.support].min() >= 1 - 1e-6


def test_face_certificate_check_accepts_the_lp_face_and_rejects_others(kuhn3_ce_10):
    game, _ = kuhn3_ce_10
    norm = solvers.normalise(game)
    problem = dual_problem(norm, "ce", resolve_selection(Selection.me(), norm))
    face = minimal_face(problem)
    assert face_certified(problem, face)
    wrong_support = face.support.copy()
    wrong_support[np.flatnonzero(face.support)[0]] = False  # a joint some CE plays
    assert not face_certified(problem, face._replace(support=wrong_support))
    wrong_eq = face.equalities.copy()
    wrong_eq[np.flatnonzero(~face.equalities)[0]] = True  # a row no certificate weight proves tight
    assert not face_certified(problem, face._replace(equalities=wrong_eq))
    other = game.copy()
    other[0] = np.random.default_rng(0).normal(size=other.shape[1:])
    other_norm = solvers.normalise(other)
    assert not face_certified(dual_problem(other_norm, "ce", resolve_selection(Selection.me(), other_norm)), face)


def test_auto_warm_start_is_related_only_after_a_face(kuhn3_ce_10, face_after_60):
    game, repeats = kuhn3_ce_10
    solver = hos.meta_solver("hn_mece")  # warm_start="auto"
    assert hos.AUTO_WARM_START["ce"] == "related" and hos.AUTO_RELATED_AFTER_FACE
    _, small = solver(game[:, :9, :9, :9], [np.ones(9)] * 3)
    assert "face" not in small["method"]
    _, meta = solver(game, repeats)
    assert meta["warm_start"] == "cold" and "face" in meta["method"]  # after a face-free solve
    # The game grown by a copy of each player's first policy: "auto" now takes "related".
    idx = np.r_[np.arange(10), 0]
    grown = game[:, idx][:, :, idx][:, :, :, idx]
    dist, grown_meta = solver(grown, [np.ones(11)] * 3)
    cold, cold_meta = hos.meta_solver("hn_mece", warm_start="cold")(grown, [np.ones(11)] * 3)
    assert grown_meta["warm_start"] == "related" and grown_meta["certified"] and cold_meta["certified"]
    np.testing.assert_allclose(dist, cold, atol=1e-6)
