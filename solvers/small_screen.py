"""The reductions of the buffer ``solvers.small._solve_small`` fills, taken as its last step.

One compiled pass over the buffer, after every write of the solve (so it sees what the
``Solution`` will hold): the honesty rule's reductions of the joint, gaps and eps
(``solvers.solution.JointScreen``), the largest gap and the solver's statistics, returned
with the solve's call as Python scalars (no second dispatch, no array views or ``tolist``
in Python)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["read_buffer"]


@njit(cache=True)
def read_buffer(buf, cuts):
    """Reductions of ``buf: [cuts[-1]]`` (parts as ``solvers.small.SmallPlan.cuts``, given
    as an int64 array ``cuts``).

    Returns ``((total, low, gaps_finite, eps_finite), gap, iterations, status, violation,
    kkt, duality_gap, loss, duals_finite)``: the ``JointScreen`` fields (the joint's sum,
    compensated (Kahan-Neumaier), non-finite where an entry is; its minimum, NaN counting
    as the minimum; whether every gap / eps (payoff units) is finite), the largest gap
    (NaN if any is NaN, as ``np.max``), then the kernel's statistics block.
    """
    total = 0.0
    comp = 0.0
    low = np.inf
    for a in range(cuts[4], cuts[5]):
        v = buf[a]
        t = total + v
        if abs(total) >= abs(v):
            comp += (total - t) + v
        else:
            comp += (v - t) + total
        total = t
        if not v >= low:
            low = v
    gaps_finite = True
    eps_finite = True
    gap = buf[cuts[6]]
    for i in range(cuts[6], cuts[7]):
        v = buf[i]
        gaps_finite = gaps_finite and math.isfinite(v)
        if math.isnan(v) or math.isnan(gap):
            gap = math.nan
        elif v > gap:
            gap = v
    for i in range(cuts[7], cuts[8]):
        eps_finite = eps_finite and math.isfinite(buf[i])
    s = cuts[11]
    return ((total + comp, low, gaps_finite, eps_finite), gap, buf[s], buf[s + 1], buf[s + 2], buf[s + 3],
            buf[s + 4], buf[s + 5], buf[s + 6])
