"""``solve``'s one compiled call on a small game (issue 23): ``small._solve_small`` returns the
honesty screen of the buffer it leaves, takes the game as given (one compiled signature per
game dimension, non-C games made contiguous first), and ``small.solve_game``'s memo of the
last call steps aside for any other game, option or a replaced ``plan``."""

from __future__ import annotations

import numpy as np
import pytest

import solvers
from solvers import small
from solvers.small_screen import read_buffer

SHAPES = [(2, 4, 3), (3, 3, 2, 2)]


def _general(monkeypatch, game, *args, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(small, "plan", lambda *a: None)
        return solvers.solve(game, *args, **kwargs)


def _same(a, b):
    for name in ("joint", "duals", "eps", "gaps", "scale"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("gap", "duality_gap", "objective", "iterations", "status", "method"):
        assert repr(getattr(a, name)) == repr(getattr(b, name)), name


@pytest.mark.parametrize("shape", SHAPES)
def test_the_kernel_returns_the_screen_of_the_buffer_it_leaves(shape):
    plan = small.plan(shape[1:], "cce", "me", "auto", 1e-8, None, "auto", True)
    game = np.random.default_rng(len(shape)).standard_normal(shape)
    buf = np.full(plan.buf_size, np.nan)
    code, (screen, gap, its, *stats, finite) = small._solve_small(game, *plan.packed_args, buf)
    assert code == 0 and type(its) is int and type(finite) is bool
    again = read_buffer(buf, plan.cut_array)
    assert (screen, gap, float(its), *stats) == again[:-1] and finite == (again[-1] == 1.0)
    assert stats[0] == 0.0 and finite  # OPTIMAL
    assert screen[0] == pytest.approx(1.0, abs=1e-12) and screen[1] >= 0.0 and screen[2] and screen[3]
    # The game flattened to [N, |A|] (the wrapper's reshape) fills the same buffer.
    flat = np.full(plan.buf_size, np.nan)
    assert small._solve_small(game.reshape(shape[0], -1), *plan.packed_args, flat)[0] == 0
    np.testing.assert_array_equal(buf, flat)


def test_non_finite_and_overflowing_games_return_their_codes_and_solve_raises():
    plan = small.plan((3, 3), "cce", "me", "auto", 1e-8, None, "auto", True)
    game = np.random.default_rng(0).standard_normal((2, 3, 3))
    for value, code in ((np.nan, -1), (np.inf, -1), (1.7e308, -2)):
        bad = game.copy()
        bad[1, 2, 0] = value
        if code == -2:
            bad[1, 0, 0] = -1.7e308  # the spread overflows
        assert small._solve_small(bad, *plan.packed_args, np.empty(plan.buf_size))[0] == code
        with pytest.raises(ValueError):
            solvers.solve(bad)


def test_non_contiguous_games_share_the_c_order_signature(monkeypatch):
    base = np.random.default_rng(5).standard_normal((2, 6, 10))
    for game in (base[:, :, ::2], np.asfortranarray(base[:, :, :5]), base[:, :, 5:]):
        assert not game.flags.c_contiguous
        _same(solvers.solve(game), _general(monkeypatch, game))
    for sig in small._solve_small.signatures:
        assert sig[0].layout == "C", sig


def test_the_last_calls_plan_steps_aside_for_other_games_and_options(monkeypatch):
    rng = np.random.default_rng(7)
    game = rng.standard_normal((2, 4, 3))
    first = solvers.solve(game)
    assert first.ok
    # Same shape, other dtype / container: the general path's conversion, the same answer.
    _same(solvers.solve(game.astype(np.float32)), _general(monkeypatch, game.astype(np.float32)))
    _same(solvers.solve([game[0], game[1]]), first)
    # Another shape, another concept, a non-default tol (the same value, another object).
    other = rng.standard_normal((2, 3, 4))
    _same(solvers.solve(other), _general(monkeypatch, other))
    _same(solvers.solve(game, "ce"), _general(monkeypatch, game, "ce"))
    tol = float("1e-8")
    _same(solvers.solve(game, tol=tol), first)
    capped = solvers.solve(game, max_iter=2)  # the memo's plan would have run Newton to the end
    assert capped.method != "newton"
    _same(capped, _general(monkeypatch, game, max_iter=2))
    # A replaced plan decides even right after a fast call with the same arguments.
    assert solvers.solve(game).ok
    monkeypatch.setattr(small, "plan", lambda *a: None)
    monkeypatch.setattr(small, "_solve_small", lambda *a: (_ for _ in ()).throw(AssertionError("fast path")))
    _same(solvers.solve(game), first)


def test_pack_refuses_a_layout_it_cannot_read():
    plan = small.plan((4, 3), "cce", "me", "auto", 1e-8, None, "auto", True)
    with pytest.raises(ValueError, match="cuts"):
        small.pack(plan.kernel_args, True, plan.cuts[:-1])
