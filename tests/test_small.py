"""``solvers.small``: solve's and solve_batch's fast path for small games gives the general
path's answers bit for bit (the marginals to rounding), keeps every check, and steps aside where it must."""

from __future__ import annotations

import numpy as np
import pytest

import solvers
from solvers import memory, small
from solvers.solution import Status

SHAPES = [(2, 8, 8), (2, 3, 5), (3, 4, 3, 2)]
OPTIONS = [{}, {"concept": "ce"}, {"selection": "ms"}, {"method": "newton"}, {"face": "never"}, {"max_iter": 3}]


def _general(monkeypatch, fn, *args, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(small, "plan", lambda *a: None)
        return fn(*args, **kwargs)


def _fields(sol):
    arrays = (sol.joint, sol.duals, sol.eps, sol.gaps, sol.scale)
    scalars = (sol.gap, sol.duality_gap, sol.objective, sol.iterations, sol.status, sol.method, sol.concept)
    return arrays, scalars, {k: repr(v) for k, v in sol.info.items()}, tuple(sol.timings)


def _assert_same(a, b, stage_order=True):
    fa, fb = _fields(a), _fields(b)
    for x, y in zip(fa[0], fb[0], strict=True):
        np.testing.assert_array_equal(x, y)
    assert repr(fa[1]) == repr(fb[1]) and fa[2] == fb[2]
    assert fa[3] == fb[3] if stage_order else sorted(fa[3]) == sorted(fb[3])
    for x, y in zip(a.marginals, b.marginals, strict=True):  # summed in another order
        np.testing.assert_allclose(x, y, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", OPTIONS)
def test_solve_fast_path_is_bit_identical_to_the_general_path(monkeypatch, shape, options):
    rng = np.random.default_rng(len(shape) * 100 + len(options))
    for _ in range(3):
        game = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3)
        fast = solvers.solve(game, **options)
        _assert_same(fast, _general(monkeypatch, solvers.solve, game, **options))
        assert fast.status is Status.OPTIMAL or options.get("max_iter") == 3


def test_the_fast_path_runs_and_caches_its_plan(monkeypatch):
    game = np.random.default_rng(0).standard_normal((2, 5, 4))
    calls = []
    real = small.solve_compiled
    monkeypatch.setattr(small, "solve_compiled", lambda *a: calls.append(1) or real(*a))
    assert solvers.solve(game).ok and solvers.solve(game).ok
    assert len(calls) == 2
    assert small.plan((5, 4), "cce", "me", "auto", 1e-8, None, "auto", True) is \
        small.plan((5, 4), "cce", "me", "auto", 1e-8, None, "auto", True)


def test_bad_options_are_refused_on_every_call():
    game = np.random.default_rng(1).standard_normal((2, 3, 3))
    assert solvers.solve(game, max_iter=1).status in tuple(Status)
    for _ in range(2):
        with pytest.raises(TypeError, match="max_iter"):
            solvers.solve(game, max_iter=True)  # == 1, hashed like 1: not the cached plan
        with pytest.raises(ValueError, match="method"):
            solvers.solve(game, method="bogus")
        with pytest.raises(ValueError, match="tol"):
            solvers.solve(game, tol=-1.0)
    bad = game.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        solvers.solve(bad)


def test_an_explicit_memory_budget_takes_the_general_path(monkeypatch):
    game = np.random.default_rng(2).standard_normal((2, 4, 4))
    solvers.solve(game)  # the plan is cached
    monkeypatch.setattr(small, "_solve_small", lambda *a: (_ for _ in ()).throw(AssertionError("fast path")))
    monkeypatch.setenv(memory.ENV_VAR, "1G")
    assert solvers.solve(game).ok
    monkeypatch.delenv(memory.ENV_VAR)
    assert solvers.solve(game, memory_budget="1G").ok
    with pytest.raises(AssertionError, match="fast path"):
        solvers.solve(game)


def test_overflowing_duals_are_reported_through_the_fast_path(monkeypatch):
    prisoners = np.array([[[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]]])
    calls = []
    real = small.solve_compiled
    monkeypatch.setattr(small, "solve_compiled", lambda *a: calls.append(1) or real(*a))
    with pytest.warns(RuntimeWarning, match="overflow"):
        sol = solvers.solve(prisoners * 1e-307, "ce")  # scale ~1e307: the duals overflow
    assert calls and sol.ok and "duals_overflow" in sol.info and "normalised_duals" in sol.info


@pytest.mark.parametrize("options", [{}, {"concept": "ce"}, {"max_iter": 3}, {"selection": "ms"}])
def test_solve_batch_fast_path_matches_the_general_batch(monkeypatch, options):
    games = np.random.default_rng(4).standard_normal((40, 2, 4, 5))
    fast = solvers.solve_batch(games, **options)
    slow = _general(monkeypatch, solvers.solve_batch, games, **options)
    for name in ("joints", "duals", "eps", "gaps", "scale", "gap", "duality_gap", "objective", "iterations",
                 "status", "method"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    warm = solvers.solve_batch(games, duals0=fast.duals, **options)
    assert np.all(warm.iterations <= fast.iterations)


def test_unusual_arrays_give_the_general_paths_answer(monkeypatch):
    base = np.random.default_rng(5).standard_normal((2, 6, 10))
    readonly = base[:, :, ::2].copy()
    readonly.flags.writeable = False
    for game in (readonly, base[:, :, ::2], np.asfortranarray(base), base.astype(">f8")):
        _assert_same(solvers.solve(game), _general(monkeypatch, solvers.solve, game))


@pytest.mark.parametrize("options", [{"concept": "ce"}, {"max_iter": 3}, {"concept": "ce", "selection": "ms",
                                                                          "max_iter": 3}])
def test_a_game_newton_leaves_short_gets_the_batch_paths_plan(monkeypatch, options):
    """A game the first Newton pass leaves short of tol (5x5 ME-CE game 3 needs the face;
    max_iter=3 stops every game short) goes on with the rest of ``refine_batch``'s plan
    in ``solve`` as in ``solve_batch``: the same stages and iterations, the same
    arrays (to rounding: ``normalise_batch`` and the single game's normalisation may
    differ in the last bit; bit for bit on the face game), fast path or general."""
    games = np.random.default_rng(8).standard_normal((4, 2, 5, 5))
    batch = solvers.solve_batch(games, **options)
    if options == {"concept": "ce"}:
        assert batch[3].method == "newton+face+newton" and batch[3].ok
    for i, game in enumerate(games):
        one = solvers.solve(game, **options)
        _assert_same(one, _general(monkeypatch, solvers.solve, game, **options))
        other = batch[i]
        assert (one.method, one.status, one.iterations) == (other.method, other.status, other.iterations)
        if i == 3 and options == {"concept": "ce"}:
            _assert_same(one, other, stage_order=False)
        for x, y in ((one.joint, other.joint), (one.duals, other.duals), (one.gaps, other.gaps)):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def test_refine_batch_resume_needs_a_plan_that_starts_with_newton():
    from solvers.refine import refine_batch
    from solvers.selection import as_selection, resolve_batch

    games = np.random.default_rng(8).standard_normal((1, 2, 3, 3))
    norm = solvers.game.normalise_batch(games)
    params = resolve_batch(as_selection("me"), norm)
    resume = np.zeros((1, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="resume"):
        refine_batch(norm.payoffs, "ce", params, None, "newton", face="always", resume=resume)
