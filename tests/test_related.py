"""Warm starts from the Solution of a related game (solvers.related, DESIGN §12)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import solvers.policy
from solvers import Status, duals_by_player, solve, solve_batch
from solvers import related as rel

JOINT_TOL = 1e-7


def _game(shape, seed):
    return np.random.default_rng(seed).normal(size=(len(shape),) + shape)


def _grown(game, new_shape, seed):
    """``game`` with new actions appended at the end of each axis (old entries unchanged)."""
    big = _game(new_shape, seed)
    big[(slice(None),) + tuple(slice(0, n) for n in game.shape[1:])] = game
    return big


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_map_duals_appended_keeps_old_blocks(concept):
    old_shape, new_shape = (3, 4), (5, 4)
    prev = solve(_game(old_shape, 0), concept)
    mapped = rel.map_duals(prev, new_shape)
    old_blocks = duals_by_player(prev.duals, old_shape, concept)
    new_blocks = duals_by_player(mapped, new_shape, concept)
    for p, o in enumerate(old_shape):
        block = new_blocks[p]
        if concept == "cce":
            np.testing.assert_array_equal(block[:o], old_blocks[p])
            assert np.all(block[o:] == 0)
        else:
            np.testing.assert_array_equal(block[:o, :o], old_blocks[p])
            assert np.all(block[o:, :] == 0) and np.all(block[:, o:] == 0)
    assert np.any(mapped > 0)


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_permuted_game_warm_start_is_exact(concept):
    """A game whose actions are re-ordered (and one dropped, one added) maps every carried
    row to its own dual; a pure re-ordering starts at the optimum."""
    game = _game((4, 3), 3)
    prev = solve(game, concept)
    perm = [np.array([2, 0, 3, 1]), np.array([1, 2, 0])]
    permuted = game[:, perm[0]][:, :, perm[1]]
    warm = solve(permuted, concept, duals0=rel.related(prev, perm))
    assert warm.status is Status.OPTIMAL and warm.info["warm_start"] == rel.WARM
    assert warm.iterations <= 1
    np.testing.assert_allclose(warm.joint, prev.joint[np.ix_(*perm)], atol=JOINT_TOL)
    old_blocks = duals_by_player(prev.duals, (4, 3), concept)
    new_blocks = duals_by_player(rel.map_duals(prev, (4, 3), action_map=perm), (4, 3), concept)
    for p in range(2):
        expected = old_blocks[p][perm[p]] if concept == "cce" else old_blocks[p][np.ix_(perm[p], perm[p])]
        np.testing.assert_array_equal(new_blocks[p], expected)
    # Drop old action 1 of player 0, add a new one in front.
    amap = [np.array([-1, 3, 0, 2]), np.array([0, 1, 2])]
    other = _game((4, 3), 4)
    other[:, 1:] = game[:, [3, 0, 2]]
    cold = solve(other, concept)
    warm = solve(other, concept, duals0=rel.related(prev, amap))
    assert warm.status is Status.OPTIMAL and warm.info["warm_start"] in rel.LABELS
    np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)
    joint = rel.extend_joint(prev, (4, 3), amap)
    assert np.all(joint[0] == 0) and joint.sum() == pytest.approx(1.0)
    kept = prev.joint[[3, 0, 2]]
    np.testing.assert_allclose(joint[1:], kept / kept.sum())


@pytest.mark.parametrize("concept", ["cce", "ce"])
@pytest.mark.parametrize(("old_shape", "new_shape"), [((4, 4), (6, 5)), ((3, 3, 2), (4, 3, 3))])
def test_grown_game_same_joint_as_cold(concept, old_shape, new_shape):
    for seed in range(2):
        game = _game(old_shape, seed)
        prev = solve(game, concept)
        big = _grown(game, new_shape, 100 + seed)
        cold = solve(big, concept)
        warm = solve(big, concept, duals0=prev)
        assert cold.status is Status.OPTIMAL and warm.status is Status.OPTIMAL
        assert warm.info["warm_start"] in rel.LABELS
        assert warm.normalised_gap <= 1e-8
        np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)


def test_rescaled_old_payoffs_choose_normalised_units():
    """Old payoffs multiplied by 10 in the new game: payoff-unit duals are 10x too large,
    the normalised carry-over is the right one, and the loss picks it."""
    game = _game((5, 5), 7)
    prev = solve(game, "ce")
    big = _grown(game, (6, 6), 8) * 10.0
    duals, info = rel.warm_duals(prev, big, "ce")
    assert info["units"] == "normalised" and info["loss"] < info["cold_loss"]
    warm = solve(big, "ce", duals0=prev)
    np.testing.assert_allclose(warm.joint, solve(big, "ce").joint, atol=JOINT_TOL)


def test_cold_restart_when_the_warm_run_is_not_ahead(monkeypatch):
    """A watched warm run not optimal within the cap is restarted cold (the cap is forced
    down to 1 iteration here)."""
    game = _game((5, 5), 11)
    prev = solve(game, "cce")
    big = _grown(game, (7, 6), 12)
    assert rel.warm_duals(prev, big, "cce")[0] is not None
    monkeypatch.setattr(rel, "WATCH_MIN", 1)
    stale = dataclasses.replace(prev, info={**prev.info, "cold_iterations": 1})
    warm = solve(big, "cce", duals0=stale)
    assert warm.info["warm_start"] == rel.RESTART
    assert warm.method == solve(big, "cce").method  # the cold run's stages, from zero duals
    cold = solve(big, "cce")
    assert warm.status is Status.OPTIMAL and warm.iterations > cold.iterations
    assert warm.timings["warm_attempt"] > 0
    np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)


def test_hard_ce_goes_on_with_the_face_from_the_watched_run(monkeypatch):
    """A hard-constraint CE whose watched run is short of tolerance takes the facial-
    reduction LP from where it stopped (as a cold run would after FACE_AFTER iterations)."""
    # Cold runs take the LP after 60 iterations here (hardly a 7x7 game needs the face at
    # the default 100). Seeds 40..59 had such games with Newton's damping before h-ceit's;
    # now 139 is the first.
    monkeypatch.setattr(solvers.policy, "DEFAULT_POLICY",
                        dataclasses.replace(solvers.policy.DEFAULT_POLICY, face_after=60))
    for seed in range(40, 160):
        game = _game((6, 6), seed)
        prev = solve(game, "ce")
        big = _grown(game, (7, 7), seed + 100)
        cold = solve(big, "ce")
        if prev.info["face"] or "face" not in cold.method or rel.warm_duals(prev, big, "ce")[0] is None:
            continue
        # the watched run: 1 + 1 iterations
        monkeypatch.setattr(solvers.policy, "DEFAULT_POLICY",
                            dataclasses.replace(solvers.policy.DEFAULT_POLICY, face_after=2))
        warm = solve(big, "ce", duals0=prev)
        assert warm.info["warm_start"] == rel.FACE and warm.method.startswith("face")
        assert warm.status is Status.OPTIMAL and warm.timings["warm_attempt"] > 0
        np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)
        return
    pytest.fail("no game with a cold face solve and a face-free previous solve among the seeds")


def test_useless_duals_start_cold():
    """Huge duals of an unrelated game: no candidate beats the cold start's loss L(0)."""
    prev = solve(_game((4, 4), 5), "ce")
    bad = dataclasses.replace(prev, duals=np.full_like(prev.duals, 1e6))
    big = _game((5, 5), 6)
    duals, info = rel.warm_duals(bad, big, "ce")
    assert duals is None and info["loss"] >= info["cold_loss"]
    sol = solve(big, "ce", duals0=bad)
    assert sol.info["warm_start"] == rel.COLD and sol.status is Status.OPTIMAL
    np.testing.assert_allclose(sol.joint, solve(big, "ce").joint, atol=JOINT_TOL)


