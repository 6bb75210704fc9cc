"""solvers: exact, certified (C)CE selection on normal-form games (NumPy / Numba / SciPy / CVXPY).

Layout, top down:

- ``api``: ``solve`` and ``solve_batch`` in payoff units: check (``checks``), normalise
  (``game``), resolve the selection (``selection``), then hand the games over in
  normalised units;
- ``refine``: the stage boundary in normalised units, ``refine_batch``, with one result
  type ``DualResult``, stages as ``Stage`` values and one ``Status``; ``single``: one game
  the way ``solve`` runs it (compiled Newton fast path, matrix-free ``newton_cg``, the
  CVXPY reference models of ``cvx``);
- ``units``: the one converter from a ``DualResult`` to frozen ``Solution``s (``solution``);
  ``solution_batch``: ``SolutionBatch``, ``solve_batch``'s result as stacked arrays;
- ``policy``: ``SolverPolicy``, the constants and rules of ``method="auto"``;
- the leaves: ``gains`` (ELL layout), ``dual``, ``kernels``, ``newton``, ``gradient``,
  ``face``, ``matrix_free``, ``newton_cg``, ``memory``, ``related``, ``lp``, ``cvx``.

Importing this package never imports JAX; CVXPY is imported on first use of the
polish/reference names (``max_gini``, ``reference_solve``).
"""

import importlib

from solvers.api import solve, solve_batch
from solvers.dual import DualProblem, certificate, dual_problem
from solvers.evaluation_game import evaluation_game
from solvers.gains import CONCEPTS, duals_by_player, duals_from_players, gains, num_constraints
from solvers.game import NormalisedGame, as_game, marginals, normalise, normalise_batch
from solvers.lp import max_welfare, zero_sum_nash
from solvers.ratings import Rating, rate, ratings
from solvers.refine import refine_batch
from solvers.selection import PRESETS, Selection, as_selection, resolve_selection
from solvers.solution import Solution, Status
from solvers.solution_batch import SolutionBatch
from solvers.symmetry import check_symmetry, find_symmetries

__all__ = [
    "CONCEPTS",
    "PRESETS",
    "DualProblem",
    "NormalisedGame",
    "Rating",
    "Selection",
    "Solution",
    "SolutionBatch",
    "Status",
    "as_game",
    "as_selection",
    "certificate",
    "check_symmetry",
    "dual_problem",
    "duals_by_player",
    "duals_from_players",
    "evaluation_game",
    "find_symmetries",
    "gains",
    "marginals",
    "max_gini",
    "max_welfare",
    "normalise",
    "normalise_batch",
    "num_constraints",
    "rate",
    "ratings",
    "reference_solve",
    "refine_batch",
    "resolve_selection",
    "solve",
    "solve_batch",
    "zero_sum_nash",
]

# Loaded on first access (PEP 562): they import CVXPY, which costs about a second.
_LAZY = {
    "max_gini": "solvers.cvx",
    "reference_solve": "solvers.cvx",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'solvers' has no attribute {name!r}")
