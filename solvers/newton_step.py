"""Per-point kernels of the projected Newton line search (``solvers.newton``).

Trial points are evaluated by ``loss_at``, which keeps the shifted exponentials of the
logits; the accepted point's softmax, gains and gradient then come from those
(``evaluate_exps``) instead of a second ``exp`` per joint action. The exponentials and
their sum are ``kernels.softmax_one``'s (``vexp.shifted_exps``), so the results are
bit-identical to ``evaluate_at`` on the same logits.
"""

from __future__ import annotations

import math

from numba import njit

from solvers import kernels as kn
from solvers.vexp import shifted_exps

__all__ = [
    "projected_step_one",
    "logits_identity_one",
    "gains_identity_one",
    "loss_at",
    "evaluate_at",
    "evaluate_exps",
]


@njit(cache=True)
def projected_step_one(alpha, direction, t, free, grad, out):
    """``out = max(alpha + t direction, 0)`` (sign-free rows unclipped); returns ``grad . (out - alpha)``."""
    dec = 0.0
    for k in range(alpha.shape[0]):
        v = alpha[k] + t * direction[k]
        if not free[k] and v < 0.0:
            v = 0.0
        out[k] = v
        dec += grad[k] * (v - alpha[k])
    return dec


@njit(cache=True)
def logits_identity_one(vt, base, alpha, out):
    """``kernels.logits_one`` on the identity layout from the transposed gains
    ``vt: [K, |A|]``: the same sums in the same order (bit-identical), vectorised over joints."""
    out[:] = base
    for j in range(vt.shape[0]):
        aj = alpha[j]
        for a in range(out.shape[0]):
            out[a] -= aj * vt[j, a]


@njit(cache=True)
def gains_identity_one(values, sigma, out):
    """``kernels.expected_gains_one`` on the identity layout (bit-identical, vectorised over rows)."""
    out[:] = 0.0
    for a in range(values.shape[0]):
        s = sigma[a]
        if s == 0.0:
            continue
        for j in range(out.shape[0]):
            out[j] += s * values[a, j]


@njit(cache=True)
def shifted_exps_one(lg, ex):
    """``ex = exp(lg - max lg)``; returns ``(max lg, sum ex)`` (``(-inf, 0)`` when every
    logit is ``-inf``). ``top + log(acc)`` is ``kernels.log_partition_one(lg)``, bit for bit."""
    top = -math.inf
    for a in range(lg.shape[0]):
        if lg[a] > top:
            top = lg[a]
    if top == -math.inf:
        return top, 0.0
    return top, shifted_exps(lg, top, ex)


@njit(cache=True)
def loss_at(dense, vt, rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, ex, ssum, eps):
    """``kernels.loss_only_one`` (through the identity-layout kernels when ``dense``).

    Returns ``(L(alpha), acc)``; ``ex: [|A|]`` keeps the shifted exponentials and ``acc``
    their sum, for ``evaluate_exps`` should the point be accepted.
    """
    if dense:
        logits_identity_one(vt, base, alpha, lg)
    else:
        kn.logits_one(rows, values, base, alpha, lg)
    top, acc = shifted_exps_one(lg, ex)
    lse = top if acc == 0.0 else top + math.log(acc)
    kn.player_sums_one(alpha, player, ssum)
    return lse + kn.eps_and_penalty_one(ssum, eps_hat, eps_plus, rho, eps), acc


@njit(cache=True)
def gradient_tail(dense, rows, values, player, eps_hat, eps_plus, rho, alpha, sigma, mean, ssum, eps, grad):
    """Gains, eps and gradient at ``alpha`` from the joint ``sigma``; returns the penalty."""
    if dense:
        gains_identity_one(values, sigma, mean)
    else:
        kn.expected_gains_one(rows, values, sigma, mean)
    kn.player_sums_one(alpha, player, ssum)
    penalty = kn.eps_and_penalty_one(ssum, eps_hat, eps_plus, rho, eps)
    for k in range(grad.shape[0]):
        grad[k] = eps[player[k]] - mean[k]
    return penalty


@njit(cache=True)
def evaluate_at(dense, rows, values, player, eps_hat, eps_plus, rho, alpha, lg, sigma, mean, ssum, eps, grad):
    """``kernels.evaluate_logits_one`` (``lg`` holds the logits at ``alpha``), through the
    identity-layout kernels when ``dense``."""
    lse = kn.softmax_one(lg, sigma)
    return lse + gradient_tail(dense, rows, values, player, eps_hat, eps_plus, rho, alpha, sigma, mean, ssum,
                               eps, grad)


@njit(cache=True)
def evaluate_exps(dense, rows, values, player, eps_hat, eps_plus, rho, alpha, ex, acc, sigma, mean, ssum, eps,
                  grad):
    """``evaluate_at`` from a ``loss_at`` of the same ``alpha`` (its ``ex`` and ``acc``):
    no ``exp``. Writes the joint into ``sigma`` and gains, eps and gradient; the loss is
    the one ``loss_at`` returned."""
    if acc == 0.0:
        sigma[:] = 0.0
    else:
        for a in range(sigma.shape[0]):
            sigma[a] = ex[a] / acc
    gradient_tail(dense, rows, values, player, eps_hat, eps_plus, rho, alpha, sigma, mean, ssum, eps, grad)