def test_solve_batch_accepts_related_solutions():
    games = [_game((4, 4), s) for s in range(3)]
    prevs = solve_batch(games, "ce")
    bigs = [_grown(g, (5, 6), 20 + i) for i, g in enumerate(games)]
    colds = solve_batch(bigs, "ce")
    warms = solve_batch(bigs, "ce", duals0=[prevs[0], None, rel.related(prevs[2])])
    assert warms[1].info.get("warm_start") is None
    for cold, warm in zip(colds, warms, strict=True):
        assert warm.status is Status.OPTIMAL
        np.testing.assert_allclose(warm.joint, cold.joint, atol=JOINT_TOL)
    assert warms[0].info["warm_start"] in rel.LABELS


def test_bad_inputs():
    prev = solve(_game((3, 3), 0), "ce")
    big = _game((4, 4), 1)
    with pytest.raises(ValueError, match="warm-start a CCE"):
        solve(big, "cce", duals0=prev)
    with pytest.raises(ValueError, match="larger than"):
        solve(_game((2, 4), 1), "ce", duals0=prev)
    with pytest.raises(ValueError, match="players"):
        solve(_game((3, 3, 3), 1), "ce", duals0=prev)
    with pytest.raises(ValueError, match="several new ones"):
        rel.related(prev, [[0, 0, -1, -1], [0, 1, 2, -1]])
    with pytest.raises(ValueError, match="old index"):
        rel.related(prev, [[0, 3, -1, -1], [0, 1, 2, -1]])
    with pytest.raises(TypeError, match="integers"):
        rel.related(prev, [[0.0, 1.0, -1, -1], [0, 1, 2, -1]])
    with pytest.raises(ValueError, match="has 3 entries; player 0 has 4"):
        solve(big, "ce", duals0=rel.related(prev, [[0, 1, 2], [0, 1, 2, -1]]))
    with pytest.raises(TypeError, match="Solution"):
        rel.related(prev.duals)
    with pytest.raises(TypeError, match="integer sequences"):
        rel.related(prev, "01")
    gini = solve(big, "ce", "mg", duals0=prev)  # Max Gini takes no dual warm start
    assert gini.info["warm_start"] == rel.COLD and gini.status is Status.OPTIMAL
    with pytest.raises(ValueError, match="units"):
        rel.map_duals(prev, (4, 4), units="bad")


