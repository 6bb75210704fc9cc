"""hybrid_nes.diff: gradients of selected (C)CEs against central finite differences of
the exact solver (``solvers.solve`` on the raw inputs), transforms, invariances, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import solvers
from hybrid_nes import diff
from hybrid_nes.diff import ffi, forward

FD_STEP = 1e-5
FD_TOL = 1e-12  # the exact solver's tolerance for the finite differences
REL = 1e-5


pytestmark = pytest.mark.usefixtures("x64")


def _game(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(shape),) + shape)


def _weights(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(1000 + seed).standard_normal(shape)


def _directional_fd(fn, x: np.ndarray, direction: np.ndarray) -> float:
    return (fn(x + FD_STEP * direction) - fn(x - FD_STEP * direction)) / (2 * FD_STEP)


def _assert_close(analytic: float, numeric: float, what: str) -> None:
    err = abs(analytic - numeric)
    assert err <= REL * max(abs(numeric), 1e-3), f"{what}: analytic {analytic!r} vs FD {numeric!r} (err {err:.2e})"


def _check_payoff_gradient(g: np.ndarray, concept: str, selection: str = "me", seeds=(0, 1), **params):
    shape = g.shape[1:]
    v = _weights(0, shape)

    def loss_jax(pay):
        return jnp.sum(diff.solve(pay, concept, selection, **params).joint * v)

    def loss_np(pay):
        sol = solvers.solve(pay, concept, selection, tol=FD_TOL, **params)
        assert sol.ok, sol
        return float(np.sum(sol.joint * v))

    grad = np.asarray(jax.grad(loss_jax)(jnp.asarray(g)))
    assert np.all(np.isfinite(grad))
    for s in seeds:
        d = np.random.default_rng(50 + s).standard_normal(g.shape)
        _assert_close(float(np.sum(grad * d)), _directional_fd(loss_np, g, d), f"{concept} {selection} dir {s}")
    return grad


def test_cce_8x8_payoff_gradient_matches_finite_differences():
    g = _game(0, (8, 8))
    out = diff.solve(jnp.asarray(g), "cce")
    assert int(out.status) == 0 and bool(jnp.all(out.support))
    np.testing.assert_allclose(np.asarray(out.joint), solvers.solve(g, "cce", tol=1e-10).joint, atol=1e-9)
    grad = _check_payoff_gradient(g, "cce")
    # Invariances (DESIGN §5): the joint ignores per-player offset and scale, so the
    # gradient is orthogonal to them: sum over each player's slice is 0, and so is <G_p, grad_p>.
    np.testing.assert_allclose(grad.reshape(2, -1).sum(axis=1), 0.0, atol=1e-10)
    centred = g.reshape(2, -1) - g.reshape(2, -1).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(np.sum(centred * grad.reshape(2, -1), axis=1), 0.0, atol=1e-10)


def test_ce_8x8_interior_payoff_gradient():
    g = _game(2, (8, 8))
    out = diff.solve(jnp.asarray(g), "ce")
    assert int(out.status) == 0 and bool(jnp.all(out.support)), "seed 2 is an interior 8x8 ME-CE"
    _check_payoff_gradient(g, "ce")


def test_ce_8x8_on_a_face_payoff_gradient():
    g = _game(0, (8, 8))
    out = diff.solve(jnp.asarray(g), "ce")
    assert int(out.status) == 0
    support = np.asarray(out.support)
    assert 0 < support.sum() < 64, "seed 0's ME-CE lies on a face of the simplex"
    assert np.all(np.asarray(out.joint)[~support] == 0.0)
    grad = _check_payoff_gradient(g, "ce")
    np.testing.assert_allclose(grad.reshape(2, -1).sum(axis=1), 0.0, atol=1e-9)


def test_face_certified_without_an_lp_matches_the_lp_path(monkeypatch):
    g = jnp.asarray(_game(0, (8, 8)))  # on a face: two of player 0's actions never played
    lps = []
    real_lp, real_solve_one = forward.face_lp, forward._solve_one
    monkeypatch.setattr(forward, "face_lp", lambda *a, **k: lps.append(1) or real_lp(*a, **k))
    certified = diff.solve(g, "ce")
    assert lps == [], "the face is certified from Newton's iterate (hybrid_nes.diff.face_cert), no LP"
    monkeypatch.setattr(forward, "_solve_one", lambda *a, guess: real_solve_one(*a, guess=None))
    monkeypatch.setattr(ffi, "available", lambda: False)  # the FFI kernel serves guessed faces
    jax.clear_caches()
    by_lp = diff.solve(g, "ce")
    assert lps, "the LP path ran"
    assert int(certified.status) == int(by_lp.status) == 0
    np.testing.assert_array_equal(np.asarray(certified.support), np.asarray(by_lp.support))
    np.testing.assert_array_equal(np.asarray(certified.free), np.asarray(by_lp.free))
    np.testing.assert_allclose(np.asarray(certified.joint), np.asarray(by_lp.joint), atol=1e-12)
    jax.clear_caches()  # the traces without the FFI kernel


def test_face_change_within_face_tol_is_reported():
    g = _game(2, (8, 8))
    g[0, 7] = g[0, 6] - 1e-9  # player 0's action 7 dominated by a margin far below face_tol
    out = diff.solve(jnp.asarray(g), "ce")
    assert int(out.status) == diff.FACE_CHANGE
    g[0, 7] = g[0, 6] - 1e-3  # the same face, dominated by a clear margin
    out = diff.solve(jnp.asarray(g), "ce")
    assert int(out.status) == 0 and np.asarray(out.support).sum() < 64


def test_ce_3_player_4x4x4_payoff_gradient():
    g = _game(1, (4, 4, 4))
    assert int(diff.solve(jnp.asarray(g), "ce").status) == 0
    _check_payoff_gradient(g, "ce", seeds=(0,))


def test_duals_gradient_matches_finite_differences():
    g = _game(1, (8, 8))
    w = _weights(3, (16,))

    def loss_jax(pay):
        return jnp.sum(diff.solve(pay, "cce").duals * w)

    def loss_np(pay):
        return float(np.sum(solvers.solve(pay, "cce", tol=FD_TOL).duals * w))

    grad = np.asarray(jax.grad(loss_jax)(jnp.asarray(g)))
    d = np.random.default_rng(7).standard_normal(g.shape)
    _assert_close(float(np.sum(grad * d)), _directional_fd(loss_np, g, d), "duals")


def test_mre_target_gradient():
    g = _game(3, (8, 8))
    logits = np.random.default_rng(4).standard_normal((8, 8))
    target = np.exp(logits) / np.exp(logits).sum()
    v = _weights(1, (8, 8))

    def loss_jax(t):
        return jnp.sum(diff.solve(jnp.asarray(g), "ce", "mre", target=t).joint * v)

    def loss_np(t):
        return float(np.sum(solvers.solve(g, "ce", "mre", target=t, tol=FD_TOL).joint * v))

    grad = np.asarray(jax.grad(loss_jax)(jnp.asarray(target)))
    d = np.random.default_rng(8).standard_normal((8, 8)) * target
    d -= target * d.sum()  # stay on the simplex: solvers requires sum 1
    _assert_close(float(np.sum(grad * d)), _directional_fd(loss_np, target, d), "mre target")


def test_mwme_welfare_and_mu_gradients():
    g = _game(4, (8, 8))
    welfare = np.random.default_rng(5).standard_normal((8, 8))
    v = _weights(2, (8, 8))

    def loss_jax(wf, mu):
        return jnp.sum(diff.solve(jnp.asarray(g), "cce", "mwme", welfare=wf, mu=mu).joint * v)

    def loss_np(wf, mu=2.0):
        return float(np.sum(solvers.solve(g, "cce", "mwme", welfare=wf, mu=mu, tol=FD_TOL).joint * v))

    gw, gmu = jax.grad(loss_jax, argnums=(0, 1))(jnp.asarray(welfare), 2.0)
    d = np.random.default_rng(9).standard_normal((8, 8))
    _assert_close(float(np.sum(np.asarray(gw) * d)), _directional_fd(loss_np, welfare, d), "mwme welfare")
    fd_mu = (loss_np(welfare, 2.0 + FD_STEP) - loss_np(welfare, 2.0 - FD_STEP)) / (2 * FD_STEP)
    _assert_close(float(gmu), fd_mu, "mwme mu")


def test_mw_payoff_gradient_through_welfare():
    _check_payoff_gradient(_game(5, (6, 6)), "ce", "mw", seeds=(0,), mu=1.0)


def test_eps_hat_gradient():
    g = _game(6, (8, 8))
    v = _weights(4, (8, 8))
    eps = np.array([0.05, 0.1])

    def loss_jax(e):
        return jnp.sum(diff.solve(jnp.asarray(g), "cce", eps_hat=e).joint * v)

    def loss_np(e):
        return float(np.sum(solvers.solve(g, "cce", eps_hat=e, tol=FD_TOL).joint * v))

    grad = np.asarray(jax.grad(loss_jax)(jnp.asarray(eps)))
    for p in range(2):
        _assert_close(float(grad[p]), _directional_fd(loss_np, eps, np.eye(2)[p]), f"eps_hat[{p}]")


def test_ms_soft_constraints_payoff_gradient():
    _check_payoff_gradient(_game(7, (6, 6)), "cce", "ms", seeds=(0,))


def test_jit_and_vmap_agree_with_grad():
    games = jnp.asarray(np.stack([_game(s, (5, 5)) for s in range(3)]))
    v = jnp.asarray(_weights(0, (5, 5)))

    def loss(pay):
        return jnp.sum(diff.solve(pay, "ce").joint * v)

    # One eager gradient (each eager call re-traces: ~2 s), the jitted one on every game,
    # and the eager vmap (its own code path in diff.api): plain == jit == vmap.
    plain = np.asarray(jax.grad(loss)(games[1]))
    assert np.abs(plain).max() > 1e-3
    grad_jit = jax.jit(jax.grad(loss))
    jitted = np.stack([np.asarray(grad_jit(games[i])) for i in range(3)])
    batched = np.asarray(jax.vmap(jax.grad(loss))(games))
    np.testing.assert_allclose(jitted[1], plain, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(batched, jitted, rtol=1e-9, atol=1e-12)


def test_float32_mode_runs_and_is_close():
    g = _game(0, (8, 8))  # the float64 half reuses the compiled 8x8 CCE of the first test
    v = _weights(0, (8, 8))
    jax.config.update("jax_enable_x64", False)
    try:
        out = diff.solve(jnp.asarray(g, dtype=jnp.float32), "cce")
        assert out.joint.dtype == jnp.float32
        g32 = np.asarray(jax.grad(lambda p: jnp.sum(diff.solve(p, "cce").joint * v))(jnp.asarray(g, jnp.float32)))
    finally:
        jax.config.update("jax_enable_x64", True)
    g64 = np.asarray(jax.grad(lambda p: jnp.sum(diff.solve(p, "cce").joint * v))(jnp.asarray(g)))
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, atol=1e-4 * np.abs(g64).max())


@settings(max_examples=3, deadline=None, derandomize=True)
@given(seed=st.integers(0, 50), swap=st.booleans(), perm_seed=st.integers(0, 1000))
def test_gradients_are_equivariant_under_permutations(seed, swap, perm_seed):
    g = _game(seed, (5, 5))
    v = _weights(seed, (5, 5))
    rng = np.random.default_rng(perm_seed)
    p0, p1 = rng.permutation(5), rng.permutation(5)

    def transform(x_players):  # payoffs [2, 5, 5]: permute actions, then maybe swap players
        y = x_players[:, p0][:, :, p1]
        return y[::-1].transpose(0, 2, 1) if swap else y

    def transform_joint(j):
        y = j[p0][:, p1]
        return y.T if swap else y

    def grad_of(pay, weights):
        return np.asarray(jax.grad(lambda x: jnp.sum(diff.solve(x, "ce").joint * weights))(jnp.asarray(pay)))

    base = grad_of(g, v)
    moved = grad_of(transform(g), transform_joint(v))
    np.testing.assert_allclose(moved, transform(base), rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------------
# Forward mode (diff.jvp).
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("concept, seed", [("cce", 0), ("ce", 0)])  # ce seed 0: on a face
def test_jvp_matches_finite_differences_and_the_gradient(concept, seed):
    g = _game(seed, (8, 8))
    v = _weights(0, (8, 8))
    d = np.random.default_rng(60 + seed).standard_normal(g.shape)
    sol, tan = diff.jvp(jnp.asarray(g), jnp.asarray(d), concept)
    assert int(sol.status) == 0
    np.testing.assert_allclose(np.asarray(sol.joint), np.asarray(diff.solve(jnp.asarray(g), concept).joint),
                               atol=1e-12)

    def loss_np(pay):
        return float(np.sum(solvers.solve(pay, concept, tol=FD_TOL).joint * v))

    analytic = float(np.sum(np.asarray(tan.joint) * v))
    _assert_close(analytic, _directional_fd(loss_np, g, d), f"{concept} jvp")
    # Forward and reverse mode are transposes of one linear map.
    grad = np.asarray(jax.grad(lambda p: jnp.sum(diff.solve(p, concept).joint * v))(jnp.asarray(g)))
    np.testing.assert_allclose(analytic, np.sum(grad * d), rtol=1e-9, atol=1e-12)
    jitted = jax.jit(lambda p, q: diff.jvp(p, q, concept)[1].joint)(jnp.asarray(g), jnp.asarray(d))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(tan.joint), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(np.asarray(tan.marginals[0]), np.asarray(tan.joint).sum(axis=1), atol=1e-14)
    np.testing.assert_allclose(np.asarray(tan.joint).sum(), 0.0, atol=1e-12)


def test_jvp_duals_and_eps_hat_direction():
    g = _game(6, (8, 8))
    eps = jnp.asarray([0.05, 0.1])
    w = _weights(3, (16,))
    d = np.random.default_rng(61).standard_normal(g.shape)
    sol, tan = diff.jvp(jnp.asarray(g), jnp.asarray(d), "cce", eps_hat=eps, eps_hat_dot=jnp.asarray([1.0, -0.5]))

    def loss(pay, e):
        return jnp.sum(diff.solve(pay, "cce", eps_hat=e).duals * w)

    gp, ge = jax.grad(loss, argnums=(0, 1))(jnp.asarray(g), eps)
    expected = float(np.sum(np.asarray(gp) * d) + np.asarray(ge) @ np.array([1.0, -0.5]))
    np.testing.assert_allclose(float(np.sum(np.asarray(tan.duals) * w)), expected, rtol=1e-9)

    def duals_np(pay):
        return float(np.sum(solvers.solve(pay, "cce", eps_hat=np.asarray(eps), tol=FD_TOL).duals * w))

    _, tan_p = diff.jvp(jnp.asarray(g), jnp.asarray(d), "cce", eps_hat=eps)
    _assert_close(float(np.sum(np.asarray(tan_p.duals) * w)), _directional_fd(duals_np, g, d), "jvp duals")


def test_jvp_under_jit_and_vmap_over_directions():
    g = jnp.asarray(_game(2, (5, 5)))
    dirs = jnp.asarray(np.random.default_rng(62).standard_normal((3, 2, 5, 5)))
    one = np.stack([np.asarray(diff.jvp(g, dirs[i], "ce")[1].joint) for i in range(3)])
    batched = np.asarray(jax.jit(jax.vmap(lambda d: diff.jvp(g, d, "ce")[1].joint))(dirs))
    np.testing.assert_allclose(batched, one, rtol=1e-9, atol=1e-12)


def test_jvp_bad_input_and_degenerate_points():
    g = jnp.asarray(_game(0, (4, 4)))
    with pytest.raises(ValueError, match="payoffs_dot has shape"):
        diff.jvp(g, jnp.zeros((2, 4, 3)), "ce")
    with pytest.raises(ValueError, match="target_dot is given"):
        diff.jvp(g, jnp.zeros_like(g), "ce", target_dot=jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        diff.jvp(g, jnp.full_like(g, jnp.nan), "ce")
    degenerate = np.asarray(g).copy()
    degenerate[1] = 3.0
    with pytest.raises(Exception, match="degenerate active set"):
        diff.jvp(jnp.asarray(degenerate), jnp.ones_like(g), "cce")
    _, tan = diff.jvp(jnp.asarray(degenerate), jnp.ones_like(g), "cce", on_degenerate="nan")
    assert np.all(np.isnan(np.asarray(tan.joint)))


# ---------------------------------------------------------------------------------------
# Degenerate points and bad input.
# ---------------------------------------------------------------------------------------
def test_degenerate_active_set_is_reported():
    g = _game(0, (4, 4))
    g[1] = 3.0  # a constant player: its constraints are tight with zero duals
    out = diff.solve(jnp.asarray(g), "cce")
    assert int(out.status) == diff.DEGENERATE_ACTIVE_SET
    assert "degenerate active set" in diff.describe(out.status)

    def loss(pay, mode):
        return jnp.sum(diff.solve(pay, "cce", on_degenerate=mode).joint ** 2)

    with pytest.raises(Exception, match="degenerate active set"):
        jax.grad(loss)(jnp.asarray(g), "raise")
    assert np.all(np.isnan(np.asarray(jax.grad(loss)(jnp.asarray(g), "nan"))[0]))


def test_weakly_dominated_ties_are_not_differentiated():
    g = _game(1, (3, 3))
    g[0, 1] = g[0, 0]  # player 0's actions 0 and 1 tie everywhere
    out = diff.solve(jnp.asarray(g), "ce")
    assert int(out.status) in (diff.DEGENERATE_ACTIVE_SET, diff.FACE_CHANGE)


def test_non_finite_cotangent_is_an_error():
    g = jnp.asarray(_game(0, (4, 4)))
    _, vjp = jax.vjp(lambda p: diff.solve(p, "cce").joint, g)
    with pytest.raises(Exception, match="NaN or inf"):
        vjp(jnp.full((4, 4), jnp.nan))


def test_bad_input_errors():
    g = jnp.asarray(_game(0, (4, 4)))
    with pytest.raises(ValueError, match="Max Gini"):
        diff.solve(g, "ce", "mg")
    with pytest.raises(ValueError, match="unknown concept"):
        diff.solve(g, "ne")
    with pytest.raises(ValueError, match="unknown selection"):
        diff.solve(g, "ce", "maxent")
    with pytest.raises(TypeError):
        diff.solve(g, "ce", selection=3)
    with pytest.raises(ValueError, match="shape"):
        diff.solve(jnp.zeros((2, 4, 4, 4)), "ce")
    with pytest.raises(ValueError, match="target has shape"):
        diff.solve(g, "ce", "mre", target=jnp.full((3, 3), 1 / 9))
    with pytest.raises(ValueError, match="needs a target"):
        diff.solve(g, "ce", "mre")
    with pytest.raises(ValueError, match="welfare has shape"):
        diff.solve(g, "ce", "mwme", welfare=jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="eps_hat"):
        diff.solve(g, "ce", eps_hat=jnp.zeros(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        diff.solve(g.at[0, 0, 0].set(jnp.nan), "ce")
    with pytest.raises(ValueError, match="full support"):
        diff.solve(g, "ce", "mre", target=jnp.zeros((4, 4)).at[0, 0].set(1.0))
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda r: diff.solve(g, "cce", rho=r).joint)(1.0)
    with pytest.raises(TypeError):
        diff.solve("not a game", "ce")
    with pytest.raises(ValueError, match="on_degenerate"):
        diff.solve(g, "ce", on_degenerate="ignore")


def test_one_sided_opt_in_differentiates_a_degenerate_point_and_keeps_the_flag():
    g = _game(0, (4, 4))
    g[1] = 3.0
    out = diff.solve(jnp.asarray(g), "cce", on_degenerate="one_sided")
    assert int(out.status) == diff.DEGENERATE_ACTIVE_SET
    grad = jax.grad(lambda p: jnp.sum(diff.solve(p, "cce", on_degenerate="one_sided").joint ** 2))(jnp.asarray(g))
    assert np.all(np.isfinite(np.asarray(grad)))


def test_nan_payoffs_under_jit_are_an_error():
    g = jnp.asarray(_game(0, (4, 4))).at[0, 1, 1].set(jnp.nan)
    with pytest.raises(Exception, match="NaN or inf"):
        jax.jit(lambda p: diff.solve(p, "cce").joint)(g)
