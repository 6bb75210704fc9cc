"""Compatibility module: the CVXPY / OSQP models now live in ``solvers.cvx``.

Re-exports the names this module used to define, so that ``solvers.polish.polish``,
``reference_solve``, ``max_gini`` and friends keep working. New code imports
``solvers.cvx``.
"""

from solvers.cvx import DEFAULT_SOLVER_OPTS as DEFAULT_SOLVER_OPTS
from solvers.cvx import ENTROPY_SOLVERS as ENTROPY_SOLVERS
from solvers.cvx import FALLBACK_SKIP_VIOLATION as FALLBACK_SKIP_VIOLATION
from solvers.cvx import FEASIBILITY_TOL as FEASIBILITY_TOL
from solvers.cvx import GINI_GAP_TOL as GINI_GAP_TOL
from solvers.cvx import GINI_SOLVERS as GINI_SOLVERS
from solvers.cvx import PolishResult as PolishResult
from solvers.cvx import ReferenceResult as ReferenceResult
from solvers.cvx import entropy_objective as entropy_objective
from solvers.cvx import gini_dual_bound as gini_dual_bound
from solvers.cvx import max_gini as max_gini
from solvers.cvx import polish as polish
from solvers.cvx import reference_solve as reference_solve
from solvers.lp import constraint_matrix as constraint_matrix

__all__ = [
    "DEFAULT_SOLVER_OPTS",
    "ENTROPY_SOLVERS",
    "FALLBACK_SKIP_VIOLATION",
    "FEASIBILITY_TOL",
    "GINI_GAP_TOL",
    "GINI_SOLVERS",
    "PolishResult",
    "ReferenceResult",
    "constraint_matrix",
    "entropy_objective",
    "gini_dual_bound",
    "max_gini",
    "polish",
    "reference_solve",
]
