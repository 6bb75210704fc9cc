"""solvers.symmetry: exchangeable players found, verified, and the ME-(C)CE of a symmetric game symmetric."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import solvers
from solvers.evaluation_game import evaluation_game
from solvers.symmetry import (
    check_symmetry,
    find_symmetries,
    joint_asymmetry,
    swap_violation,
    symmetrise,
)


def _symmetric_two_player(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n))
    return np.stack([a, a.T])


def _symmetric_three_player(n: int, seed: int) -> np.ndarray:
    """G_p(a) = f(a_p, sorted others) for a random f: every pair of players exchangeable."""
    f = np.random.default_rng(seed).normal(size=(n, n, n))
    game = np.zeros((3, n, n, n))
    for a in itertools.product(range(n), repeat=3):
        for p in range(3):
            others = sorted(a[q] for q in range(3) if q != p)
            game[(p, *a)] = f[a[p], others[0], others[1]]
    return game


def test_evaluation_game_agents_are_exchangeable_and_the_task_is_not():
    scores = np.random.default_rng(0).normal(size=(5, 7))
    for normaliser, sd in (("ptp", None), ("zscore", None), ("rank", None), ("winrate", 0.5)):
        game = evaluation_game(scores, normaliser, sd)
        assert find_symmetries(game) == ((1, 2),)
        assert check_symmetry(game, ((1, 2),)) == 0.0  # exactly, by construction
    # 7 tasks vs 5 agents: different action counts
    assert swap_violation(game, 0, 1).value == np.inf
    with pytest.raises(ValueError, match=r"players 0 and 1 are not exchangeable: 7 vs 5 actions"):
        check_symmetry(game, ((0, 1),))


def test_detection_on_symmetric_and_asymmetric_games():
    assert find_symmetries(_symmetric_two_player(4, 1)) == ((0, 1),)
    assert find_symmetries(_symmetric_three_player(3, 2)) == ((0, 1, 2),)
    rng = np.random.default_rng(3)
    assert find_symmetries(rng.normal(size=(2, 4, 4))) == ()
    assert find_symmetries(rng.normal(size=(3, 3, 3, 3))) == ()


def test_other_players_must_be_invariant_too():
    """G_1 is G_0 with axes swapped, but player 2's payoff depends on who plays what."""
    game = _symmetric_three_player(3, 4)
    game[2] = np.random.default_rng(5).normal(size=(3, 3, 3))
    v01 = swap_violation(game, 0, 1)
    assert v01.value > 0.01 and v01.player == 2
    assert (0, 1) not in find_symmetries(game)
    with pytest.raises(ValueError, match=r"players 0 and 1 are not exchangeable: swapping them changes player 2"):
        check_symmetry(game, [[0, 1]])


def test_check_symmetry_names_the_players_and_the_largest_violation():
    game = _symmetric_two_player(4, 6)
    game[0, 1, 3] += 2e-3
    game[1, 2, 0] += 1e-3
    v = swap_violation(game, 0, 1)
    assert v.value == pytest.approx(2e-3) and v.action in ((1, 3), (3, 1))
    with pytest.raises(ValueError, match=r"players 0 and 1 are not exchangeable.*by 0\.002 > atol 1e-09"):
        check_symmetry(game, ((0, 1),))
    assert check_symmetry(game, ((0, 1),), atol=3e-3) == pytest.approx(2e-3)
    assert find_symmetries(game, atol=3e-3) == ((0, 1),)
    assert find_symmetries(game, atol=1e-3) == ()


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        (((0, 1), (1, 2)), ValueError, r"player 1 appears in more than one group"),
        (((0, 3),), ValueError, r"player 3 is not in 0\.\.2"),
        (((0,),), ValueError, r"a group needs >= 2 players"),
        ("01", TypeError, r"groups must be a sequence"),
        ((0, 1), TypeError, r"each group must be a sequence"),
    ],
)
def test_bad_groups(groups, error, match):
    with pytest.raises(error, match=match):
        check_symmetry(_symmetric_three_player(2, 7), groups)


def test_bad_atol():
    with pytest.raises(ValueError, match=r"atol must be a finite number >= 0"):
        find_symmetries(_symmetric_two_player(2, 0), atol=-1.0)


def test_symmetrise_averages_over_the_group():
    rng = np.random.default_rng(8)
    joint = rng.random((3, 3, 3))
    joint /= joint.sum()
    sym = symmetrise(joint, ((0, 1, 2),))
    assert sym.sum() == pytest.approx(1.0)
    for perm in itertools.permutations(range(3)):
        np.testing.assert_allclose(np.transpose(sym, perm), sym, atol=1e-16)
    assert joint_asymmetry(joint, ((0, 1, 2),)) > 1e-3
    assert joint_asymmetry(sym, ((0, 1, 2),)) < 1e-16
    # the average of the 6 permuted joints, by brute force
    brute = sum(np.transpose(joint, perm) for perm in itertools.permutations(range(3))) / 6
    np.testing.assert_allclose(sym, brute, atol=1e-16)
    np.testing.assert_allclose(symmetrise(sym, ((0, 1, 2),)), sym, atol=1e-16)


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_the_me_equilibrium_of_a_symmetric_game_is_symmetric(concept):
    for game, groups in (
        (_symmetric_two_player(5, 9), ((0, 1),)),
        (_symmetric_three_player(3, 10), ((0, 1, 2),)),
        (evaluation_game(np.random.default_rng(11).normal(size=(5, 6))), ((1, 2),)),
    ):
        assert find_symmetries(game) == groups
        sol = solvers.solve(game, concept)
        assert sol.ok
        assert joint_asymmetry(sol.joint, groups) < 1e-7
        # ... and it is not a trivially uniform joint
        assert np.ptp(sol.joint) > 1e-3
