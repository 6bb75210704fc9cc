"""Matrix-free gains (solvers.matrix_free) and truncated Newton (solvers.newton_cg)."""

from __future__ import annotations

import _kernels_reference as ref
import numpy as np
import pytest

import solvers
from solvers import api, policy, small
from solvers import kernels as kn
from solvers.dual import dual_problem
from solvers.evaluation_game import evaluation_game
from solvers.game import normalise
from solvers.matrix_free import MatrixFreeGame
from solvers.newton import MAX_ITER, OPTIMAL
from solvers.newton_cg import NewtonCGOptions, newton_cg
from solvers.selection import Selection, resolve_selection

SHAPES = [(4, 5), (3, 2, 4), (2, 3, 2, 2)]
SOFT = Selection(name="me", rho=0.5, eps_hat=0.05, eps_plus=4.0)


def _eval_game(agents, tasks, seed=0):
    """Agent-vs-task game (DESIGN §13): players [task, agent, agent]."""
    return evaluation_game(np.random.default_rng(seed).normal(size=(agents, tasks)), "ptp")


def _problem(shape, concept, selection=None, seed=0):
    game = normalise(np.random.default_rng(seed).normal(size=(len(shape),) + shape))
    sel = Selection.me() if selection is None else selection
    return game, dual_problem(game, concept, resolve_selection(sel, game))


def _batched(problem):
    return (problem.rows, problem.values[None], problem.player, problem.base_logits[None],
            problem.eps_hat[None], problem.eps_plus[None], np.array([problem.rho]))


