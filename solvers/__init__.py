"""solvers: exact, certified (C)CE selection on normal-form games (NumPy / Numba / SciPy / CVXPY).

Importing this package never imports JAX.
"""

from solvers.api import refine_batch, solve, solve_batch
from solvers.dual import DualProblem, certificate, dual_problem
from solvers.gains import CONCEPTS, duals_by_player, duals_from_players, gains, num_constraints
from solvers.game import NormalisedGame, as_game, marginals, normalise
from solvers.selection import PRESETS, Selection, as_selection, resolve_selection
from solvers.solution import Solution, Status

__all__ = [
    "CONCEPTS",
    "PRESETS",
    "DualProblem",
    "NormalisedGame",
    "Selection",
    "Solution",
    "Status",
    "as_game",
    "as_selection",
    "certificate",
    "dual_problem",
    "duals_by_player",
    "duals_from_players",
    "gains",
    "marginals",
    "normalise",
    "num_constraints",
    "refine_batch",
    "resolve_selection",
    "solve",
    "solve_batch",
]