def test_pipeline_solve_exact_accepts_a_related_solution():
    from hybrid_nes import solve_exact

    game = _game((4, 3), 30)
    prev = solve(game, "ce")
    big = _grown(game, (5, 5), 31)
    warm = solve_exact(big, "ce", warm_start=prev)
    assert warm.info["warm_start"] in rel.LABELS and warm.info["plan"] == "user"
    np.testing.assert_allclose(warm.joint, solve(big, "ce").joint, atol=JOINT_TOL)
    with pytest.raises(ValueError, match="warm-start a CCE"):
        solve_exact(big, "cce", warm_start=prev)


def test_openspiel_related_warm_start_on_kuhn_meta_games():
    """The stored 3-player Kuhn poker CE meta-game (10x10x10) after its 9x9x9 sub-game:
    the 'related' meta-solver maps the previous solution and returns the cold answer."""
    from pathlib import Path

    from hybrid_nes.integrations import openspiel as hos

    game = np.load(Path(__file__).parent / "data" / "kuhn3_ce_meta_10x10x10.npy")
    small = game[:, :9, :9, :9]
    ones = [np.ones(9)] * 3
    warm_solver = hos.meta_solver("hn_mece", warm_start="related")
    first, meta0 = warm_solver(small, ones)
    assert meta0["warm_start"] == "cold"
    dist, meta = warm_solver(game, [np.ones(10)] * 3)
    cold, cold_meta = hos.meta_solver("hn_mece")(game, [np.ones(10)] * 3)
    assert meta["warm_start"] == "related" and meta["related_start"] in rel.LABELS
    assert meta["certified"] and cold_meta["certified"]
    np.testing.assert_allclose(dist, cold, atol=JOINT_TOL)
    with pytest.raises(ValueError, match="warm_start"):
        hos.meta_solver("hn_mece", warm_start="bogus")


