"""Faces guessed from Newton's iterate and certified without an LP (solvers.face_guess)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import solvers
from solvers import face_cert, face_guess, refine
from solvers import kernels as kn
from solvers import policy as pol
from solvers.face import Face, face_certified, support_face
from solvers.gains import gain_layout
from solvers.game import normalise_batch
from solvers.newton import OPTIMAL, NewtonOptions, newton_batch
from solvers.refine import _problem_of
from solvers.selection import Selection, resolve_batch

#: 64 random 8x8 games (seed 26): ME-CE games 14 and 31 stall at ``face_after`` (100)
#: Newton iterations on a face, and both faces are guessed and certified LP-free. (Which
#: games stall depends on Newton's damping and the cap: at ``face_after`` 60, seed 3's
#: 10, 38, 48, 57; with the defaults before h-ceit's, 2, 10, 32, 46, 48, 57.)
FACE_GAMES_8 = (14, 31)


def _games(shape, seed=26, num=64):
    return np.random.default_rng(seed).standard_normal((num, 2) + shape)


@pytest.fixture
def lp_calls(monkeypatch):
    """Counts the facial-reduction LPs ``refine_batch`` runs."""
    calls = []

    def counted(problem):
        calls.append(problem)
        return support_face(problem)

    monkeypatch.setattr(refine, "support_face", counted)
    return calls


def _solve(games, guess: bool, monkeypatch):
    monkeypatch.setattr(pol, "DEFAULT_POLICY", dataclasses.replace(pol.SolverPolicy(), face_guess=guess))
    return solvers.solve_batch(games, "ce", "me")


class _Stalled:
    """The first Newton pass (``face_after`` iterations) of a batch of ME-CE games."""

    def __init__(self, games):
        shape = games.shape[2:]
        norm = normalise_batch(games)
        self.layout = lay = gain_layout(shape, "ce")
        num_games, num_joint, num = games.shape[0], lay.rows.shape[0], lay.num_constraints
        params = resolve_batch(Selection("me"), norm)
        full = refine._batched_params(params, num_games, 2, num_joint)
        self.base, self.eps_hat, self.eps_plus, self.rho = full
        self.values = kn.gain_values_serial(norm.payoffs.reshape(num_games, 2, num_joint), lay.slot_player, lay.dev)
        self.free = np.zeros((num_games, num), dtype=bool)
        self.st = face_cert.structure(lay.rows, lay.dev, lay.slot_player, num)
        self.res = newton_batch(lay.rows, self.values, lay.player, *full, self.free, np.zeros((num_games, num)),
                                NewtonOptions(max_iter=pol.DEFAULT_POLICY.face_after), parallel=False)

    def problem(self, b):
        return _problem_of(self.layout, self.values, self.base, self.eps_hat, self.eps_plus, self.rho, self.free, b)


def test_games_on_a_face_are_certified_without_the_lp(monkeypatch, lp_calls):
    games = _games((8, 8))
    guessed = _solve(games, True, monkeypatch)
    assert len(lp_calls) == 0
    with_lp = _solve(games, False, monkeypatch)
    assert len(lp_calls) == len(FACE_GAMES_8)
    for b, (one, two) in enumerate(zip(guessed, with_lp, strict=True)):
        assert one.status == two.status == "optimal"
        assert one.method == two.method == ("newton+face+newton" if b in FACE_GAMES_8 else "newton")
        # The same maximiser (unique) to well within what tol 1e-8 allows.
        np.testing.assert_allclose(one.joint, two.joint, rtol=0, atol=1e-8)
        if b in FACE_GAMES_8:
            assert one.joint.min() == 0.0 and one.info["face"]
            # The lifted duals are non-negative duals of the full problem with the same joint.
            assert np.all(np.asarray(one.duals) >= 0)


def test_guessed_faces_are_proved_faces_and_contain_the_minimal_one():
    """Every face ``guess_faces`` returns holds the LP's support and its certificate is one
    ``face.face_certified`` accepts; games off a face get none."""
    stalled = _Stalled(_games((8, 8)))
    res = stalled.res
    found, support, equalities, cert = face_guess.guess_faces(stalled.layout.rows, stalled.values, stalled.st,
                                                              res.joint, res.alpha)
    assert set(np.flatnonzero(found)) >= set(FACE_GAMES_8)
    for b in np.flatnonzero(found):
        problem = stalled.problem(b)
        lp_face = support_face(problem)
        assert np.all(support[b] >= lp_face.support)  # a face holds every feasible joint
        # The guessed equality rows touch no joint of the support.
        assert not np.any(stalled.st.touch[support[b]] & equalities[b][stalled.layout.rows][support[b]])
        face = Face(support[b], np.zeros_like(equalities[b]), cert[b], True, "guessed", 0.0)
        assert face_certified(problem, face)
        assert np.all(cert[b][~equalities[b]] == 0.0)


def test_no_face_is_certified_for_an_interior_maximiser():
    """A maximiser with full support is a feasible joint on every action: no certificate
    can exist, whatever iterate and duals the guess is fed."""
    stalled = _Stalled(_games((8, 8), seed=3))  # seed 3 has interior maximisers (26 none)
    res = stalled.res
    interior = np.flatnonzero((res.status == OPTIMAL) & (res.joint.min(axis=1) > 1e-6))
    assert interior.size >= 3
    rng = np.random.default_rng(0)
    for b in interior[:6]:
        for _ in range(4):
            joint = res.joint[b].copy()
            joint[rng.choice(joint.size, 8, replace=False)] = 1e-15  # claim a face
            alpha = np.abs(res.alpha[b] + rng.standard_normal(res.alpha.shape[1]) * 1e3)
            found = face_guess.guess_faces(stalled.layout.rows, stalled.values[b:b + 1], stalled.st,
                                           joint[None], alpha[None])[0]
            assert not found[0]


def test_thresholds_split_every_gap_largest_first():
    cuts = face_guess.thresholds(np.array([0.5, 1e-9, 1e-3, 0.0]), np.array([1e-2, 1e-6]), 1.0)
    assert np.all(np.diff(cuts) <= 0)
    for lo, hi in ((1e-3, 0.5), (1e-9, 1e-3), (0.0, 1e-9)):
        assert np.any((cuts > lo) & (cuts < hi))


def test_a_guess_that_does_not_solve_falls_back_to_the_lp(monkeypatch, lp_calls):
    """A certified guess on which Newton falls short (here: the whole game, which stalls
    again) leaves the game to the LP with its stalled duals: the same answer as without
    the guess, the guessed pass's iterations counted."""
    games = _games((8, 8))[list(FACE_GAMES_8)]
    with_lp = _solve(games, False, monkeypatch)
    lp_calls.clear()

    def everything(rows, values, st, joint, alpha, masses=face_guess.GUESS_MASSES):
        num_games, num = alpha.shape
        return (np.ones(num_games, dtype=bool), np.ones(joint.shape, dtype=bool), np.zeros((num_games, num),
                dtype=bool), np.zeros((num_games, num)))

    monkeypatch.setattr(face_guess, "guess_faces", everything)
    fallback = _solve(games, True, monkeypatch)
    assert len(lp_calls) == len(games)
    for one, two in zip(fallback, with_lp, strict=True):
        assert one.status == two.status == "optimal" and one.method == two.method == "newton+face+newton"
        np.testing.assert_array_equal(one.joint, two.joint)
        assert one.iterations > two.iterations


