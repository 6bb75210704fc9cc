"""CVXPY / OSQP models in normalised units (DESIGN §5): the reference, Max Gini, the finish.

``payoffs: [N, A1..AN]`` is a normalised game and ``SelectionParams`` comes from
``solvers.selection.resolve_selection``. Importing this package does not import CVXPY:
``common.import_cvxpy`` does on first use (and keeps JAX out; see its docstring).

Layout:

- ``common``: the lazy CVXPY import, solver lists and tight options, the solve call
  and its status mapping, ``ReferenceResult``.
- ``objective``: the eps-MWMRE primal value and dual loss on a CSR constraint matrix.
- ``entropy``: ``reference_solve``, the eps-MWMRE primal (ME, MRE, MW and their mixes)
  as an exponential-cone program on the minimal face (``solvers.face.polytope_face``).
- ``refine``: Newton on the solver's active set, kept only at a verified KKT point.
- ``gini``: ``max_gini``, the Maximum-Gini QP certified by a closed-form dual bound.
- ``finish``: ``polish``, the finishing step of the dual solvers on a ``DualProblem``.

Flat orders: joints are C-order ``[|A|]`` (``joint.reshape(-1)``); constraint rows (and
every ``duals: [K]``) follow the layout of ``solvers.gains`` (CCE: player, deviation a';
CE: player, deviation a', recommendation a'' != a').
"""

from solvers.cvx.common import DEFAULT_SOLVER_OPTS as DEFAULT_SOLVER_OPTS
from solvers.cvx.common import ENTROPY_SOLVERS as ENTROPY_SOLVERS
from solvers.cvx.common import FEASIBILITY_TOL as FEASIBILITY_TOL
from solvers.cvx.common import GINI_SOLVERS as GINI_SOLVERS
from solvers.cvx.common import ReferenceResult as ReferenceResult
from solvers.cvx.entropy import reference_solve as reference_solve
from solvers.cvx.finish import FALLBACK_SKIP_VIOLATION as FALLBACK_SKIP_VIOLATION
from solvers.cvx.finish import PolishResult as PolishResult
from solvers.cvx.finish import polish as polish
from solvers.cvx.gini import GINI_GAP_TOL as GINI_GAP_TOL
from solvers.cvx.gini import gini_dual_bound as gini_dual_bound
from solvers.cvx.gini import max_gini as max_gini
from solvers.cvx.objective import entropy_objective as entropy_objective

__all__ = [
    "DEFAULT_SOLVER_OPTS",
    "ENTROPY_SOLVERS",
    "FALLBACK_SKIP_VIOLATION",
    "FEASIBILITY_TOL",
    "GINI_GAP_TOL",
    "GINI_SOLVERS",
    "PolishResult",
    "ReferenceResult",
    "entropy_objective",
    "gini_dual_bound",
    "max_gini",
    "polish",
    "reference_solve",
]
