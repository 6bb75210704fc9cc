"""Exact reference optima and the accuracy metrics of the paper's Table 1.

``reference_optima`` minimises the dual of each game to high accuracy (for validation
sets and benchmarks), one game at a time, with SciPy's L-BFGS-B (bounds ``alpha >= 0``)
in float64 on the dense gain matrix (``solvers.gains.dense_gains``): fine for the small
validation sets used here. It does not call the dual methods of ``solvers`` (Newton,
first-order): only the gain construction is shared.

Metrics, all in normalised units, per game:

- ``gap``: the paper's (C)CE gap ``sum_p max(0, max_dev E_sigma[A_p(dev)])``;
- ``solver_gap``: ``0.5 ||sigma - sigma*||_1``, half the L1 distance to the exact joint;
- ``suboptimality``: ``L(alpha) - L*``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from hybrid_nes.loss import Duals, batch_dual_metrics, duals_from_flat
from hybrid_nes.sampling import SelectionInputs
from solvers.gains import dense_gains, gains

__all__ = ["Reference", "Scores", "reference_optima", "score_duals", "uniform_rule_duals"]


class Reference(NamedTuple):
    """Exact optima of a batch: ``duals [B, K]``, ``loss [B]``, ``joint [B, A1..AN]``."""

    duals: np.ndarray
    loss: np.ndarray
    joint: np.ndarray


class Scores(NamedTuple):
    """Per-game metrics ``[B]`` (see module docstring)."""

    gap: np.ndarray
    solver_gap: np.ndarray
    suboptimality: np.ndarray
    loss: np.ndarray


def _solve_one(m: np.ndarray, player: np.ndarray, base: np.ndarray, eps_hat, eps_plus, rho, tol: float, maxiter: int):
    hard = math.isinf(rho)
    n = eps_hat.shape[0]

    def fun(alpha):
        lg = base - m.T @ alpha
        top = lg.max()
        w = np.exp(lg - top)
        z = w.sum()
        sigma = w / z
        s = np.bincount(player, weights=alpha, minlength=n)
        if hard:
            pen, eps = eps_hat @ s, eps_hat
        else:
            width = eps_plus - eps_hat
            decay = np.exp(-s / rho)
            pen = eps_plus @ s + rho * width @ decay
            eps = eps_plus - width * decay
        return top + math.log(z) + pen, eps[player] - m @ sigma

    x0 = np.zeros(m.shape[0])
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=[(0, None)] * m.shape[0],
                   options={"maxiter": maxiter, "ftol": 1e-15, "gtol": tol, "maxcor": 30})
    alpha = res.x
    lg = base - m.T @ alpha
    sigma = np.exp(lg - lg.max())
    return alpha, float(res.fun), sigma / sigma.sum()


def reference_optima(
    payoffs: np.ndarray, sel: SelectionInputs, concept: str, tol: float = 1e-9, maxiter: int = 3000
) -> Reference:
    """Minimises the dual of every game of a batch (float64).

    Args:
      payoffs: ``[B, N, A1..AN]`` normalised games.
      sel: ``SelectionInputs`` with a leading B axis.
      concept: "cce" or "ce".
      tol: projected-gradient tolerance.
      maxiter: L-BFGS-B iteration cap (hard CE optima on a face of the simplex are not
        attained: the duals drift and the joint converges slowly).
    """
    payoffs = np.asarray(payoffs, np.float64)
    shape = payoffs.shape[2:]
    base = np.asarray(sel.base_logits, np.float64).reshape(payoffs.shape[0], -1)
    eps_hat = np.asarray(sel.eps_hat, np.float64)
    eps_plus = np.asarray(sel.eps_plus, np.float64)
    rho = np.asarray(sel.rho, np.float64)
    duals, losses, joints = [], [], []
    for i in range(payoffs.shape[0]):
        g = gains(payoffs[i], concept)
        m = dense_gains(g)
        a, loss, sigma = _solve_one(m, g.player, base[i], eps_hat[i], eps_plus[i], float(rho[i]), tol, maxiter)
        duals.append(a)
        losses.append(loss)
        joints.append(sigma.reshape(shape))
    return Reference(np.stack(duals), np.array(losses), np.stack(joints))


def uniform_rule_duals(payoffs: jax.Array, concept: str, c: float = 1.0) -> Duals:
    """The one-line baseline ``alpha = c * max(0, E_uniform[gain])``, per player, ``[B, ...]``."""
    out = []
    n = payoffs.shape[1]
    for p in range(n):
        g = jnp.moveaxis(payoffs[:, p], p + 1, 1)  # [B, A_p, ...]
        g = g.reshape(g.shape[0], g.shape[1], -1)
        mean_rows = g.mean(axis=2)  # E over a_-p uniform of G(a', a_-p)
        if concept == "cce":
            gain = mean_rows - g.mean(axis=(1, 2))[:, None]
        else:
            gain = mean_rows[:, :, None] - mean_rows[:, None, :]  # [dev, rec]
        out.append(c * jnp.maximum(gain, 0.0))
    return tuple(out)


def score_duals(payoffs, sel: SelectionInputs, duals: Duals | np.ndarray, concept: str, ref: Reference) -> Scores:
    """Table-1 metrics of ``duals`` (per-player tuple or flat ``[B, K]``) against ``ref``."""
    payoffs = jnp.asarray(payoffs, jnp.float32)
    if not isinstance(duals, tuple):
        duals = duals_from_flat(jnp.asarray(duals, jnp.float32), payoffs.shape[2:], concept)
    sel32 = SelectionInputs(*(jnp.asarray(x, jnp.float32) for x in sel))
    m = jax.jit(batch_dual_metrics, static_argnums=3)(payoffs, sel32, tuple(duals), concept)
    joint = np.asarray(m.joint, np.float64)
    b = joint.shape[0]
    solver_gap = 0.5 * np.abs(joint.reshape(b, -1) - ref.joint.reshape(b, -1)).sum(axis=1)
    loss = np.asarray(m.loss, np.float64)
    return Scores(np.asarray(m.gap, np.float64), solver_gap, loss - ref.loss, loss)