def test_games_whose_guess_fails_keep_the_lp_path(monkeypatch, lp_calls):
    """The 5x5 ME-CE games (seed 8) that stall (two at the time of writing; which ones
    depends on the last bits of the iterates: seed 3's stopped stalling when the CE block
    direction came) stall on faces Newton's duals do not certify: with the guess on, the
    LP still runs on each, with the same answers as with it off."""
    games = _games((5, 5), seed=8)
    with_lp = _solve(games, False, monkeypatch)
    stalled = len(lp_calls)
    assert stalled >= 1
    lp_calls.clear()
    guessed = _solve(games, True, monkeypatch)
    assert len(lp_calls) == stalled
    for one, two in zip(guessed, with_lp, strict=True):
        assert one.status == two.status == "optimal" and one.method == two.method
        np.testing.assert_array_equal(one.joint, two.joint)


def test_nonzero_eps_hat_takes_the_lp(monkeypatch, lp_calls):
    """``face_cert``'s certificate assumes ``eps_hat = 0``: with a target approximation the
    LP decides, as before."""
    games = _games((8, 8))[list(FACE_GAMES_8)]
    monkeypatch.setattr(pol, "DEFAULT_POLICY", pol.SolverPolicy())
    sol = solvers.solve_batch(games, "ce", Selection("me", eps_hat=1e-3))
    assert all(s.status == "optimal" for s in sol)
    assert len(lp_calls) == sum("face" in s.method for s in sol)
