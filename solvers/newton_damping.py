"""The Levenberg damping of projected Newton, shared by every direction (DESIGN §4).

A direction solves ``(H + lam I) d = -g`` on the free rows with
``lam = mult * pgn ** DAMPING_POWER + 1e-12 (1 + diag_max)`` (``pgn`` the projected
gradient's max-norm, ``diag_max`` the largest diagonal entry of ``H``), multiplying
``mult`` by 10 until the factor succeeds; rows outside the system are filled by
``fill_held``. Used by ``newton.damped_direction`` (dense Cholesky) and
``newton_blocks.ce2_direction`` (by blocks), which must damp alike.
"""

from __future__ import annotations

from numba import njit

__all__ = ["DAMPING_POWER", "damping_scale", "damping_lambda", "fill_held"]

#: Power of the projected-gradient norm in ``lambda = mult * pgn ** DAMPING_POWER``
#: (chosen with ``newton.RELAX``: benchmarks/results/solvers_suite_ce_face.md, section h-ceit).
DAMPING_POWER = 2.0


@njit(cache=True)
def damping_scale(pgn):
    """``pgn ** DAMPING_POWER`` (a product for the default power 2)."""
    return pgn * pgn if DAMPING_POWER == 2.0 else pgn ** DAMPING_POWER


@njit(cache=True)
def damping_lambda(mult, scale, diag_max):
    """``lam = mult * scale + 1e-12 (1 + diag_max)`` (``scale`` from ``damping_scale``): the
    floor keeps a singular block factorable at ``mult`` -> 0."""
    return mult * scale + 1e-12 * (1.0 + diag_max)


@njit(cache=True)
def fill_held(pos, alpha, direction):
    """``direction[k]`` on the rows outside the Newton system: 0 on inert rows
    (``pos[k] == -2``), ``-alpha[k]`` on rows held at their bound (``-1``: straight to the
    bound, a descent direction there). Free rows (``pos[k] >= 0``) are left to the caller."""
    for k in range(pos.shape[0]):
        if pos[k] == -2:
            direction[k] = 0.0
        elif pos[k] < 0:
            direction[k] = -alpha[k]
