"""Game files: .npy, .npz and Gambit .nfg round trips (solvers.game_io)."""

import tracemalloc

import numpy as np
import pytest

from solvers.game_io import MAX_NFG_ENTRIES, load_game, load_games, save_game


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


# --- damaged and oversized files: one-line ValueErrors naming the file, before allocating ---

_PD = ('NFG 1 R "PD" { "1" "2" }\n\n{ { "C" "D" }\n{ "C" "D" }\n}\n""\n\n'
       '{\n{ "" 3, 3 }\n{ "" 5, 0 }\n{ "" 0, 5 }\n{ "" 1, 1 }\n}\n1 2 3 4\n')


def _good_batch(tmp_path, name="good"):
    games = np.random.default_rng(1).normal(size=(2, 2, 3, 3))
    np.save(tmp_path / f"{name}.npy", games)
    np.savez(tmp_path / f"{name}.npz", games=games)
    np.savez_compressed(tmp_path / f"{name}_z.npz", games=games)
    return games


def _damaged(tmp_path):
    """``{file name: expected message}`` of damaged batch files."""
    _good_batch(tmp_path)
    npy = (tmp_path / "good.npy").read_bytes()
    npz = (tmp_path / "good.npz").read_bytes()
    zipped = bytearray((tmp_path / "good_z.npz").read_bytes())
    zipped[120] ^= 0xFF  # inside the deflated member
    files = {
        "empty.npy": (b"", "empty file"),
        "empty.npz": (b"", "empty file"),
        "trunc.npy": (npy[:140], "truncated: shape (2, 2, 3, 3) needs 288 bytes of data, the file holds 12"),
        "trunc.npz": (npz[:100], "not a valid .npz (zip) file"),
        "renamed.npz": (npy, "a .npy file named .npz; rename it to .npy"),
        "garbage.npy": (b"hello, not an array" * 5, "not a valid .npy array"),
        "corrupt.npz": (bytes(zipped), "array 'games' unreadable"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    np.savez(tmp_path / "objects.npz", games=np.array([{"a": 1}], dtype=object))
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    return {
        **{name: message for name, (_, message) in files.items()},
        "objects.npz": "holds Python objects (pickled data)",
        "text.npy": "holds <U1 data, not payoff numbers",
    }


def test_damaged_files_raise_one_line_value_errors_naming_the_file(tmp_path):
    for name, message in _damaged(tmp_path).items():
        for reader in (load_game, load_games):
            with pytest.raises(ValueError) as info:
                reader(tmp_path / name)
            text = str(info.value)
            assert text.startswith(f"{tmp_path / name}: ") and message in text, (name, text)
            assert "\n" not in text


def test_good_files_still_read_after_the_header_checks(tmp_path):
    games = _good_batch(tmp_path)
    for name in ("good.npy", "good.npz", "good_z.npz"):
        np.testing.assert_array_equal(load_games(tmp_path / name), games)
    np.save(tmp_path / "ints.npy", np.arange(8).reshape(2, 2, 2))
    np.testing.assert_array_equal(load_game(tmp_path / "ints.npy"), np.arange(8).reshape(2, 2, 2))
    big_endian = np.arange(8, dtype=">f8").reshape(2, 2, 2)
    np.save(tmp_path / "be.npy", big_endian)
    np.testing.assert_array_equal(load_game(tmp_path / "be.npy"), big_endian)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_arrays_over_max_entries_are_refused_from_the_header(tmp_path, suffix):
    games = np.zeros((4, 2, 10, 10))
    path = tmp_path / f"g{suffix}"
    (np.save if suffix == ".npy" else np.savez)(path, games)
    assert load_games(path, max_entries=800).shape == games.shape  # exactly at the limit
    with pytest.raises(ValueError, match=r"declares shape \(4, 2, 10, 10\), 800 payoff numbers, over the limit "
                                         r"of 799 \(raise it with max_entries="):
        load_games(path, max_entries=799)
    with pytest.raises(ValueError, match="max_entries must be a positive integer"):
        load_games(path, max_entries=0)


def test_a_huge_declared_npy_is_refused_without_reading_it(tmp_path):
    # A 100-byte file whose header declares 10^12 float64 payoffs (8 TB).
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fp:
        np.lib.format.write_array_header_1_0(fp, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, 2, 1000, 500)})
    with pytest.raises(ValueError, match="over the limit of 33,554,432"):
        load_games(path)
    with pytest.raises(ValueError, match="truncated: shape"):
        load_games(path, max_entries=10**13)


def test_nfg_header_over_the_limit_is_refused_before_allocating(tmp_path):
    pytest.importorskip("pygambit", reason="pygambit (extra 'openspiel') reads .nfg files")
    for dims, body in (("3000x3000", "{ 3000 3000 }"), ("20000x20000", "{ 20000 20000 }")):
        path = tmp_path / f"huge_{dims}.nfg"
        path.write_text(f'NFG 1 R "" {{ "1" "2" }} {body}\n\n1 2 3 4\n')
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=f"declares a 2-player {dims} game, .* over the limit of "
                                                 f"{MAX_NFG_ENTRIES:,}"):
                load_game(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 10_000_000  # the 3000x3000 file took 4.2 GB before the header check
    names = " ".join(f'"s{i}"' for i in range(1100))  # outcome form, strategies named
    path = tmp_path / "named.nfg"
    path.write_text(f'NFG 1 R "t" {{ "1" "2" }}\n{{ {{ {names} }}\n{{ {names} }}\n}}\n""\n')
    with pytest.raises(ValueError, match="declares a 2-player 1100x1100 game"):
        load_game(path)
    with pytest.raises(ValueError, match="unreadable .nfg file"):  # allowed, then pygambit finds no payoffs
        load_game(path, max_entries=3_000_000)


def test_nfg_within_the_limit_and_damaged_nfg_files(tmp_path):
    pytest.importorskip("pygambit", reason="pygambit (extra 'openspiel') reads .nfg files")
    path = tmp_path / "pd.nfg"
    path.write_text(_PD)
    assert load_game(path, max_entries=8).shape == (2, 2, 2)
    with pytest.raises(ValueError, match="over the limit of 7"):
        load_game(path, max_entries=7)
    cases = {
        "overflow.nfg": (_PD.replace('"" 3, 3', '"" 1e400, 3'), "a payoff is beyond float64 range"),
        "empty.nfg": ("", "empty file"),
        "trunc.nfg": (_PD[:18], "not a Gambit .nfg file: the header ends early"),
        "quote.nfg": (_PD[:20], "not a Gambit .nfg file: unterminated string"),
        "nonfg.nfg": ("hello", "not a Gambit .nfg file: no NFG header"),
        "short.nfg": (_PD[: _PD.index("{ \"\" 5")], "unreadable .nfg file"),
        "oneplayer.nfg": ('NFG 1 R "" { "1" } { 2 }\n1 2\n', "declares 1 players"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError) as info:
            load_game(tmp_path / name)
        assert str(info.value).startswith(f"{tmp_path / name}: ") and message in str(info.value), name
        assert "\n" not in str(info.value)