@pytest.mark.parametrize("concept", ["ce", "cce"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gains_logits_and_hessian_match_the_ell_kernels(shape, concept):
    game, problem = _problem(shape, concept, SOFT, seed=len(shape))
    mf = MatrixFreeGame(game.payoffs, concept)
    assert mf.num_constraints == problem.num_constraints
    np.testing.assert_array_equal(mf.player, problem.player)
    rng = np.random.default_rng(7)
    alpha = rng.random(problem.num_constraints)
    rows, values, player, base, eps_hat, eps_plus, rho = _batched(problem)
    lg = kn.logits(rows, values, base, alpha[None])[0]
    np.testing.assert_allclose(base[0] - mf.weighted_gains(alpha).ravel(), lg, rtol=0, atol=1e-12)
    sigma = kn.softmax(lg[None])[0]
    mean = ref.expected_gains(rows, values, sigma[None], problem.num_constraints)[0]
    np.testing.assert_allclose(mf.expected_gains(sigma.reshape(shape)), mean, rtol=0, atol=1e-12)
    hess = ref.dual_hessian(rows, values, player, base, eps_hat, eps_plus, rho, alpha[None])[0]
    eps = np.empty(len(shape))
    ssum = np.bincount(problem.player, weights=alpha, minlength=len(shape))
    kn.eps_and_penalty_one(ssum, problem.eps_hat, problem.eps_plus, problem.rho, eps)
    curv = np.empty(len(shape))
    kn.curvature_one(ssum, problem.eps_hat, problem.eps_plus, problem.rho, curv)
    joint = sigma.reshape(shape)
    for _ in range(3):
        vec = rng.normal(size=problem.num_constraints)
        np.testing.assert_allclose(mf.hessian_vector(joint, mean, curv, vec), hess @ vec, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mf.hessian_diagonal(joint, mean, curv), np.diag(hess), rtol=0, atol=1e-12)
    rows = np.sort(rng.choice(problem.num_constraints, size=max(2, problem.num_constraints // 2), replace=False))
    np.testing.assert_allclose(mf.hessian_rows(joint, mean, curv, rows), hess[np.ix_(rows, rows)], rtol=0, atol=1e-12)
    for p, n in enumerate(shape):
        blocks = mf.hessian_blocks(joint, mean, curv, p)
        off = mf.offsets[p]
        if concept == "cce":
            np.testing.assert_allclose(blocks[0], hess[off:off + n, off:off + n], rtol=0, atol=1e-12)
            continue
        for rec in range(n):
            devs = [d for d in range(n) if d != rec]
            rows_k = [off + d * (n - 1) + (rec if rec < d else rec - 1) for d in devs]
            np.testing.assert_allclose(blocks[rec][np.ix_(devs, devs)], hess[np.ix_(rows_k, rows_k)],
                                       rtol=0, atol=1e-12)


@pytest.mark.parametrize("concept", ["ce", "cce"])
def test_gains_on_an_evaluation_game_match_the_ell_layout(concept):
    game = normalise(_eval_game(5, 6))
    problem = dual_problem(game, concept, resolve_selection(Selection.me(), game))
    mf = MatrixFreeGame(game.payoffs, concept)
    sigma = np.random.default_rng(3).random(game.payoffs.shape[1:])
    sigma /= sigma.sum()
    mean = ref.expected_gains(problem.rows, problem.values[None], sigma.reshape(1, -1), problem.num_constraints)[0]
    np.testing.assert_allclose(mf.expected_gains(sigma), mean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("selection", ["me", "ms"])
@pytest.mark.parametrize("concept", ["ce", "cce"])
@pytest.mark.parametrize("game", ["random3", "eval"])
def test_newton_cg_matches_exact_newton(game, concept, selection):
    payoffs = _eval_game(6, 7, seed=1) if game == "eval" else np.random.default_rng(5).normal(size=(3, 4, 3, 3))
    ref = solvers.solve(payoffs, concept, selection, method="newton")
    sol = solvers.solve(payoffs, concept, selection, method="newton-cg")
    assert ref.status == "optimal"
    assert sol.status == "optimal" and sol.method == "newton-cg"
    assert sol.info["violation"] <= 1e-8 and sol.info["kkt"] <= 1e-8 and abs(sol.duality_gap) <= 1e-8
    np.testing.assert_allclose(sol.joint, ref.joint, rtol=0, atol=1e-8)
    np.testing.assert_allclose(sol.gaps, ref.gaps, rtol=0, atol=1e-8)
    np.testing.assert_allclose(sol.objective, ref.objective, rtol=0, atol=1e-8)
    assert sol.duals.shape == ref.duals.shape
    assert 0 <= sol.info["first_order_iterations"] <= sol.iterations


def test_newton_cg_on_a_2_player_face():
    # A 2-player CE whose optimum lies on a face of the simplex: the dual drifts.
    payoffs = np.random.default_rng(1).normal(size=(2, 6, 7))
    ref = solvers.solve(payoffs, "ce", "me", method="newton")
    sol = solvers.solve(payoffs, "ce", "me", method="newton-cg")
    assert sol.status == "optimal"
    np.testing.assert_allclose(sol.joint, ref.joint, rtol=0, atol=1e-7)


def test_certificate_in_payoff_units_and_invariance():
    payoffs = _eval_game(5, 8, seed=2)
    sol = solvers.solve(payoffs, "ce", "me", method="newton-cg")
    moved = 3.0 * payoffs + np.arange(3.0)[:, None, None, None]
    sol2 = solvers.solve(moved, "ce", "me", method="newton-cg")
    np.testing.assert_allclose(sol2.joint, sol.joint, rtol=0, atol=1e-9)
    # The reported gaps are the largest expected gains of the returned joint (payoff units),
    # so the moved game's gaps are 3x those of its own joint on the original game. (Its
    # gaps are not 3x the first solve's: both are solver residuals near tol, and the
    # normalisations of the two games differ in the last bits, so the iterates do too.)
    game = normalise(payoffs)
    mf = MatrixFreeGame(game.payoffs, "ce")

    def payoff_gaps(joint: np.ndarray) -> np.ndarray:
        mean = mf.expected_gains(joint)
        return np.array([mean[mf.player == p].max() for p in range(3)]) / game.scale

    np.testing.assert_allclose(sol.gaps, payoff_gaps(sol.joint), rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol2.gaps, 3.0 * payoff_gaps(sol2.joint), rtol=0, atol=1e-11)


def test_warm_start_and_status_are_honest():
    payoffs = _eval_game(6, 9, seed=3)
    sol = solvers.solve(payoffs, "ce", "me", method="newton-cg")
    warm = solvers.solve(payoffs, "ce", "me", method="newton-cg", duals0=sol.duals)
    assert warm.status == "optimal" and warm.iterations == 0
    capped = solvers.solve(payoffs, "ce", "me", method="newton-cg", max_iter=1)
    assert capped.status == "max_iter"


def test_newton_cg_direct_options():
    game, problem = _problem((3, 3, 3), "ce")
    mf = MatrixFreeGame(game.payoffs, "ce")
    res = newton_cg(mf, problem.base_logits, problem.eps_hat, problem.eps_plus, problem.rho,
                    options=NewtonCGOptions(max_iter=1, first_order_iter=0))
    assert res.status in (OPTIMAL, MAX_ITER) and res.iterations <= 1
    newton_alone = newton_cg(mf, problem.base_logits, problem.eps_hat, problem.eps_plus, problem.rho,
                             options=NewtonCGOptions(first_order_iter=0))
    both = newton_cg(mf, problem.base_logits, problem.eps_hat, problem.eps_plus, problem.rho)
    assert newton_alone.status == OPTIMAL and both.status == OPTIMAL
    np.testing.assert_allclose(both.joint, newton_alone.joint, rtol=0, atol=1e-8)


@pytest.mark.parametrize("concept", ["ce", "cce"])
def test_dense_hessian_limits_count_the_sparse_product(concept, monkeypatch):
    import solvers.matrix_free as mfm

    game = normalise(_eval_game(4, 5, seed=4))
    mf = MatrixFreeGame(game.payoffs, concept)
    rows = np.arange(0, mf.num_constraints, 3)
    pattern = mf.gain_rows(rows)
    pattern.data[:] = 1.0
    per_joint = np.asarray(pattern.sum(axis=0)).ravel()  # S(a): rows nonzero at a
    flops = float(per_joint @ per_joint)
    assert mf.dense_hessian_ok(rows, rows.size) and not mf.dense_hessian_ok(rows, rows.size - 1)
    assert not mf.dense_hessian_ok(rows[:0], 10)
    monkeypatch.setattr(mfm, "DENSE_FACTOR_HVPS", rows.size ** 3 / 3.0 / (4.0 * mf.num_joint * sum(mf.shape)) * 0.99)
    assert not mf.dense_hessian_ok(rows, rows.size)
    monkeypatch.setattr(mfm, "DENSE_FACTOR_HVPS", 1e30)
    monkeypatch.setattr(mfm, "DENSE_FLOPS", flops * (1 + 1e-9))
    assert mf.dense_hessian_ok(rows, rows.size)
    monkeypatch.setattr(mfm, "DENSE_FLOPS", flops * (1 - 1e-9))
    assert not mf.dense_hessian_ok(rows, rows.size)
    monkeypatch.setattr(mfm, "DENSE_FLOPS", 1e30)
    monkeypatch.setattr(mfm, "DENSE_NNZ", pattern.nnz - 1)
    assert not mf.dense_hessian_ok(rows, rows.size)


@pytest.mark.parametrize("symmetric", [False, True])
def test_dense_and_block_jacobi_preconditioners_agree(symmetric):
    payoffs = _eval_game(7, 9, seed=5)
    sym = [[1, 2]] if symmetric else None
    dense = solvers.solve(payoffs, "ce", "me", method="newton-cg", symmetry=sym)
    game = normalise(payoffs)
    params = resolve_selection(Selection.me(), game)
    from solvers.matrix_free import TiedGame

    mf = TiedGame(game.payoffs, "ce", ((1, 2),)) if symmetric else MatrixFreeGame(game.payoffs, "ce")
    jacobi = newton_cg(mf, params.base_logits, params.eps_hat, params.eps_plus, float(params.rho),
                       options=NewtonCGOptions(dense_rows=0))
    assert dense.status == "optimal" and jacobi.status == OPTIMAL
    np.testing.assert_allclose(dense.joint.ravel(), jacobi.joint.ravel(), rtol=0, atol=1e-7)
    assert dense.info["cg_iterations"] < jacobi.cg_iterations


def test_auto_policy_and_method_routing():
    assert "newton-cg" in api.METHODS
    assert api.auto_matrix_free((30, 20, 20), "ce")
    assert api.auto_matrix_free((300, 300), "ce")  # the ELL layout alone: 24 |A| c bytes > 256 MiB
    assert not api.auto_matrix_free((8, 8), "ce")
    assert not api.auto_matrix_free((30, 20, 20), "cce")
    assert not api.auto_matrix_free((30, 20, 20), "ce", face="always")
    sol = solvers.solve(_eval_game(15, 20), "ce", "me")  # K = 800 duals
    assert sol.method == "newton-cg" and sol.status == "optimal"
    with pytest.raises(ValueError, match="newton-cg"):
        solvers.solve(_eval_game(4, 4), "ce", "me", method="newton-cg", face="always")
    game = normalise(_eval_game(3, 3))
    params = resolve_selection(Selection.me(), game)
    with pytest.raises(ValueError, match="newton-cg"):
        api.refine_batch(game.payoffs[None], "ce", params, method="newton-cg")
    batch = solvers.solve_batch([_eval_game(4, 5, seed=s) for s in (1, 2)], "ce", "me", method="newton-cg")
    single = [solvers.solve(_eval_game(4, 5, seed=s), "ce", "me", method="newton") for s in (1, 2)]
    for got, want in zip(batch, single, strict=True):
        assert got.method == "newton-cg" and got.status == "optimal"
        np.testing.assert_allclose(got.joint, want.joint, rtol=0, atol=1e-8)


def test_auto_finishes_a_face_on_the_gain_layout(monkeypatch):
    # 4 agents x 5 tasks, seed 0: the ME-CE lies on a face (39 of 80 joint actions); the
    # dual drifts, newton-cg ends short of tol within 5 + 5 iterations.
    payoffs = _eval_game(4, 5, seed=0)
    capped = solvers.solve(payoffs, "ce", "me", method="newton-cg", max_iter=5)
    assert capped.status == "max_iter"
    ref = solvers.solve(payoffs, "ce", "me", method="newton")
    always = lambda *args, **kwargs: True  # noqa: E731
    monkeypatch.setattr(api, "auto_matrix_free", always)
    # The small-game fast path decides from solvers.policy and caches its plans.
    monkeypatch.setattr(policy, "auto_matrix_free", always)
    monkeypatch.setattr(small, "_PLANS", {})
    sol = solvers.solve(payoffs, "ce", "me", max_iter=5)
    assert sol.method.startswith("newton-cg+") and sol.status == "optimal"
    np.testing.assert_allclose(sol.joint, ref.joint, rtol=0, atol=1e-8)


def test_auto_policy_reads_available_memory_only_for_large_layouts(monkeypatch):
    # Reading /proc/meminfo on every solve() cost ~30 us, more than a small game's solve.
    from solvers import api, memory

    def boom():
        raise AssertionError("available memory read")

    monkeypatch.setattr(memory, "available_memory", boom)
    assert not api.auto_matrix_free((8, 8), "ce")
    assert solvers.solve(np.random.default_rng(0).normal(size=(2, 8, 8)), "cce").ok
    with pytest.raises(AssertionError, match="available memory read"):
        api.auto_matrix_free((120, 120), "ce")  # an 82 MB layout: checked against the memory


def test_newton_cg_limits_blas_threads_during_the_solve_only(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    game, problem = _problem((3, 3, 3), "ce")
    mf = MatrixFreeGame(game.payoffs, "ce")
    seen = []
    original = MatrixFreeGame.hessian_vector

    def recording(self, *args):
        seen.append(max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1))
        return original(self, *args)

    monkeypatch.setattr(MatrixFreeGame, "hessian_vector", recording)
    with threadpool_limits(limits=2, user_api="blas"):
        before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        res = newton_cg(mf, problem.base_logits, problem.eps_hat, problem.eps_plus, problem.rho,
                        options=NewtonCGOptions(first_order_iter=0))
        after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert res.status == OPTIMAL and seen and max(seen) == 1
    assert after == before
    with pytest.raises(ValueError, match="blas_threads"):
        newton_cg(mf, problem.base_logits, problem.eps_hat, problem.eps_plus, problem.rho,
                  options=NewtonCGOptions(blas_threads=0))


def test_solve_batch_auto_takes_the_matrix_free_route_per_game():
    # K = 800 duals on [3, 20, 15, 15]: solve's "auto" takes newton-cg; solve_batch must too
    # (it used to build the ELL layout for the group and run refine_batch).
    games = [_eval_game(15, 20, seed=s) for s in (3, 4)]
    singles = [solvers.solve(g, "ce", "me") for g in games]
    for batch in (solvers.solve_batch(games, "ce", "me"), solvers.solve_batch(np.stack(games), "ce", "me")):
        for got, want in zip(batch, singles, strict=True):
            assert want.method == "newton-cg" and got.method == want.method
            assert got.status == "optimal"
            np.testing.assert_allclose(got.joint, want.joint, rtol=0, atol=1e-10)
    warm = solvers.solve_batch(games, "ce", "me", duals0=[s.duals for s in singles])
    assert all(w.status == "optimal" and w.iterations <= s.iterations for w, s in zip(warm, singles, strict=True))
    small = solvers.solve_batch([_eval_game(3, 4)] * 2, "ce", "me")  # the layout path stays
    assert all(s.method != "newton-cg" and s.ok for s in small)


def test_blas_threads_limits_inside_restores_after_and_scans_once():
    """``newton_cg.blas_threads``: one cached controller, the limit only inside the context."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from solvers import newton_cg as ncg

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas()
        with ncg.blas_threads(1):
            assert all(n == 1 for n in blas())
        controller = ncg._CONTROLLER[0]
        with ncg.blas_threads(1):
            assert ncg._CONTROLLER == [controller]  # no second scan of the libraries
        assert blas() == before
        with ncg.blas_threads(None):
            assert blas() == before
