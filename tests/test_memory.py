"""The memory budget of Newton's dense buffers (solvers.memory) and method="auto"'s
memory-aware choice (solvers.policy.newton_plan / auto_first_order)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from solvers import api, memory, refine, solve, solve_batch
from solvers.dual import dual_problem
from solvers.game import normalise
from solvers.newton import BLOCK_LIMIT, OPTIMAL, NewtonOptions, newton_batch
from solvers.selection import Selection, resolve_selection

MIB = 2**20
#: 20x20 CE: K = 2 * 20 * 19 = 760 duals; dense [K, K] pair 16 K^2 = 9,241,600 bytes.
K_20 = 760
NEWTON_20 = 16 * K_20 * K_20


def _game(seed: int, shape=(20, 20)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(shape),) + shape)


def test_parse_bytes():
    assert memory.parse_bytes(123) == 123
    assert memory.parse_bytes(1.5e9) == 1_500_000_000
    assert memory.parse_bytes("512M") == 512 * MIB
    assert memory.parse_bytes("2GiB") == 2 * 2**30
    assert memory.parse_bytes(" 3 kb ") == 3 * 1024
    assert memory.parse_bytes("1e6") == 1_000_000
    for bad in ("lots", "-5", "1.5X", ""):
        with pytest.raises(ValueError):
            memory.parse_bytes(bad)
    with pytest.raises(ValueError):
        memory.parse_bytes(-1)
    with pytest.raises(TypeError):
        memory.parse_bytes(True)
    with pytest.raises(TypeError):
        memory.parse_bytes([1])


def test_budget_sources(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    monkeypatch.setattr(memory, "available_memory", lambda: 10 * 2**30)
    assert memory.memory_budget() == int(memory.BUDGET_FRACTION * 10 * 2**30)
    monkeypatch.setenv(memory.ENV_VAR, "3G")
    assert memory.memory_budget() == 3 * 2**30
    assert memory.memory_budget("1M") == MIB  # the argument wins over the environment
    monkeypatch.setenv(memory.ENV_VAR, "plenty")
    with pytest.raises(ValueError, match=memory.ENV_VAR):
        memory.memory_budget()


def test_env_budget_set_follows_the_environment(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    assert not memory.env_budget_set()
    monkeypatch.setenv(memory.ENV_VAR, "  ")
    assert not memory.env_budget_set()
    monkeypatch.setenv(memory.ENV_VAR, "2G")
    assert memory.env_budget_set()
    import os

    os.environ[memory.ENV_VAR] = "1M"
    assert memory.env_budget_set()
    del os.environ[memory.ENV_VAR]
    assert not memory.env_budget_set()


def test_available_memory_is_positive():
    assert memory.available_memory() > 0


def test_small_buffers_skip_the_meminfo_read(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)

    def boom():
        raise AssertionError("available_memory read for a small problem")

    monkeypatch.setattr(memory, "available_memory", boom)
    assert memory.newton_fits(memory.UNCHECKED_BYTES)
    with pytest.raises(AssertionError, match="small problem"):
        memory.newton_fits(memory.UNCHECKED_BYTES + 1)
    # An explicit budget is applied whatever the size.
    assert not memory.newton_fits(1000, budget=999)
    monkeypatch.setenv(memory.ENV_VAR, "999")
    assert not memory.newton_fits(1000)


@pytest.mark.parametrize("identity,num_joint", [(False, 400), (True, 64), (True, 90_000)])
@pytest.mark.parametrize("budget", [0, 1000, MIB, 10**9 + 7])
def test_newton_max_block_is_the_largest_fitting_block(identity, num_joint, budget):
    block = memory.newton_max_block(budget, num_joint, identity)
    assert block >= 0
    assert memory.newton_bytes(block, num_joint, identity) <= budget
    assert memory.newton_bytes(block + 1, num_joint, identity) > budget
    two = memory.newton_max_block(budget, num_joint, identity, concurrent=2)
    assert 2 * memory.newton_bytes(two, num_joint, identity) <= budget < 2 * memory.newton_bytes(two + 1, num_joint, identity)


def test_newton_bytes_of_the_300x300_ce():
    # K = 2 * 300 * 299 duals: two dense [K, K] float64 buffers.
    need = memory.newton_bytes(179_400, 90_000, False)
    assert need == 16 * 179_400**2
    assert need > 500 * 10**9


def test_policy_picks_first_order_beyond_the_budget():
    plan = api.newton_plan((20, 20), "ce", budget=MIB)
    assert not plan.fits and plan.max_block == 256  # 16 * 256^2 bytes = 1 MiB
    assert api.auto_first_order((20, 20), "ce", budget=MIB)
    assert api.auto_first_order((20, 20), "ce", budget=NEWTON_20 - 1)
    assert not api.auto_first_order((20, 20), "ce", budget=NEWTON_20)
    assert api.newton_plan((20, 20), "ce", budget=2**30) == api.NewtonPlan(True, False, 0)
    # CCE (identity layout): the [n, |A|] column buffers count too. 8x8: K = 16, |A| = 64.
    need = memory.newton_bytes(16, 64, True)
    assert need == 8 * (2 * 16 * 16 + 2 * 16 * 64)
    assert api.auto_first_order((8, 8), "cce", budget=need - 1)
    assert not api.auto_first_order((8, 8), "cce", budget=need)


def test_policy_budgets_the_games_newton_runs_at_once():
    threads = numba.get_num_threads()
    budget = NEWTON_20 + NEWTON_20 // 2  # one game's buffers, not two
    plan = api.newton_plan((20, 20), "ce", num_games=8, parallel=True, budget=budget)
    assert plan.fits and plan.max_block == 0
    assert plan.parallel == (threads == 1)  # two at once do not fit: one game at a time
    roomy = api.newton_plan((20, 20), "ce", num_games=8, parallel=True, budget=NEWTON_20 * max(threads, 1))
    assert roomy == api.NewtonPlan(True, True, 0)
    assert memory.concurrent_games(8, True) == min(8, threads)
    assert memory.concurrent_games(8, False) == 1
    assert memory.concurrent_games(1, True) == 1


def test_auto_beyond_budget_is_certified_by_first_order_and_matches_newton():
    game = _game(1)
    ref = solve(game, "ce", method="newton")
    assert ref.status == "optimal" and ref.method == "newton"
    sol = solve(game, "ce", memory_budget=MIB)
    assert sol.status == "optimal"
    assert sol.method == "gd"
    np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-6)
    np.testing.assert_allclose(sol.eps, ref.eps, atol=1e-6)
    assert sol.gap <= 1e-6 and abs(sol.duality_gap) <= 1e-6


def test_environment_variable_sets_the_budget(monkeypatch):
    monkeypatch.setenv(memory.ENV_VAR, "1M")
    sol = solve(_game(1), "ce")
    assert sol.status == "optimal" and sol.method == "gd"
    with pytest.raises(MemoryError, match="760 duals"):
        solve(_game(1), "ce", method="newton")


def test_explicit_newton_beyond_budget_raises_before_allocating(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    monkeypatch.setattr(api, "gain_layout", forbidden)
    monkeypatch.setattr(refine, "gain_layout", forbidden)
    monkeypatch.setattr(refine, "newton_batch", forbidden)
    monkeypatch.setattr(refine.kn, "gain_values", forbidden)
    monkeypatch.setattr(refine.kn, "gain_values_serial", forbidden)
    with pytest.raises(MemoryError, match=r"760 duals.*8\.8 MiB.*1\.0 MiB"):
        solve(_game(2), "ce", method="newton", memory_budget=MIB)
    with pytest.raises(MemoryError, match="760 duals"):
        solve_batch(np.stack([_game(2), _game(3)]), "ce", method="newton", memory_budget="1M")
    with pytest.raises(MemoryError, match="760 duals"):
        api.refine_batch(np.zeros((1, 2, 20, 20)), "ce", resolve_selection(Selection.me(), normalise(_game(2))),
                         method="newton", memory_budget=MIB)
    # Small problems whose dense pair fits still take Newton's fast path.
    monkeypatch.undo()
    assert solve(_game(2, (4, 4)), "ce", method="newton", memory_budget=MIB).method == "newton"


def test_bad_memory_budget():
    with pytest.raises(ValueError, match="byte count"):
        solve(_game(1, (3, 3)), "ce", memory_budget="big")
    with pytest.raises(TypeError):
        solve_batch([_game(1, (3, 3))], "ce", memory_budget=True)


def test_newton_finish_after_first_order_stays_within_the_budget():
    game = _game(1)
    ref = solve(game, "ce", method="newton")
    # First-order cut short: Newton finishes on a free block of at most 256 rows.
    sol = solve(game, "ce", memory_budget=MIB, max_iter=30, polish=False)
    assert sol.method.startswith("gd") and sol.method.endswith("+newton")
    assert sol.status == "optimal"
    np.testing.assert_allclose(sol.joint, ref.joint, atol=1e-6)
    # A budget for a 7-row block: Newton declines (the free block is larger) and the game
    # is reported as the first-order method left it, not credited to Newton.
    left = solve(game, "ce", memory_budget=1000, max_iter=30, polish=False)
    assert "newton" not in left.method and left.method.startswith("gd")
    assert left.status == "max_iter"


def test_solve_batch_within_budget_matches_unlimited():
    games = np.stack([_game(s) for s in range(4)])
    free = solve_batch(games, "ce")
    serial = solve_batch(games, "ce", memory_budget=NEWTON_20 + NEWTON_20 // 2)
    first = solve_batch(games, "ce", memory_budget=MIB)
    for a, b, c in zip(free, serial, first, strict=True):
        assert a.status == b.status == c.status == "optimal"
        assert b.method == a.method and "newton" in a.method
        assert c.method == "gd"
        np.testing.assert_allclose(b.joint, a.joint, atol=1e-12)
        np.testing.assert_allclose(c.joint, a.joint, atol=1e-6)


def _problems(shape, concept, selection, seeds):
    out = []
    for seed in seeds:
        game = normalise(np.random.default_rng(seed).normal(size=(len(shape),) + shape))
        out.append(dual_problem(game, concept, resolve_selection(selection, game)))
    return out


def _newton(problems, **options):
    p0 = problems[0]
    return newton_batch(
        p0.rows, np.stack([p.values for p in problems]), p0.player,
        np.stack([p.base_logits for p in problems]), np.stack([p.eps_hat for p in problems]),
        np.stack([p.eps_plus for p in problems]), np.array([p.rho for p in problems]),
        np.stack([p.free for p in problems]), np.zeros((len(problems), p0.num_constraints)),
        NewtonOptions(**options),
    )


SOFT = Selection(name="me", rho=0.5, eps_hat=0.05, eps_plus=4.0)


@pytest.mark.parametrize("shape,concept", [((5, 5), "cce"), ((6, 4), "cce"), ((6, 6), "ce")])
def test_newton_block_limit(shape, concept):
    problems = _problems(shape, concept, SOFT if concept == "ce" else Selection.me(), range(4))
    num = problems[0].num_constraints
    full = _newton(problems)
    assert np.all(full.status == OPTIMAL)
    # Buffers grown with the free block up to K - 1 rows: the same iterates.
    grown = _newton(problems, max_block=num - 1)
    assert np.all(grown.status == OPTIMAL)
    np.testing.assert_array_equal(grown.iterations, full.iterations)
    np.testing.assert_allclose(grown.alpha, full.alpha, rtol=0, atol=1e-12)
    # A one-row limit: no step is taken, the start is returned.
    none = _newton(problems, max_block=1)
    assert np.all(none.status == BLOCK_LIMIT)
    assert np.all(none.iterations == 0) and np.all(none.alpha == 0.0)


def _refuse_allocation(monkeypatch):
    """Makes any allocation of the game's size (normalisation, layouts, newton-cg) fail."""
    from solvers import game as game_mod
    from solvers import matrix_free

    def forbidden(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    for mod, name in ((api, "normalise_fast"), (api, "normalise_games"), (api, "gain_layout"),
                      (refine, "gain_layout"), (game_mod, "normalise"), (matrix_free, "MatrixFreeGame")):
        monkeypatch.setattr(mod, name, forbidden)


@pytest.mark.parametrize("method", ["auto", "newton-cg", "gd", "newton", "cvxpy"])
def test_game_too_large_for_memory_is_refused_before_allocating(monkeypatch, method):
    # An evaluation-game shape [3, 40, 12, 12] CE (K = 1824 duals); 2 MiB "available".
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * MIB)
    monkeypatch.setattr(memory, "UNCHECKED_BYTES", 0)
    _refuse_allocation(monkeypatch)
    game = np.zeros((3, 40, 12, 12))
    route = {"auto": "newton-cg", "newton-cg": "newton-cg", "cvxpy": "method='cvxpy'"}.get(
        method, "the gain-layout solvers")
    with pytest.raises(memory.GameTooLargeError) as err:
        solve(game, "ce", method=method)
    msg = str(err.value)
    assert isinstance(err.value, MemoryError)
    if method == "newton":  # its dense [K, K] buffers are refused first
        assert "1,824 duals" in msg and "50.8 MiB" in msg
        return
    assert "game [3, 40, 12, 12] CE needs ~" in msg and f"for {route}" in msg
    assert "joint 5,760 entries" in msg and "1,824 duals" in msg and "available 2.0 MiB" in msg
    assert "memory_budget=" in msg
    with pytest.raises(memory.GameTooLargeError, match=r"game \[3, 40, 12, 12\] CE"):
        solve_batch([game, game], "ce", method=method)
    monkeypatch.setattr("solvers.symmetry.swap_violation", lambda *a: (_ for _ in ()).throw(AssertionError("swap")))
    with pytest.raises(memory.GameTooLargeError):  # before the symmetry check's [N, A1..AN] swaps
        solve(game, "ce", method=method, symmetry="auto")


