"""``hybrid-nes demo``: solve games with the shipped network and the exact solvers.

Prints (1) the max-entropy CE of two classic games, (2) a batch of random 8x8 games
solved cold, NES-warm-started and ``auto``, with gaps and steady-state throughput (each
timed run follows an untimed one that compiles and fills caches), and (3) one game
against the CVXPY reference.
"""

from __future__ import annotations

import time

import numpy as np

import solvers
from hybrid_nes import pipeline

CHICKEN = np.array([[[0.0, -1.0], [1.0, -10.0]], [[0.0, 1.0], [-1.0, -10.0]]])
PRISONERS = np.array([[[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]]])


def _fmt(joint: np.ndarray) -> str:
    return np.array2string(joint, precision=4, suppress_small=True)


def run(num_games: int = 1000, seed: int = 0) -> dict:
    """Runs the demo; returns its figures (also printed)."""
    out: dict = {}
    print("== Classic games, maximum-entropy correlated equilibrium (exact)")
    for name, game in (("chicken", CHICKEN), ("prisoner's dilemma", PRISONERS)):
        sol = pipeline.solve_exact(game, "ce", "me")
        print(f"{name}: status={sol.status}, gap={sol.gap:.1e}, joint=\n{_fmt(sol.joint)}")
    rng = np.random.default_rng(seed)
    games = rng.normal(size=(num_games, 2, 8, 8))
    print(f"\n== {num_games} random 8x8 games, ME-CCE and ME-CE (tol 1e-8)")
    for concept in ("cce", "ce"):
        for start in ("cold", "nes", "auto"):
            # The first call compiles (network, per batch size) and fills caches: untimed.
            pipeline.solve_batch(games, concept, warm_start=start)
            t0 = time.perf_counter()
            sols = pipeline.solve_batch(games, concept, warm_start=start)
            secs = time.perf_counter() - t0
            ok = sum(s.ok for s in sols)
            worst = max(s.normalised_gap for s in sols)
            iters = np.median([s.iterations for s in sols])
            out[f"{concept}/{start}"] = {"games_per_s": num_games / secs, "optimal": ok, "median_iters": float(iters)}
            print(
                f"{concept.upper():>3} {start:>4}: {num_games / secs:9.0f} games/s, {ok}/{num_games} certified optimal, "
                f"worst gap {worst:.1e}, median iterations {iters:.0f}"
            )
    game = games[0]
    t0 = time.perf_counter()
    ref = solvers.solve(game, "ce", method="cvxpy")
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = pipeline.solve_exact(game, "ce")
    t_ours = time.perf_counter() - t0
    diff = float(np.abs(ref.joint - sol.joint).max())
    print(
        f"\n== One 8x8 ME-CE against the CVXPY reference: max |joint difference| {diff:.1e}; "
        f"ours {t_ours * 1e3:.2f} ms, CVXPY {t_ref * 1e3:.1f} ms"
    )
    out["reference_diff"] = diff
    return out


if __name__ == "__main__":
    run()
