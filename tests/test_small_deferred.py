"""The fast path's ``Solution`` with deferred array fields, its plan memo and its buffer
reductions (issue 23): the same values, read-only mappings, pickling and honesty as an
eagerly built ``Solution``."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from types import MappingProxyType

import numpy as np
import pytest

import solvers
from solvers import policy, small
from solvers.game import is_float64_game
from solvers.small_screen import read_buffer
from solvers.solution import Solution, Status

GAME = np.random.default_rng(11).standard_normal((2, 4, 3))
FIELDS = [f.name for f in dataclasses.fields(Solution)]


def _general(monkeypatch, game, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(small, "plan", lambda *a: None)
        return solvers.solve(game, **kwargs)


def _same(a: Solution, b: Solution) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if name == "marginals":
            for u, v in zip(x, y, strict=True):
                np.testing.assert_allclose(u, v, rtol=1e-14, atol=1e-300)
        elif name == "timings":
            assert list(x) == list(y)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        elif isinstance(x, MappingProxyType):
            assert repr(dict(x)) == repr(dict(y))
        else:
            assert repr(x) == repr(y), name


def test_every_field_reads_as_the_general_paths_whichever_is_read_first(monkeypatch):
    ref = _general(monkeypatch, GAME)
    for first in FIELDS:
        sol = solvers.solve(GAME)
        getattr(sol, first)
        _same(sol, ref)
        assert sol.joint is sol.joint  # built once
    assert isinstance(solvers.solve(GAME).info, MappingProxyType)
    with pytest.raises(TypeError):
        solvers.solve(GAME).info["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        solvers.solve(GAME).timings["x"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        solvers.solve(GAME).joint = None  # type: ignore[misc]


def test_pickle_copy_and_replace_carry_every_field(monkeypatch):
    ref = _general(monkeypatch, GAME)
    for make in (lambda s: pickle.loads(pickle.dumps(s)), copy.copy, copy.deepcopy,
                 lambda s: dataclasses.replace(s, iterations=s.iterations)):
        sol = make(solvers.solve(GAME))
        assert "_deferred" not in vars(sol)
        _same(sol, ref)
    assert repr(solvers.solve(GAME)) == repr(ref)


def test_unknown_attributes_still_raise():
    sol = solvers.solve(GAME)
    with pytest.raises(AttributeError, match="no_such_field"):
        sol.no_such_field  # noqa: B018
    assert not hasattr(sol, "__array__")
    assert sol.ok and sol.normalised_gap == pytest.approx(float(np.max(sol.gaps * sol.scale)))


@pytest.mark.parametrize("part", ["gaps", "eps"])
def test_a_non_finite_gap_or_eps_written_after_the_solve_is_caught_with_its_message(monkeypatch, part):
    real = small._solve_small

    def corrupt(game, ints, floats, buf):
        # A kernel that writes an inf there: its last step screens the buffer it leaves.
        code, (_, _, its, *_) = real(game, ints, floats, buf)
        cuts = small.plan(GAME.shape[1:], "cce", "me", "auto", 1e-8, None, "auto", True).cut_array
        buf[cuts[6] if part == "gaps" else cuts[7]] = np.inf
        screen, gap, _, *stats, finite = read_buffer(buf, cuts)
        return code, (screen, gap, its, *stats, finite != 0.0)

    monkeypatch.setattr(small, "_solve_small", corrupt)
    sol = solvers.solve(GAME)
    assert sol.status is Status.INACCURATE
    assert f"{part[:-1] if part == 'gaps' else part}" in sol.info["status_reason"]
    assert "inf" in sol.info["status_reason"] and np.isinf(getattr(sol, part)[0])


def test_read_buffer_reductions_match_numpy():
    plan = small.plan((4, 3), "cce", "me", "auto", 1e-8, None, "auto", True)
    rng = np.random.default_rng(3)
    c = plan.cuts
    for fill in (0.5, np.nan, np.inf, -np.inf):
        buf = rng.standard_normal(c[-1])
        buf[c[6] + 1] = fill
        (total, low, gaps_finite, eps_finite), gap, *stats = read_buffer(buf, plan.cut_array)
        gaps = buf[c[6]:c[7]]
        assert gap == np.max(gaps) or (np.isnan(gap) and np.isnan(np.max(gaps)))
        assert gaps_finite == bool(np.isfinite(gaps).all()) and eps_finite == bool(np.isfinite(buf[c[7]:c[8]]).all())
        assert total == pytest.approx(float(np.sum(buf[c[4]:c[5]])), rel=1e-12) and low == buf[c[4]:c[5]].min()
        assert stats == buf[c[11]:].tolist()


def test_the_plan_memo_follows_the_arguments_and_the_policy(monkeypatch):
    first = small.plan((4, 3), "cce", "me", "auto", 1e-8, None, "auto", True)
    assert small.plan((4, 3), "cce", "me", "auto", 1e-8, None, "auto", True) is first
    assert small.plan((3, 4), "cce", "me", "auto", 1e-8, None, "auto", True) is not first
    assert small.plan((4, 3), "ce", "me", "auto", 1e-8, None, "auto", True).concept == "ce"
    assert small.plan((4, 3), "cce", "me", "auto", 1e-8, 1, "auto", True) is not None
    assert small.plan((4, 3), "cce", "me", "auto", 1e-8, True, "auto", True) is None  # True == 1: refused
    monkeypatch.setattr(policy, "DEFAULT_POLICY", dataclasses.replace(policy.DEFAULT_POLICY))
    again = small.plan((4, 3), "cce", "me", "auto", 1e-8, None, "auto", True)
    assert again is not first and again.policy is policy.DEFAULT_POLICY
    monkeypatch.setattr(small, "_PLANS", {})
    assert small.plan((4, 3), "cce", "me", "auto", 1e-8, None, "auto", True) is not again


def test_is_float64_game_keeps_its_rules():
    assert is_float64_game(GAME)
    assert is_float64_game(GAME.astype(np.dtype("float64").newbyteorder("=")))
    assert not is_float64_game(GAME.astype(">f8"))
    assert not is_float64_game(GAME.astype(np.float32))
    assert not is_float64_game(np.zeros((2, 0, 3)))
    assert not is_float64_game(np.zeros((3, 2, 2)))
    assert not is_float64_game(GAME.tolist())
