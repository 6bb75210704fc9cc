"""The shipped 3-player networks: served by load_pretrained, predict, warm-start a certified solve."""

from __future__ import annotations

import numpy as np
import pytest

import hybrid_nes
from hybrid_nes import load_pretrained
from hybrid_nes.model import PRETRAINED_PLAYERS, pretrained_path
from solvers import num_constraints

SHIPPED = [c for c in ("cce", "ce") if pretrained_path(c, 3).exists()]


@pytest.fixture(scope="module", params=SHIPPED)
def model(request):
    return load_pretrained(request.param)


def test_a_3_player_cce_network_ships():
    assert "cce" in SHIPPED and 3 in PRETRAINED_PLAYERS
    assert pretrained_path("cce", 3).stat().st_size < 2_000_000


def test_load_pretrained_serves_2_and_3_players_with_separate_networks(model):
    assert model.players == (2, 3) and model.own_players == (2,)
    net3 = model.network_for(3)
    assert net3 is not model and net3.own_players == (3,) and net3.concept == model.concept
    assert (3, 3, 3) in net3.trained_shapes and model.network_for(2) is model
    # the file alone is the 3-player network only
    alone = load_pretrained(model.concept, pretrained_path(model.concept, 3))
    assert alone.players == (3,)


def test_3_player_predictions_have_the_layout_and_are_finite(model):
    rng = np.random.default_rng(0)
    games = rng.normal(size=(5, 3, 3, 3, 3)) * 3.0 + 1.0  # a shipped shape: no calibration on first use
    duals = model.predict_duals(games)
    assert duals.shape == (5, num_constraints((3, 3, 3), model.concept))
    assert np.all(np.isfinite(duals)) and np.all(duals >= 0)
    np.testing.assert_allclose(model.predict_duals(games[1:2])[0], duals[1], rtol=1e-5, atol=1e-6)
    # routed to the 3-player network
    np.testing.assert_array_equal(model.network_for(3).predict_duals(games), duals)
    assert not np.allclose(duals[0], duals[1])
    joint = model.predict_joint(games)
    assert joint.shape == (5, 3, 3, 3)
    np.testing.assert_allclose(joint.sum(axis=(1, 2, 3)), 1.0, atol=1e-9)


def test_nes_warm_start_of_a_3_player_game_is_certified(model):
    game = np.random.default_rng(1).normal(size=(3, 4, 4, 4))
    warm = hybrid_nes.solve_exact(game, model.concept, warm_start="nes", model=model)
    cold = hybrid_nes.solve_exact(game, model.concept, warm_start="cold")
    assert warm.info["warm_start"] == "nes" and warm.status == "optimal"
    np.testing.assert_allclose(warm.joint, cold.joint, atol=1e-6)


def test_player_counts_not_covered_are_refused_clearly(model):
    games = np.random.default_rng(2).normal(size=(1, 4, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="4 players.*2/3-player"):
        model.predict_duals(games)
    with pytest.raises(ValueError, match="players must be one of"):
        pretrained_path(model.concept, 4)
    with pytest.raises(ValueError, match="already serves"):
        load_pretrained(model.concept, pretrained_path(model.concept)).add_network(model)


def test_an_attached_file_is_checked_when_first_used():
    from hybrid_nes import CheckpointError

    model = load_pretrained("cce", pretrained_path("cce")).attach_file(3, pretrained_path("ce"))
    assert model.players == (2, 3)  # not loaded yet
    with pytest.raises(CheckpointError, match="holds a CE network"):
        model.network_for(3)
    with pytest.raises(ValueError, match="already serves"):
        model.attach_file(2, pretrained_path("cce", 3))
