"""Differentiable equilibria: exact gradients of ME/MRE/MW (C)CEs in JAX (DESIGN §9).

``solve(payoffs, concept, selection, ...)`` returns the selected (C)CE as JAX arrays,
differentiable (reverse mode, ``jax.grad``) with respect to the payoffs and the
selection's array parameters (the MRE ``target``, the MWME ``welfare``, the welfare
weight ``mu`` and ``eps_hat``). ``jvp(payoffs, payoffs_dot, ...)`` is the same
derivative in forward mode (``jax.jvp`` does not go through a ``custom_vjp``).

Forward (``forward``): the exact solver of ``solvers.solve`` (compiled single-game
Newton, ``refine_batch`` with facial reduction and CVXPY polish where that is short)
runs inside ``jax.pure_callback`` in float64 on the payoffs normalised exactly as
``solvers.solve`` normalises them. ``jax.vmap`` batches the callback
(``vmap_method="broadcast_all"``): a batch of games is one callback.

Derivative (``implicit``): the implicit-function theorem on the KKT system of the free
duals: active constraints held at equality, joint actions off the face's support held
at zero; one symmetric solve of the free block of the dual Hessian per cotangent (or
tangent): up to ``forward.DENSE_ADJOINT_MAX`` duals the forward returns the block's
inverse and the VJP is a product in JAX, else (and for singular blocks, on faces) a
second callback solves it. ``theta`` is the normalised game and the resolved selection; the
normalisation (DESIGN §5) and the resolution (welfare, target, eps_hat scaling) are
written in JAX (``problem``), so the chain rule covers them and gradients are in the
user's payoff units. No derivative comes from unrolled iterations.

Degenerate points (the map is not differentiable there) are reported, never silently
differentiated: ``DiffSolution.status`` is non-zero and the derivative raises
``DegenerateEquilibriumError`` (``on_degenerate="raise"``, default) or is NaN
(``"nan"``); ``"one_sided"`` opts in to a one-sided derivative there (gradient descent
across active-set changes). See ``STATUS_MESSAGES``.

Precision: the solve and the linear solve are float64 whatever JAX's mode. With
``jax_enable_x64`` off the inputs arrive as float32 (the payoffs are re-normalised in
float64 in the callback), the outputs are cast to float32, and the JAX part of the
derivative runs in float32: expect gradients to ~1e-5 relative. Use float64 for
gradient checks, through the global flag ``jax.config.update("jax_enable_x64", True)``:
the ``jax.enable_x64`` context manager is thread-local, the callbacks run on XLA's
threads, and JAX 0.10.2 then casts their float64 results to float32 and rejects them
("Incorrect output dtype") once calls dispatch asynchronously.

Not differentiable here: Max Gini ("mg", a QP without this dual), ``rho``/``eps_plus``
(static), and higher-order derivatives (the linear solve is NumPy).

Modules: ``api`` (entries), ``checks`` (validation), ``problem`` (JAX maps), ``forward``
(the solve callback; a face is certified from Newton's iterate without an LP by
``solvers.face_cert``), ``face`` (the facial-reduction LP with warm starts, the LP fallback), ``implicit``
(the KKT solve, VJP and JVP), ``status`` (outputs and codes).
"""

from hybrid_nes.diff.api import jvp, solve
from hybrid_nes.diff.forward import FACE_MASS
from hybrid_nes.diff.status import (
    DEGENERATE_ACTIVE_SET,
    DIFF_PRESETS,
    FACE_CHANGE,
    INCONSISTENT,
    INFEASIBLE,
    NOT_OPTIMAL,
    OK,
    ON_DEGENERATE,
    STATUS_MESSAGES,
    DegenerateEquilibriumError,
    DiffSolution,
    DiffTangent,
    describe,
)

__all__ = [
    "DEGENERATE_ACTIVE_SET",
    "DIFF_PRESETS",
    "FACE_CHANGE",
    "FACE_MASS",
    "INCONSISTENT",
    "INFEASIBLE",
    "NOT_OPTIMAL",
    "OK",
    "ON_DEGENERATE",
    "STATUS_MESSAGES",
    "DegenerateEquilibriumError",
    "DiffSolution",
    "DiffTangent",
    "describe",
    "jvp",
    "solve",
]