def test_normalised_batch_checks_the_memory_of_its_route(monkeypatch):
    # The normalised-units entry (the NES pipeline's) checks a game's memory on the route
    # it takes, as solve does: the CVXPY models' estimate, not the gain layout's.
    from solvers import single
    from solvers.game import normalise_batch

    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    shape = (12, 12)
    layout_need = api.solve_bytes(shape, "ce", "layout")
    cvxpy_need = api.solve_bytes(shape, "ce", "cvxpy")
    assert cvxpy_need > 2 * layout_need
    monkeypatch.setattr(memory, "UNCHECKED_BYTES", 0)
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * layout_need)
    monkeypatch.setattr(single, "_reference", lambda *a: (_ for _ in ()).throw(AssertionError("solved")))
    norm = normalise_batch(_game(3, shape)[None])
    with pytest.raises(memory.GameTooLargeError, match="for method='cvxpy'"):
        api.normalised_batch(norm, "ce", Selection.me(), method="cvxpy", per_game=True)
    with pytest.raises(memory.GameTooLargeError, match="for method='cvxpy'"):
        solve_batch(_game(3, shape)[None], "ce", method="cvxpy")
    api.check_game_memory("layout", shape, "ce")  # the gain-layout route of the same game fits


def test_game_memory_estimates_and_overrides(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    shape = (2000, 300, 300)  # a leaderboard-scale evaluation game: 180M joint entries
    need = api.solve_bytes(shape, "ce", "newton-cg")
    joint = 8 * 180_000_000
    assert 2 * 3 * joint < need < 40 * joint  # a few joint copies, not |A| x K
    assert api.solve_bytes(shape, "ce", "layout") > 24 * 180_000_000 * 2597  # the ELL layout
    assert api.solve_bytes((20, 20), "ce", "cvxpy") > api.solve_bytes((20, 20), "ce", "layout")
    with pytest.raises(ValueError, match="route"):
        api.solve_bytes((3, 3), "ce", "lp")
    monkeypatch.setattr(memory, "available_memory", lambda: 16 * 2**30)
    with pytest.raises(memory.GameTooLargeError, match=r"\[3, 2000, 300, 300\] CE needs ~.* GiB for newton-cg"):
        api.check_game_memory("newton-cg", shape, "ce")
    # An explicit budget above the available memory is the caller's override; below it
    # the available memory still applies (memory_budget is Newton's dense-buffer budget).
    api.check_game_memory("newton-cg", shape, "ce", budget=need)
    api.check_game_memory("newton-cg", (20, 20, 20), "ce", budget=1000)
    monkeypatch.setenv(memory.ENV_VAR, str(need))
    api.check_game_memory("newton-cg", shape, "ce")
    # Small games never read the available memory.
    monkeypatch.delenv(memory.ENV_VAR)
    monkeypatch.setattr(memory, "available_memory", lambda: (_ for _ in ()).throw(AssertionError("read")))
    api.check_game_memory("layout", (20, 20), "ce")
    assert solve(_game(1, (4, 4)), "ce").ok
