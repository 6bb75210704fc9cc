"""Numba kernels for the eps-MWMRE dual (DESIGN §4), single-game and batched.

The quantities are those of ``solvers.dual`` (the NumPy reference), computed on the
ELL layout of ``solvers.gains`` without ever forming a dense ``[K, |A|]`` matrix:

- ``rows: [|A|, c]`` int64 constraint index of each stored gain (shared by a batch),
- ``values: [B, |A|, c]`` gains, ``base: [B, |A|]`` base logits (``-inf`` = off the
  support after facial reduction), ``eps_hat, eps_plus: [B, N]``, ``rho: [B]``
  (``inf`` = hard constraints), ``free: [B, K]`` sign-free (equality) rows,
  ``player: [K]`` owner of each constraint, ``alpha: [B, K]`` duals.

Single-game kernels (``*_one``) write into caller-provided buffers so that the solvers
(``solvers.newton``, ``solvers.gradient``) allocate nothing per iteration; the batched
entry points (no suffix) run them over games (tests' extras: tests/_kernels_reference.py).
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

from solvers.newton_ell import hessian_lower_one, joint_products_lower  # noqa: F401  (newton: kn.hessian_lower_one)
from solvers.vexp import shifted_exps, sum_shifted

__all__ = [
    "logits",
    "softmax",
    "gain_values",
    "gain_values_serial",
    "certify",
    "certify_serial",
]


# Single-game building blocks (buffers passed in; no allocation).
@njit(cache=True, fastmath=False)
def logits_one(rows, values, base, alpha, out):
    """``out[a] = base[a] - sum_j alpha[rows[a, j]] values[a, j]``; ``out: [|A|]``.

    Four joints at a time, each summed in the order ``j = 0..c-1`` (bit-identical to the
    plain loop; the four independent chains hide the add latency).
    """
    num_joint, width = rows.shape
    a = 0
    while a + 4 <= num_joint:
        acc0 = base[a]
        acc1 = base[a + 1]
        acc2 = base[a + 2]
        acc3 = base[a + 3]
        for j in range(width):
            acc0 -= alpha[rows[a, j]] * values[a, j]
            acc1 -= alpha[rows[a + 1, j]] * values[a + 1, j]
            acc2 -= alpha[rows[a + 2, j]] * values[a + 2, j]
            acc3 -= alpha[rows[a + 3, j]] * values[a + 3, j]
        # Off the support (base -inf) the logit stays -inf exactly.
        out[a] = acc0 if base[a] != -np.inf else -np.inf
        out[a + 1] = acc1 if base[a + 1] != -np.inf else -np.inf
        out[a + 2] = acc2 if base[a + 2] != -np.inf else -np.inf
        out[a + 3] = acc3 if base[a + 3] != -np.inf else -np.inf
        a += 4
    for b in range(a, num_joint):
        acc = base[b]
        if acc == -np.inf:
            out[b] = acc
            continue
        for j in range(width):
            acc -= alpha[rows[b, j]] * values[b, j]
        out[b] = acc


@njit(cache=True)
def log_partition_one(lg):
    """Max-shifted log-sum-exp of ``lg: [|A|]`` (``-inf`` when every entry is); the sum of
    ``softmax_one`` (``vexp.sum_shifted``), bit for bit."""
    top = -np.inf
    for a in range(lg.shape[0]):
        if lg[a] > top:
            top = lg[a]
    if top == -np.inf:
        return -np.inf
    return top + math.log(sum_shifted(lg, top))


@njit(cache=True)
def softmax_one(lg, sigma):
    """Writes ``softmax(lg)`` into ``sigma`` and returns ``log-sum-exp(lg)`` (one ``exp`` per
    entry: ``vexp.shifted_exps``, shared by every softmax of the dual's logits)."""
    top = -np.inf
    for a in range(lg.shape[0]):
        if lg[a] > top:
            top = lg[a]
    if top == -np.inf:
        sigma[:] = 0.0
        return top
    acc = shifted_exps(lg, top, sigma)
    for a in range(lg.shape[0]):
        sigma[a] = sigma[a] / acc
    return top + math.log(acc)


@njit(cache=True)
def expected_gains_one(rows, values, sigma, out):
    """``out[k] = sum_a sigma[a] M[k, a]`` from the ELL columns; ``out: [K]``."""
    out[:] = 0.0
    num_joint, width = rows.shape
    for a in range(num_joint):
        s = sigma[a]
        if s == 0.0:
            continue
        for j in range(width):
            out[rows[a, j]] += s * values[a, j]


@njit(cache=True)
def player_sums_one(alpha, player, out):
    """``out[p] = sum_{k of p} alpha[k]``, each sum in increasing ``k``; ``out: [N]``.

    The running sum stays in a register over each run of one player's rows (the
    layouts are player-major: one run each) and is stored when the player changes
    (resumed from ``out`` if that player comes back): the same additions in the same
    order as ``out[player[k]] += alpha[k]``, without a store-to-load round trip per
    row (K = 112: 365 -> 68 ns, benchmarks/results/solvers_suite_profile.md).
    """
    out[:] = 0.0
    num = alpha.shape[0]
    if num == 0:
        return
    p = player[0]
    acc = 0.0
    for k in range(num):
        q = player[k]
        if q != p:
            out[p] = acc
            p = q
            acc = out[q]
        acc += alpha[k]
    out[p] = acc


@njit(cache=True)
def eps_and_penalty_one(ssum, eps_hat, eps_plus, rho, eps):
    """Writes ``eps_p(alpha)`` into ``eps: [N]``; returns the penalty part of the loss."""
    penalty = 0.0
    hard = rho == np.inf
    for p in range(ssum.shape[0]):
        if hard:
            eps[p] = eps_hat[p]
            penalty += eps_hat[p] * ssum[p]
        else:
            width = eps_plus[p] - eps_hat[p]
            decay = math.exp(-ssum[p] / rho)
            eps[p] = eps_plus[p] - width * decay
            penalty += eps_plus[p] * ssum[p] + rho * width * decay
    return penalty


@njit(cache=True)
def loss_only_one(rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, ssum, eps):
    """``L(alpha)`` alone (line searches); ``lg: [|A|]``, ``ssum, eps: [N]`` are buffers."""
    logits_one(rows, values, base, alpha, lg)
    lse = log_partition_one(lg)
    player_sums_one(alpha, player, ssum)
    return lse + eps_and_penalty_one(ssum, eps_hat, eps_plus, rho, eps)


@njit(cache=True)
def evaluate_one(rows, values, player, base, eps_hat, eps_plus, rho, alpha, lg, sigma, mean, ssum, eps, grad):
    """Loss, joint, expected gains, eps and gradient at ``alpha``; returns ``L(alpha)``.

    Buffers: ``lg, sigma: [|A|]``, ``mean, grad: [K]``, ``ssum, eps: [N]``.
    """
    logits_one(rows, values, base, alpha, lg)
    lse = softmax_one(lg, sigma)
    expected_gains_one(rows, values, sigma, mean)
    player_sums_one(alpha, player, ssum)
    penalty = eps_and_penalty_one(ssum, eps_hat, eps_plus, rho, eps)
    for k in range(grad.shape[0]):
        grad[k] = eps[player[k]] - mean[k]
    return lse + penalty


@njit(cache=True)
def evaluate_logits_one(rows, values, player, eps_hat, eps_plus, rho, alpha, lg, sigma, mean, ssum, eps, grad):
    """``evaluate_one`` when ``lg`` already holds the logits at ``alpha`` (after a line search)."""
    lse = softmax_one(lg, sigma)
    expected_gains_one(rows, values, sigma, mean)
    player_sums_one(alpha, player, ssum)
    penalty = eps_and_penalty_one(ssum, eps_hat, eps_plus, rho, eps)
    for k in range(grad.shape[0]):
        grad[k] = eps[player[k]] - mean[k]
    return lse + penalty


@njit(cache=True)
def structural_zero_rows_one(rows, values, base, out):
    """``out[k]``: True when row k has no non-zero gain on the support ``base > -inf``."""
    out[:] = True
    num_joint, width = rows.shape
    for a in range(num_joint):
        if base[a] == -np.inf:
            continue
        for j in range(width):
            if values[a, j] != 0.0:
                out[rows[a, j]] = False


@njit(cache=True)
def curvature_one(ssum, eps_hat, eps_plus, rho, out):
    """``out[p] = (eps_plus_p - eps_hat_p) / rho exp(-S_p / rho)`` (0 when hard)."""
    for p in range(ssum.shape[0]):
        if rho == np.inf:
            out[p] = 0.0
        else:
            out[p] = (eps_plus[p] - eps_hat[p]) / rho * math.exp(-ssum[p] / rho)


# The Hessian only steers the search direction (the certificate never reads it):
# reassociation and contraction are safe there and let the loops vectorise.
@njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def hessian_one(rows, values, player, sigma, mean, curv, pos, hess, keep, loc, val):
    """Hessian block on the rows with ``pos[k] >= 0`` (their index in ``hess``).

    ``hess[pos[i], pos[j]] = sum_a sigma(a) m_a[i] m_a[j] - mean[i] mean[j]
    + [same player] curv[player]``, accumulated from the ELL columns
    (``|A| c^2 / 2`` work, no dense ``[K, |A|]``). ``pos: [K]``, ``hess: [n, n]`` with
    ``n = #{k: pos[k] >= 0}``; scratch ``keep: [>= n]`` int64, ``loc: [>= c]`` int64,
    ``val: [>= c]``. (Newton, which reads one triangle, uses ``hessian_lower_one``.)
    """
    n = hess.shape[0]
    joint_products_lower(rows, values, sigma, pos, hess, loc, val)
    # Rank-one mean term and per-player curvature over the n kept rows only.
    for k in range(pos.shape[0]):
        if pos[k] >= 0:
            keep[pos[k]] = k
    for i1 in range(n):
        k1 = keep[i1]
        mk1 = mean[k1]
        p1 = player[k1]
        for i2 in range(i1 + 1):
            k2 = keep[i2]
            extra = -mk1 * mean[k2]
            if p1 == player[k2]:
                extra += curv[p1]
            hess[i1, i2] += extra
    for i in range(n):
        for j in range(i):
            hess[j, i] = hess[i, j]


@njit(cache=True)
def hessian_vector_one(rows, values, player, sigma, mean, curv, vec, psum, weights, out):
    """``out = H vec`` without forming ``H`` (the Hessian of ``hessian_one``, all rows).

    ``H = sum_a sigma(a) m_a m_a^T - mean mean^T + [same player] curv[player]``: two
    passes over the ELL columns, the cost of one gradient (the second is
    ``expected_gains_one`` with weights ``sigma(a) m_a . vec``). ``vec, out: [K]``;
    ``psum: [N]``, ``weights: [|A|]`` scratch.
    """
    num_joint, width = rows.shape
    for a in range(num_joint):
        s = sigma[a]
        d = 0.0
        if s != 0.0:
            for j in range(width):
                d += values[a, j] * vec[rows[a, j]]
        weights[a] = s * d
    expected_gains_one(rows, values, weights, out)
    mv = 0.0
    for k in range(vec.shape[0]):
        mv += mean[k] * vec[k]
    psum[:] = 0.0
    for k in range(vec.shape[0]):
        psum[player[k]] += vec[k]
    for k in range(vec.shape[0]):
        out[k] += curv[player[k]] * psum[player[k]] - mean[k] * mv


@njit(cache=True)
def rows_are_identity(rows, num):
    """True when every joint touches every row in order (``rows[a, j] == j``, width ``num``):
    the CCE layout, whose Hessian is a dense ``V^T diag(sigma) V``."""
    num_joint, width = rows.shape
    if width != num:
        return False
    bad = 0
    for a in range(num_joint):  # branch-free: it vectorises (run on every single solve)
        for j in range(width):
            bad += rows[a, j] != j
    return bad == 0


@njit(cache=True)
def dgap_one(alpha, grad, ssum, eps, gaps, eps_hat, eps_plus, rho, free):
    """Duality gap ``L(alpha) - P(sigma(alpha), eps')`` (DESIGN §4, "Certificate").

    Hard: ``sum_k max(alpha_k g_k, 0)`` over the inequality rows, the closed form of
    ``L' - P`` for the problem relaxed to ``sigma``'s own values on the rows it violates
    (``g_k < 0``) and on the face's equalities (free rows): a sum of non-negative terms,
    so >= 0 exactly. (``L - P = alpha . g`` itself goes negative by up to
    ``||alpha||_1 * violation``: -9.1e-9 on a 6x6x6 Kuhn-poker CE with duals ~1e3 and
    violation 1e-10.) Soft: ``alpha . g`` plus ``rho sum_p [f(q'_p) - f(q_p)]``,
    ``f(q) = q ln(q / (e w_p))``, ``q = eps_plus - eps``, for the certificate's
    ``eps'_p = max(eps_p, gaps_p)`` (>= 0 by convexity of f, up to rounding); ``inf`` when
    ``eps' >= eps_plus``.
    """
    gap = 0.0
    if rho == np.inf:
        for k in range(alpha.shape[0]):
            term = alpha[k] * grad[k]
            if term > 0.0 and not free[k]:
                gap += term
        return gap
    for k in range(alpha.shape[0]):
        gap += alpha[k] * grad[k]
    for p in range(ssum.shape[0]):
        if gaps[p] > eps[p]:
            width = eps_plus[p] - eps_hat[p]
            q = eps_plus[p] - eps[p]
            q2 = eps_plus[p] - gaps[p]
            if q2 <= 0.0:
                return np.inf
            gap += rho * (q2 * (math.log(q2 / width) - 1.0) - q * (math.log(q / width) - 1.0))
    return gap


@njit(cache=True)
def player_gaps_one(mean, player, gaps):
    """``gaps[p] = max_{k of p} mean[k]`` (0 for a player without constraints); the
    running maximum in a register over each run of one player's rows, as
    ``player_sums_one``."""
    gaps[:] = -np.inf
    num = mean.shape[0]
    if num > 0:
        p = player[0]
        top = -np.inf
        for k in range(num):
            q = player[k]
            if q != p:
                gaps[p] = top
                p = q
                top = gaps[q]
            if mean[k] > top:
                top = mean[k]
        gaps[p] = top
    for p in range(gaps.shape[0]):
        if gaps[p] == -np.inf:
            gaps[p] = 0.0


@njit(cache=True)
def measures_one(alpha, grad, free):
    """``(violation, kkt)``: ``max_k (-g_k)^+`` and ``max_k |min(alpha_k, g_k)|``
    (``|g_k|`` on free rows)."""
    viol = 0.0
    kkt = 0.0
    for k in range(alpha.shape[0]):
        g = grad[k]
        if -g > viol:
            viol = -g
        if free[k]:
            r = abs(g)
        else:
            r = abs(min(alpha[k], g))
        if r > kkt:
            kkt = r
    return viol, kkt


@njit(cache=True)
def gain_values_one(flat, slot_player, dev, out):
    """``out[a, j] = flat[p_j, dev[a, j]] - flat[p_j, a]`` for one game ``flat: [N, |A|]``."""
    num_joint, width = dev.shape
    for a in range(num_joint):
        for j in range(width):
            p = slot_player[j]
            out[a, j] = flat[p, dev[a, j]] - flat[p, a]


@njit(cache=True)
def certify_range(lo, hi, rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, joint, gaps, epsp, stats):
    """Games ``lo..hi-1`` of ``certify`` on one set of scratch buffers."""
    num_joint = base.shape[1]
    num_players = eps_hat.shape[1]
    num = alpha.shape[1]
    lg = np.empty(num_joint)
    mean = np.empty(num)
    grad = np.empty(num)
    ssum = np.empty(num_players)
    eps = np.empty(num_players)
    for b in range(lo, hi):
        loss = evaluate_one(rows, values[b], player, base[b], eps_hat[b], eps_plus[b], rho[b], alpha[b],
                            lg, joint[b], mean, ssum, eps, grad)
        player_gaps_one(mean, player, gaps[b])
        viol, kkt = measures_one(alpha[b], grad, free[b])
        stats[b, 0] = viol
        stats[b, 1] = kkt
        stats[b, 2] = dgap_one(alpha[b], grad, ssum, eps, gaps[b], eps_hat[b], eps_plus[b], rho[b], free[b])
        stats[b, 3] = loss
        for p in range(num_players):
            if rho[b] == np.inf:
                epsp[b, p] = eps_hat[b, p]
            else:
                epsp[b, p] = max(eps[p], gaps[b, p])


# Batched entry points (parallel over games). ``gain_values`` and ``certify`` run on one thread
# below PARALLEL_MIN_GAINS gains (B |A| c), where a thread-pool launch costs more than it saves.
PARALLEL_MIN_GAINS = 1 << 17


@njit(cache=True, parallel=True)
def logits(rows, values, base, alpha):
    """``[B, |A|]`` logits ``base - M^T alpha``."""
    num_games, num_joint = base.shape
    out = np.empty((num_games, num_joint))
    for b in prange(num_games):
        logits_one(rows, values[b], base[b], alpha[b], out[b])
    return out


@njit(cache=True, parallel=True)
def softmax(lg):
    """``[B, |A|]`` softmax of ``lg: [B, |A|]``."""
    out = np.empty_like(lg)
    for b in prange(lg.shape[0]):
        softmax_one(lg[b], out[b])
    return out


def gain_values(flat, slot_player, dev):
    """``[B, |A|, c]`` ELL gains of ``flat: [B, N, |A|]`` payoffs.

    ``values[b, a, j] = flat[b, p_j, dev[a, j]] - flat[b, p_j, a]`` with ``p_j =
    slot_player[j]`` and ``dev`` the deviated joint (``solvers.gains.gain_structure``).
    """
    small = flat.shape[0] * dev.size < PARALLEL_MIN_GAINS
    return (gain_values_serial if small else _gain_values_parallel)(flat, slot_player, dev)


@njit(cache=True, parallel=True)
def _gain_values_parallel(flat, slot_player, dev):
    out = np.empty((flat.shape[0],) + dev.shape)
    for b in prange(flat.shape[0]):
        gain_values_one(flat[b], slot_player, dev, out[b])
    return out


def certify(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha):
    """What ``alpha: [B, K]`` certifies (``solvers.dual.certificate``, batched).

    Returns:
      joint: ``[B, |A|]``; gaps: ``[B, N]`` ``max_dev E[gain]``; eps: ``[B, N]`` the
      feasible approximation ``eps'`` (hard: ``eps_hat``); stats: ``[B, 4]`` violation
      ``max_k (E[M_k] - eps_k(alpha))^+``, KKT residual, duality gap and ``L(alpha)``.
    """
    if values.size < PARALLEL_MIN_GAINS:
        return certify_serial(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha)
    chunks = min(base.shape[0], 4 * get_num_threads())
    return _certify_parallel(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, chunks)


@njit(cache=True, parallel=True)
def _certify_parallel(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha, chunks):
    """``certify`` over ``chunks`` contiguous runs of games (a workspace each) in parallel."""
    num_games, num_joint = base.shape
    num_players = eps_hat.shape[1]
    joint = np.empty((num_games, num_joint))
    gaps = np.empty((num_games, num_players))
    epsp = np.empty((num_games, num_players))
    stats = np.empty((num_games, 4))
    for c in prange(chunks):
        certify_range(c * num_games // chunks, (c + 1) * num_games // chunks, rows, values, player, base,
                      eps_hat, eps_plus, rho, free, alpha, joint, gaps, epsp, stats)
    return joint, gaps, epsp, stats


@njit(cache=True)
def gain_values_serial(flat, slot_player, dev):
    """``gain_values`` without threads (small batches: no thread-pool launch)."""
    out = np.empty((flat.shape[0],) + dev.shape)
    for b in range(flat.shape[0]):
        gain_values_one(flat[b], slot_player, dev, out[b])
    return out


@njit(cache=True)
def certify_serial(rows, values, player, base, eps_hat, eps_plus, rho, free, alpha):
    """``certify`` without threads (small batches: no thread-pool launch)."""
    num_games, num_joint = base.shape
    num_players = eps_hat.shape[1]
    joint = np.empty((num_games, num_joint))
    gaps = np.empty((num_games, num_players))
    epsp = np.empty((num_games, num_players))
    stats = np.empty((num_games, 4))
    certify_range(0, num_games, rows, values, player, base, eps_hat, eps_plus, rho, free, alpha,
                  joint, gaps, epsp, stats)
    return joint, gaps, epsp, stats


@njit(cache=True)
def all_finite(flat):
    """True when no entry of ``flat: [n]`` is NaN or inf."""
    for i in range(flat.shape[0]):
        if not math.isfinite(flat[i]):
            return False
    return True


@njit(cache=True)
def normalise_one(flat, tiny_rel):
    """``solvers.game.normalise`` of one game ``flat: [N, |A|]`` (same formula, compiled).

    Returns ``(payoffs [N, |A|], scale [N], offset [N])``; a player whose payoff spread
    ``max - min`` is ``<= tiny_rel * max |payoff|`` is constant (zero payoffs, scale 1).
    Overflow-safe as ``normalise_batch``: the slice is centred on its midrange and divided
    by its largest deviation before the mean and the norm are taken. Where that function
    raises (spread overflows, or ``scale`` does) ``scale[p]`` is NaN or inf: the caller
    checks and raises.
    """
    num_players, num_joint = flat.shape
    out = np.empty((num_players, num_joint))
    scale = np.empty(num_players)
    offset = np.empty(num_players)
    z2 = math.sqrt(num_joint)
    half_max = 0.5 * 1.7976931348623157e308
    for p in range(num_players):
        hi = flat[p, 0]
        lo = flat[p, 0]
        for a in range(1, num_joint):
            hi = max(hi, flat[p, a])
            lo = min(lo, flat[p, a])
        half = 0.5 * hi - 0.5 * lo
        centre = 0.5 * hi + 0.5 * lo
        offset[p] = centre
        if half > half_max:
            scale[p] = math.nan
            out[p, :] = 0.0
            continue
        radius = 0.0
        for a in range(num_joint):
            radius = max(radius, abs(flat[p, a] - centre))
        if half <= 0.5 * tiny_rel * max(abs(hi), abs(lo)) or radius == 0.0:
            scale[p] = 1.0
            out[p, :] = 0.0
            continue
        total = 0.0
        for a in range(num_joint):
            out[p, a] = (flat[p, a] - centre) / radius
            total += out[p, a]
        mean = total / num_joint
        sq = 0.0
        for a in range(num_joint):
            d = out[p, a] - mean
            out[p, a] = d
            sq += d * d
        norm = math.sqrt(sq)
        if norm == 0.0:
            scale[p] = 1.0
            out[p, :] = 0.0
            continue
        factor = z2 / norm
        scale[p] = factor / radius
        offset[p] = centre + radius * mean
        for a in range(num_joint):
            out[p, a] *= factor
    return out, scale, offset