def test_openspiel_auto_warm_start_is_related_for_ce_only():
    from hybrid_nes.integrations import openspiel as hos

    game = _game((5, 4, 4), 50)
    small = game[:, :4, :3, :4]
    for name, expected in (("hn_mece", "related"), ("hn_mecce", "cold")):
        solver = hos.meta_solver(name)
        assert solver.options.warm_start == "auto"
        _, first = solver(small, [np.ones(n) for n in small.shape[1:]])
        if name == "hn_mece" and hos.AUTO_RELATED_AFTER_FACE and "face" not in first["method"]:
            expected = "cold"  # "auto" takes the related start only after a facial reduction
        dist, meta = solver(game, [np.ones(n) for n in game.shape[1:]])
        assert meta["warm_start"] == expected and meta["certified"]
        cold, _ = hos.meta_solver(name, warm_start="cold")(game, [np.ones(n) for n in game.shape[1:]])
        np.testing.assert_allclose(dist, cold, atol=JOINT_TOL)


def _eval_pair(seed):
    from solvers.evaluation_game import evaluation_game

    scores = np.random.default_rng(seed).normal(size=(6, 9))
    scores[5:] += 1.0
    return evaluation_game(scores[:5, :8], "ptp"), evaluation_game(scores, "ptp")


def test_matrix_free_warm_run_goes_on_from_its_duals(monkeypatch):
    """On the newton-cg route a watched run short of its cap goes on from its own duals
    (not from zero, and not to the layout's facial reduction)."""
    old, new = _eval_pair(3)
    prev = solve(old, "ce", method="newton-cg")
    cold = solve(new, "ce", method="newton-cg")
    warm = solve(new, "ce", method="newton-cg", duals0=prev)
    assert warm.info["warm_start"] in (rel.WARM, rel.CONTINUED) and warm.method == "newton-cg"
    monkeypatch.setattr(rel, "WATCH_MIN", 1)
    monkeypatch.setattr(rel, "MF_WATCH_FACTOR", 0)
    short = solve(new, "ce", method="newton-cg", duals0=prev)
    assert short.info["warm_start"] == rel.CONTINUED
    assert short.status is Status.OPTIMAL and short.method == "newton-cg"
    assert short.timings["warm_attempt"] > 0 and short.iterations > 1
    assert short.info["first_order_iterations"] == 0  # Newton alone on from the watched run
    for sol in (warm, short):
        np.testing.assert_allclose(sol.joint, cold.joint, atol=JOINT_TOL)
    # A user cap at or below the watch cap is the whole budget: the status says so.
    capped = solve(new, "ce", method="newton-cg", duals0=prev, max_iter=1)
    assert capped.status is Status.MAX_ITER and capped.info["warm_start"] == rel.WARM


def test_matrix_free_warm_start_normalises_the_game_once(monkeypatch):
    """``solve_related`` normalises the grown game once for the candidate search and the
    Newton continuation (``single.matrix_free_one`` takes the normalised game)."""
    from solvers import single

    old, new = _eval_pair(3)
    prev = solve(old, "ce", method="newton-cg")
    calls = []
    real = rel.normalise
    monkeypatch.setattr(rel, "normalise", lambda game: calls.append(game.shape) or real(game))
    monkeypatch.setattr(rel, "WATCH_MIN", 1)
    monkeypatch.setattr(rel, "MF_WATCH_FACTOR", 0)  # the watched run stops: the continuation runs
    seen = []
    real_one = single.matrix_free_one
    monkeypatch.setattr(single, "matrix_free_one", lambda norm, *a, **k: seen.append(norm) or real_one(norm, *a, **k))
    sol = solve(new, "ce", method="newton-cg", duals0=prev)
    assert sol.info["warm_start"] == rel.CONTINUED and sol.status is Status.OPTIMAL
    assert calls == [new.shape]
    assert len(seen) == 2  # the watched run (through solvers.solve) and the continuation
    np.testing.assert_array_equal(seen[1].payoffs, real(new).payoffs)
