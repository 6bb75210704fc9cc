"""Game files: .npy, .npz and Gambit .nfg round trips (solvers.game_io)."""

import numpy as np
import pytest

from solvers.game_io import load_game, save_game


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".nfg"])
def test_round_trip(tmp_path, suffix):
    if suffix == ".nfg":
        pytest.importorskip("pygambit", reason="pygambit (extra 'openspiel') reads .nfg files")
    # integers and halves survive Gambit's decimal text format exactly
    game = np.random.default_rng(0).integers(-5, 6, size=(3, 2, 3, 2)) / 2.0
    path = tmp_path / f"game{suffix}"
    save_game(game, path)
    np.testing.assert_array_equal(load_game(path), game)


def test_nfg_written_by_hand(tmp_path):
    pytest.importorskip("pygambit", reason="pygambit (extra 'openspiel') reads .nfg files")
    text = (
        'NFG 1 R "PD" { "1" "2" }\n\n{ { "C" "D" }\n{ "C" "D" }\n}\n""\n\n'
        '{\n{ "" 3, 3 }\n{ "" 5, 0 }\n{ "" 0, 5 }\n{ "" 1, 1 }\n}\n1 2 3 4\n'
    )
    path = tmp_path / "pd.nfg"
    path.write_text(text)
    game = load_game(path)
    np.testing.assert_array_equal(game[0], [[3, 0], [5, 1]])
    np.testing.assert_array_equal(game[1], [[3, 5], [0, 1]])


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_game(tmp_path / "missing.npy")
    bad = tmp_path / "game.txt"
    bad.write_text("1 2 3")
    with pytest.raises(ValueError, match="unknown game file type"):
        load_game(bad)
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        load_game(nan)
