"""The shipped networks: loading, predict_duals, units, bad input."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest

import hybrid_nes
from hybrid_nes import (
    CheckpointError,
    duals_to_normalised_units,
    duals_to_payoff_units,
    load_pretrained,
)
from hybrid_nes.loss import duals_to_flat
from hybrid_nes.model import pretrained_path
from hybrid_nes.network import make_network
from hybrid_nes.sampling import sample_batch
from solvers import Selection, normalise, num_constraints


@pytest.fixture(scope="module")
def cce():
    return load_pretrained("cce")


@pytest.fixture(scope="module")
def ce():
    return load_pretrained("ce")


def _games(rng, b, shape):
    return rng.normal(size=(b, len(shape), *shape)) * rng.uniform(0.5, 5.0) + rng.normal()


def test_shipped_weights_cover_two_player_games_2x2_to_16x16(cce, ce):
    for model, concept in ((cce, "cce"), (ce, "ce")):
        assert model.concept == concept and model.own_players == (2,)
        assert (2, 2) in model.trained_shapes and (16, 16) in model.trained_shapes
        assert set(model.presets) >= {"me", "mre"}
        assert pretrained_path(concept).stat().st_size < 2_000_000


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_predict_duals_layout_and_single_game_equals_batch(concept, cce, ce):
    model = cce if concept == "cce" else ce
    rng = np.random.default_rng(0)
    games = _games(rng, 5, (4, 4))
    duals = model.predict_duals(games)
    assert duals.shape == (5, num_constraints((4, 4), concept)) and duals.dtype == np.float64
    assert np.all(duals >= 0) and np.all(np.isfinite(duals))
    single = model.predict_duals(games[2:3])
    np.testing.assert_allclose(single[0], duals[2], rtol=1e-5, atol=1e-6)
    # duals depend on the game
    assert not np.allclose(duals[0], duals[1])


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_fast_inference_computes_the_haiku_network(concept, cce, ce):
    # NESModel runs hybrid_nes.inference (BatchNorm folded, chunked); the Haiku network in
    # inference mode is the reference. Same shape and batch bucket as the layout test.
    model = cce if concept == "cce" else ce
    shape = (4, 4)
    games, sel = sample_batch(jax.random.PRNGKey(3), 5, shape, ("me", "mre"))
    duals, _ = jax.jit(make_network(model.config).apply, static_argnums=5)(
        model.params, model.statistics(shape), None, games, sel, False
    )
    want = np.asarray(duals_to_flat(duals, concept))
    got = model.predict_normalised(np.asarray(games), sel)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert np.std(want) > 1e-2  # not vacuous


def test_normalised_and_payoff_units(cce):
    rng = np.random.default_rng(1)
    games = _games(rng, 4, (4, 6))  # the shape (and batch bucket) of the equivariance test
    norm_duals = cce.predict_duals(games)
    pay_duals = cce.predict_duals(games, units="payoff")
    scale = np.stack([normalise(g).scale for g in games])
    np.testing.assert_allclose(pay_duals, duals_to_payoff_units(norm_duals, scale, (4, 6), "cce"))
    np.testing.assert_allclose(duals_to_normalised_units(pay_duals, scale, (4, 6), "cce"), norm_duals)
    # Offset and positive scale per player leave normalised duals unchanged; payoff-unit
    # duals scale by 1 / c_p.
    c = np.array([3.0, 0.25])
    moved = games * c[None, :, None, None] + np.array([1.0, -7.0])[None, :, None, None]
    np.testing.assert_allclose(cce.predict_duals(moved), norm_duals, rtol=1e-4, atol=1e-5)
    expect = pay_duals / np.repeat(c, (4, 6))[None]
    np.testing.assert_allclose(cce.predict_duals(moved, units="payoff"), expect, rtol=1e-4, atol=1e-5)


def test_predictions_are_equivariant_and_compiled_once_per_bucket(cce):
    rng = np.random.default_rng(2)
    games = _games(rng, 3, (4, 6))
    duals = cce.predict_duals(games)
    p0, p1 = rng.permutation(4), rng.permutation(6)
    permuted = cce.predict_duals(games[:, :, p0][:, :, :, p1])
    np.testing.assert_allclose(permuted[:, :4], duals[:, :4][:, p0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(permuted[:, 4:], duals[:, 4:][:, p1], rtol=1e-4, atol=1e-5)
    swapped = cce.predict_duals(np.swapaxes(games[:, ::-1], 2, 3))  # players exchanged: shape 6x4
    np.testing.assert_allclose(swapped[:, :6], duals[:, 4:], rtol=1e-4, atol=1e-5)
    before = cce._forward._cache_size()
    cce.predict_duals(_games(rng, 4, (4, 6)))  # 3 and 4 games share the 4-game bucket
    assert cce._forward._cache_size() == before


def test_chunks_are_padded_to_powers_of_two_and_single_games_not_at_all():
    from hybrid_nes.model import MAX_CHUNK, chunk_buckets

    assert chunk_buckets(1) == {1}
    assert chunk_buckets(3) == {4}
    assert chunk_buckets(5) == {8}
    assert chunk_buckets(MAX_CHUNK + 3) == {MAX_CHUNK, 4}


def test_mre_selection_per_game(cce):
    rng = np.random.default_rng(3)
    games = _games(rng, 2, (3, 3))
    targets = [rng.dirichlet(np.ones(9)).reshape(3, 3) for _ in range(2)]
    duals = cce.predict_duals(games, [Selection.mre(target=t) for t in targets])
    assert not np.allclose(duals, cce.predict_duals(games, "me"))


def test_bad_input_gives_clear_errors(cce, tmp_path):
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="4 players.*2/3-player"):  # 2- and 3-player networks ship
        cce.predict_duals(_games(rng, 2, (2, 2, 2, 2)))
    assert cce.predict_duals(_games(rng, 2, (2, 2, 2, 2)), allow_untrained=True).shape == (2, 8)
    with pytest.raises(ValueError, match="NaN"):
        cce.predict_duals(np.full((1, 2, 2, 2), np.nan))
    with pytest.raises(ValueError, match=r"\[B, N, A1..AN\]"):
        cce.predict_duals(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="objective"):
        cce.predict_duals(_games(rng, 1, (2, 2)), Selection.mg())
    with pytest.raises(ValueError, match="target has shape"):
        cce.predict_duals(_games(rng, 1, (2, 2)), Selection.mre(target=np.full((3, 3), 1 / 9)))
    with pytest.raises(ValueError, match="2 selections for 3 games"):
        cce.predict_duals(_games(rng, 3, (2, 2)), [Selection.me()] * 2)
    with pytest.raises(ValueError, match="units"):
        cce.predict_duals(_games(rng, 1, (2, 2)), units="utils")
    with pytest.raises(ValueError, match="concept"):
        load_pretrained("ne")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained("cce", path=tmp_path / "missing.npz")
    bad = tmp_path / "corrupt.npz"
    data = bytearray(pretrained_path("cce").read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\x00" * 64
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_pretrained("cce", path=bad)
    (tmp_path / "text.npz").write_text("not weights")
    with pytest.raises(CheckpointError, match="corrupt or not an .npz"):
        load_pretrained("cce", path=tmp_path / "text.npz")
    shutil.copy(pretrained_path("ce"), tmp_path / "ce.npz")
    with pytest.raises(CheckpointError, match="CE network, not CCE"):
        load_pretrained("cce", path=tmp_path / "ce.npz")


def test_public_api_reexports():
    for name in ("NESModel", "load_pretrained", "duals_to_payoff_units", "TrainConfig", "NetworkConfig"):
        assert hasattr(hybrid_nes, name)


def test_predict_joint_is_sigma_of_the_predicted_duals(cce):
    import solvers
    from solvers.dual import dual_problem, joint_from_duals
    from solvers.selection import resolve_selection

    games = np.random.default_rng(5).normal(size=(32, 2, 8, 8)) * 3.0 + 1.0
    joints = cce.predict_joint(games, "me")
    assert joints.shape == (32, 8, 8)
    np.testing.assert_allclose(joints.sum(axis=(1, 2)), 1.0, atol=1e-12)
    duals = cce.predict_duals(games, "me")
    for b in (0, 7):
        norm = normalise(games[b])
        problem = dual_problem(norm, "cce", resolve_selection(Selection.me(), norm))
        np.testing.assert_allclose(joints[b].ravel(), joint_from_duals(problem, duals[b]), atol=1e-12)
    # The network alone is close to the exact joints (model card: ~0.012 at 8x8; uniform ~0.26).
    exact = np.stack([s.joint for s in solvers.solve_batch(games, "cce", "me")])
    assert 0.5 * np.abs(joints - exact).reshape(32, -1).sum(axis=1).mean() < 0.05
    with pytest.raises(ValueError, match="4 players"):
        cce.predict_joint(np.random.default_rng(6).normal(size=(1, 4, 2, 2, 2, 2)))
