"""Structured game families for training (GAMUT-style classes, written from definitions).

Every generator draws raw payoffs ``[B, N, A1..AN]`` from a ``jax.random`` key, inside
jit (shapes static), so a training step never waits for the host. ``sample_family``
then puts each player's payoffs on the L2-invariant sphere (``sampling.sample_games``'
normalisation: mean 0, L2 norm ``sqrt(|A|)``); a positive per-player scale and offset
keep every family's defining property (zero-sum, dominance, correlation sign, ...).

Families (``FAMILIES``): ``random`` (the sphere), ``zero_sum``, ``covariant_neg``,
``covariant_pos``, ``covariant_rand``, ``graphical``, ``local_effect``, ``congestion``,
``auction`` (first-price, second-price, all-pay), ``bertrand``, ``cournot``,
``location`` (Hotelling), ``dominance_solvable``, ``coordination``, ``classic_2x2``
(PD, chicken, stag hunt, matching pennies, BoS, pure coordination, deadlock, harmony).

A training mixture is a tuple of ``(family, weight)`` pairs; ``sample_training_batch``
gives every family of a batch a fixed share of its games (largest remainders), dropping
families that do not support the shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from hybrid_nes.sampling import (
    SelectionInputs,
    check_shape,
    sample_batch,
    sample_games,
    sample_selection,
)

__all__ = [
    "Family",
    "FAMILIES",
    "HELD_OUT_FAMILIES",
    "TRAIN_MIXTURE",
    "normalise_sphere",
    "sample_family",
    "check_mixture",
    "mixture_counts",
    "sample_mixture",
    "sample_training_batch",
]

Mixture = tuple[tuple[str, float], ...]


class Family(NamedTuple):
    """A game family: ``sample(key, batch, shape) -> raw [B, N, A1..AN]``, the shapes it
    supports, and its defining property (documentation)."""

    name: str
    sample: Callable[[jax.Array, int, tuple[int, ...]], jax.Array]
    supports: Callable[[tuple[int, ...]], bool]
    property: str


def normalise_sphere(raw: jax.Array) -> jax.Array:
    """Each player's payoffs of ``[B, N, A1..AN]`` centred and scaled to norm ``sqrt(|A|)``."""
    b, n = raw.shape[:2]
    num_joint = math.prod(raw.shape[2:])
    flat = raw.reshape(b, n, num_joint)
    centred = flat - flat.mean(axis=-1, keepdims=True)
    norm = jnp.sqrt(jnp.sum(centred * centred, axis=-1, keepdims=True))
    scaled = centred * (math.sqrt(num_joint) / jnp.maximum(norm, 1e-12))
    # centred again: a nearly constant player's large scale magnifies the first pass's rounding
    return (scaled - scaled.mean(axis=-1, keepdims=True)).reshape(raw.shape)


# helpers ----------------------------------------------------------------------------------
def _uniform(key, shape, lo, hi):
    return jax.random.uniform(key, shape, minval=lo, maxval=hi)


def _axis(x: jax.Array, p: int, n: int) -> jax.Array:
    """``[B, A_p, ...]`` -> broadcastable ``[B, 1.., A_p, 1.., ...]`` on player ``p``'s axis."""
    extra = x.shape[2:]
    return x.reshape((x.shape[0],) + (1,) * p + (x.shape[1],) + (1,) * (n - p - 1) + extra)


def _full(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jnp.broadcast_to(x, (x.shape[0], *shape, *x.shape[len(shape) + 1:]))


def _two_players(shape):
    return len(shape) == 2


def _any(shape):
    return True


# families ---------------------------------------------------------------------------------
def _random(key, batch, shape):
    return sample_games(key, batch, shape)


def _zero_sum(key, batch, shape):
    """Two players, ``G_2 = -G_1``; entries Gaussian, or a skew-symmetric part (RPS-like)."""
    k1, k2, k3 = jax.random.split(key, 3)
    g = jax.random.normal(k1, (batch, *shape))
    if shape[0] == shape[1]:
        m = jax.random.normal(k2, (batch, *shape))
        skew = m - jnp.swapaxes(m, 1, 2)
        mix = _uniform(k3, (batch, 1, 1), 0.0, 1.0) * (jax.random.uniform(k3, (batch, 1, 1)) < 0.5)
        g = (1.0 - mix) * g + mix * skew
    return jnp.stack([g, -g], axis=1)


def _covariant(lo: float | None, hi: float | None):
    """Each joint action's payoff vector ~ N(0, (1 - r) I + r 11^T), r ~ U(lo, hi) per game
    (lo None: the least correlation possible, ``-1 / (N - 1)``)."""

    def sample(key, batch, shape):
        n = len(shape)
        low = -1.0 / (n - 1) if lo is None else lo
        k_r, k_z = jax.random.split(key)
        r = _uniform(k_r, (batch, 1, 1), low, 1.0 if hi is None else hi)
        z = jax.random.normal(k_z, (batch, n, math.prod(shape)))
        mean = z.mean(axis=1, keepdims=True)
        # eigen-split: (1 - r) on the complement of 1, 1 + (N - 1) r along 1
        x = jnp.sqrt(1.0 - r) * (z - mean) + jnp.sqrt(jnp.maximum(1.0 + (n - 1) * r, 0.0)) * mean
        return x.reshape(batch, n, *shape)

    return sample


def _graphical(key, batch, shape):
    """Each player's payoff depends on its own action and its neighbours' in a random
    directed graph (edge probability ~ U(0.2, 1) per game); independent of the others."""
    n = len(shape)
    k_p, k_e, k_g = jax.random.split(key, 3)
    prob = _uniform(k_p, (batch, 1, 1), 0.2, 1.0)
    edges = jax.random.uniform(k_e, (batch, n, n)) < prob  # edges[b, p, q]: p's payoff reads q
    g = jax.random.normal(k_g, (batch, n, *shape))
    out = []
    for p in range(n):
        gp = g[:, p]
        for q in range(n):
            if q == p:
                continue
            keep = edges[:, p, q].reshape((batch,) + (1,) * n)
            gp = jnp.where(keep, gp, jnp.mean(gp, axis=q + 1, keepdims=True) + 0.0 * gp)
        out.append(gp)
    return jnp.stack(out, axis=1)


def _counts(onehots: Sequence[jax.Array], shape) -> jax.Array:
    """Players per node ``[B, A1..AN, M]`` from each player's ``[B, A_p, M]`` node one-hots."""
    n = len(shape)
    return sum(_axis(o, p, n) for p, o in enumerate(onehots))


def _node_maps(key, batch, shape, nodes):
    """Per player a random injection of its actions into ``nodes`` nodes: ``[B, A_p, M]``."""
    out = []
    for p, a in enumerate(shape):
        perm = jnp.argsort(jax.random.uniform(jax.random.fold_in(key, p), (batch, nodes)), axis=-1)[:, :a]
        out.append(jax.nn.one_hot(perm, nodes))
    return out


def _local_effect(key, batch, shape):
    """Local-effect games: actions are nodes of a random graph; choosing node m pays
    ``f_m(c_m) + sum_{m' ~ m} w_{m m'} c_{m'}`` with ``c`` the players per node and
    ``f_m(c) = alpha_m + beta_m c`` (beta of either sign: congestion or attraction)."""
    n = len(shape)
    nodes = max(shape)
    k_map, k_a, k_b, k_w, k_e, k_d = jax.random.split(key, 6)
    onehots = _node_maps(k_map, batch, shape, nodes)
    counts = _counts(onehots, shape)  # [B, A.., M]
    alpha = jax.random.normal(k_a, (batch, nodes))
    beta = jax.random.normal(k_b, (batch, nodes))
    density = _uniform(k_d, (batch, 1, 1), 0.1, 0.7)
    w = jax.random.normal(k_w, (batch, nodes, nodes)) * (jax.random.uniform(k_e, (batch, nodes, nodes)) < density)
    w = w * (1.0 - jnp.eye(nodes))
    value = alpha.reshape((batch,) + (1,) * n + (nodes,)) + beta.reshape((batch,) + (1,) * n + (nodes,)) * counts
    value = value + jnp.einsum("b...k,bmk->b...m", counts, w)  # [B, A.., M]
    return jnp.stack([jnp.sum(_axis(o, p, n) * value, axis=-1) for p, o in enumerate(onehots)], axis=1)


def _congestion(key, batch, shape):
    """Each action is a distinct non-empty subset of F facilities; a player pays the sum
    over its facilities of ``c_f(k) = a_f + b_f k`` (k users; a, b > 0)."""
    n = len(shape)
    facilities = max(2, math.ceil(math.log2(max(shape) + 1)))
    subsets = 2**facilities - 1
    k_s, k_a, k_b = jax.random.split(key, 3)
    bits = jnp.array([[(s >> f) & 1 for f in range(facilities)] for s in range(1, subsets + 1)], jnp.float32)
    uses = []
    for p, a in enumerate(shape):
        pick = jnp.argsort(jax.random.uniform(jax.random.fold_in(k_s, p), (batch, subsets)), axis=-1)[:, :a]
        uses.append(bits[pick])  # [B, A_p, F]
    load = _counts(uses, shape)
    a_f = _uniform(k_a, (batch, facilities), 0.0, 1.0).reshape((batch,) + (1,) * n + (facilities,))
    b_f = _uniform(k_b, (batch, facilities), 0.1, 1.0).reshape((batch,) + (1,) * n + (facilities,))
    cost = a_f + b_f * load
    return jnp.stack([-jnp.sum(_axis(u, p, n) * cost, axis=-1) for p, u in enumerate(uses)], axis=1)


def _grid(a: int, batch: int, lo, hi, interior: bool = False) -> jax.Array:
    """``[B, a]`` evenly spaced levels from ``lo [B]`` to ``hi [B]`` (``interior``: both
    ends excluded)."""
    if interior:
        t = jnp.arange(1, a + 1) / (a + 1)
    else:
        t = jnp.linspace(0.0, 1.0, a) if a > 1 else jnp.zeros((1,))
    return lo[:, None] + (hi - lo)[:, None] * t[None]


def _levels(shape, batch, lo, hi, interior: bool = False):
    n = len(shape)
    return [_full(_axis(_grid(a, batch, lo, hi, interior), p, n), shape) for p, a in enumerate(shape)]


def _winners(values: list[jax.Array], highest: bool) -> list[jax.Array]:
    """Each player's share of a prize that goes to the highest (lowest) value, ties split."""
    stack = jnp.stack(values, axis=1)
    best = stack.max(axis=1, keepdims=True) if highest else stack.min(axis=1, keepdims=True)
    win = (stack == best).astype(stack.dtype)
    return list(jnp.moveaxis(win / win.sum(axis=1, keepdims=True), 1, 0))


def _auction(key, batch, shape):
    """Sealed-bid auctions on a bid grid [0, 1]: first-price, second-price or all-pay
    (per game); values ~ U(0.3, 1); the highest bid wins, ties split."""
    n = len(shape)
    k_v, k_k = jax.random.split(key)
    values = _uniform(k_v, (batch, n), 0.3, 1.0)
    kind = jax.random.randint(k_k, (batch,), 0, 3).reshape((batch,) + (1,) * n)
    bids = _levels(shape, batch, jnp.zeros(batch), jnp.ones(batch))
    share = _winners(bids, highest=True)
    stack = jnp.stack(bids, axis=1)
    out = []
    for p in range(n):
        v = values[:, p].reshape((batch,) + (1,) * n)
        others = jnp.delete(stack, p, axis=1).max(axis=1)
        first = share[p] * (v - bids[p])
        second = share[p] * (v - others)
        all_pay = share[p] * v - bids[p]
        out.append(jnp.where(kind == 0, first, jnp.where(kind == 1, second, all_pay)))
    return jnp.stack(out, axis=1)


def _bertrand(key, batch, shape):
    """Price competition: the lowest price takes demand ``max(0, d - p)`` (ties split);
    profit ``(p - c_i) x share``; prices on a grid strictly between min cost and d, costs ~ U(0, d/2)."""
    n = len(shape)
    k_d, k_c = jax.random.split(key)
    d = _uniform(k_d, (batch,), 1.0, 2.0)
    cost = _uniform(k_c, (batch, n), 0.0, 0.5) * d[:, None]
    prices = _levels(shape, batch, cost.min(axis=1), d, interior=True)
    share = _winners(prices, highest=False)
    demand = jnp.maximum(0.0, d.reshape((batch,) + (1,) * n) - jnp.stack(prices, 1).min(axis=1))
    return jnp.stack([(prices[p] - cost[:, p].reshape((batch,) + (1,) * n)) * demand * share[p] for p in range(n)], 1)


def _cournot(key, batch, shape):
    """Quantity competition: price ``max(0, d - b Q)``; profit ``q_i (price - c_i)``;
    quantities on a grid from 0 to ``d / b``."""
    n = len(shape)
    k_d, k_b, k_c = jax.random.split(key, 3)
    d = _uniform(k_d, (batch,), 1.0, 2.0)
    slope = _uniform(k_b, (batch,), 0.5, 2.0)
    cost = _uniform(k_c, (batch, n), 0.0, 0.5) * d[:, None]
    qty = _levels(shape, batch, jnp.zeros(batch), d / slope)
    bshape = (batch,) + (1,) * n
    price = jnp.maximum(0.0, d.reshape(bshape) - slope.reshape(bshape) * sum(qty))
    return jnp.stack([qty[p] * (price - cost[:, p].reshape(bshape)) for p in range(n)], axis=1)


def _location(key, batch, shape):
    """Hotelling: sellers pick positions on [0, 1] (sorted random grids); consumers at M
    points with random weights buy from the nearest (ties split); payoff = market share."""
    n = len(shape)
    points = 32
    k_x, k_w = jax.random.split(key)
    where = jnp.linspace(0.0, 1.0, points)
    weight = jax.random.dirichlet(k_w, jnp.ones(points), (batch,))  # [B, M]
    pos = []
    for p, a in enumerate(shape):
        x = jnp.sort(jax.random.uniform(jax.random.fold_in(k_x, p), (batch, a)), axis=-1)
        pos.append(_full(_axis(x, p, n), shape))
    dist = [jnp.abs(x[..., None] - where) for x in pos]  # [B, A.., M]
    share = _winners(dist, highest=False)
    wb = weight.reshape((batch,) + (1,) * n + (points,))
    return jnp.stack([jnp.sum(s * wb, axis=-1) for s in share], axis=1)


def _dominance_solvable(key, batch, shape):
    """Solvable by iterated elimination of strictly dominated (pure) actions.

    Every action but one per player gets an elimination time ~ U(0, 1) (the survivor 2);
    an action removed at time t is set to a later-removed action of the same player minus
    ``delta ~ U(0.05, 1)`` on every opponent profile still alive at t (random elsewhere).
    """
    n = len(shape)
    k_t, k_g, k_j, k_d = jax.random.split(key, 4)
    times = []
    for p, a in enumerate(shape):
        t = jax.random.uniform(jax.random.fold_in(k_t, p), (batch, a))
        survivor = jax.random.randint(jax.random.fold_in(k_t, 100 + p), (batch,), 0, a)
        times.append(jnp.where(jax.nn.one_hot(survivor, a) > 0, 2.0, t))
    out = []
    for p, a in enumerate(shape):
        g = jax.random.normal(jax.random.fold_in(k_g, p), (batch, *shape))
        rows = jnp.moveaxis(g, p + 1, 1).reshape(batch, a, -1)  # [B, A_p, R]
        others = [jnp.asarray(times[q]) for q in range(n) if q != p]
        other_shape = tuple(shape[q] for q in range(n) if q != p)
        order = jnp.argsort(times[p], axis=-1)  # removal order; last = survivor
        t_sorted = jnp.take_along_axis(times[p], order, axis=-1)
        rows = jnp.take_along_axis(rows, order[:, :, None], axis=1)
        delta = _uniform(jax.random.fold_in(k_d, p), rows.shape, 0.05, 1.0)
        u = jax.random.uniform(jax.random.fold_in(k_j, p), (batch, a))

        def body(i, rows, a=a, others=others, other_shape=other_shape, t_sorted=t_sorted, delta=delta, u=u):
            k = a - 2 - i
            j = k + 1 + jnp.floor(u[:, k] * (a - 1 - k)).astype(jnp.int32)  # [B] a later action
            j = jnp.minimum(j, a - 1)
            alive = jnp.ones((batch, *other_shape), bool)
            for m, tq in enumerate(others):
                alive = alive & _axis((tq > t_sorted[:, k][:, None]), m, len(others))
            dom = jnp.take_along_axis(rows, j[:, None, None], axis=1)[:, 0]
            new = jnp.where(alive.reshape(batch, -1), dom - delta[:, k], rows[:, k])
            return rows.at[:, k].set(new)

        if a > 1:
            rows = jax.lax.fori_loop(0, a - 1, body, rows)
        rows = jnp.take_along_axis(rows, jnp.argsort(order, axis=-1)[:, :, None], axis=1)
        full = rows.reshape(batch, a, *(shape[q] for q in range(n) if q != p))
        out.append(jnp.moveaxis(full, 1, p + 1))
    return jnp.stack(out, axis=1)


def _coordination(key, batch, shape):
    """Coordination: action a of player p has label ``floor(a L / A_p)``, L = min A_p;
    matching labels pays ``bonus_p[label] ~ U(0.5, 1.5)`` (players may disagree on the
    best label, as in BoS), plus noise ~ U(-s, s), s ~ U(0, 0.2)."""
    n = len(shape)
    labels = min(shape)
    k_b, k_s, k_n = jax.random.split(key, 3)
    lab = [_full(_axis(jnp.broadcast_to((jnp.arange(a) * labels) // a, (batch, a)), p, n), shape)
           for p, a in enumerate(shape)]
    match = jnp.ones((batch, *shape), bool)
    for x in lab[1:]:
        match = match & (x == lab[0])
    bonus = _uniform(k_b, (batch, n, labels), 0.5, 1.5)
    s = _uniform(k_s, (batch, 1) + (1,) * n, 0.0, 0.2)
    noise = s * _uniform(k_n, (batch, n, *shape), -1.0, 1.0)
    pay = [jnp.take_along_axis(bonus[:, p], lab[0].reshape(batch, -1), axis=1).reshape(batch, *shape) for p in range(n)]
    return jnp.stack(pay, axis=1) * match[:, None] + noise


#: Row player's 2x2 payoffs [[R, S], [T, P]] (cooperate first) by ordinal class; the
#: column player's are the transpose. Values are sorted U(0, 1) draws v0 < v1 < v2 < v3.
_CLASSIC_ORDERS = {
    "prisoners_dilemma": (2, 0, 3, 1),  # T > R > P > S
    "chicken": (2, 1, 3, 0),  # T > R > S > P
    "stag_hunt": (3, 0, 2, 1),  # R > T > P > S
    "deadlock": (1, 0, 3, 2),  # T > P > R > S
    "harmony": (3, 2, 1, 0),  # R > S > T > P
}


def _classic_2x2(key, batch, shape):
    """Classic 2x2 classes (per game): symmetric ordinal classes of ``_CLASSIC_ORDERS``,
    matching pennies, battle of the sexes and pure coordination, random magnitudes,
    actions relabelled at random."""
    k_v, k_c, k_m, k_f = jax.random.split(key, 4)
    v = jnp.sort(jax.random.uniform(k_v, (batch, 4)), axis=-1)
    games = []
    for order in _CLASSIC_ORDERS.values():
        r, s, t, p = (v[:, i] for i in order)
        row = jnp.stack([jnp.stack([r, s], -1), jnp.stack([t, p], -1)], -2)
        games.append(jnp.stack([row, jnp.swapaxes(row, 1, 2)], 1))
    m = _uniform(k_m, (batch, 4), 0.2, 1.0)
    pennies = jnp.stack([jnp.stack([m[:, 0], -m[:, 1]], -1), jnp.stack([-m[:, 2], m[:, 3]], -1)], -2)
    games.append(jnp.stack([pennies, -pennies], 1))
    zero = jnp.zeros(batch)
    bos_row = jnp.stack([jnp.stack([m[:, 0] + 1, zero], -1), jnp.stack([zero, m[:, 1]], -1)], -2)
    bos_col = jnp.stack([jnp.stack([m[:, 1], zero], -1), jnp.stack([zero, m[:, 0] + 1], -1)], -2)
    games.append(jnp.stack([bos_row, bos_col], 1))
    coord = jnp.stack([jnp.stack([m[:, 2], zero], -1), jnp.stack([zero, m[:, 3]], -1)], -2)
    games.append(jnp.stack([coord, coord], 1))
    stack = jnp.stack(games, 1)  # [B, K, 2, 2, 2]
    which = jax.random.randint(k_c, (batch,), 0, stack.shape[1])
    g = jnp.take_along_axis(stack, which[:, None, None, None, None], axis=1)[:, 0]
    flip = jax.random.uniform(k_f, (batch, 2)) < 0.5
    g = jnp.where(flip[:, 0, None, None, None], g[:, :, ::-1, :], g)
    return jnp.where(flip[:, 1, None, None, None], g[:, :, :, ::-1], g)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("random", _random, _any, "uniform on the L2-invariant sphere"),
        Family("zero_sum", _zero_sum, _two_players, "G_1 + G_2 = 0"),
        Family("covariant_neg", _covariant(None, -0.5), _any, "payoff correlation r in [-1/(N-1), -0.5]"),
        Family("covariant_pos", _covariant(0.5, 0.99), _any, "payoff correlation r in [0.5, 0.99]"),
        Family("covariant_rand", _covariant(None, 0.99), _any, "payoff correlation r in [-1/(N-1), 0.99]"),
        Family("graphical", _graphical, _any, "a player's payoff ignores its non-neighbours"),
        Family("local_effect", _local_effect, _any, "payoff = node effect + neighbour effects of counts"),
        Family("congestion", _congestion, _any, "cost sums increasing facility costs"),
        Family("auction", _auction, _any, "highest bid wins (first/second price, all-pay)"),
        Family("bertrand", _bertrand, _any, "lowest price takes the market"),
        Family("cournot", _cournot, _any, "linear inverse demand on total quantity"),
        Family("location", _location, _any, "Hotelling market shares (sum to 1)"),
        Family("dominance_solvable", _dominance_solvable, _any, "iterated strict dominance leaves one profile"),
        Family("coordination", _coordination, _any, "matching labels is a strict pure equilibrium"),
        Family("classic_2x2", _classic_2x2, lambda s: tuple(s) == (2, 2), "a classic 2x2 ordinal class"),
    )
}

#: Families never trained on (``TRAIN_MIXTURE`` leaves them out): generalisation checks.
HELD_OUT_FAMILIES: tuple[str, ...] = ("cournot", "location")

#: The structured training mixture: random sphere games keep a third of every batch.
TRAIN_MIXTURE: Mixture = (
    ("random", 6.0),
    *((name, 1.0) for name in FAMILIES if name not in ("random", *HELD_OUT_FAMILIES)),
)


def sample_family(key: jax.Array, name: str, batch: int, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Games ``[B, N, A1..AN]`` of family ``name``, normalised onto the L2-invariant sphere."""
    shape = check_shape(shape)
    if name not in FAMILIES:
        raise ValueError(f"name must be one of {sorted(FAMILIES)}, got {name!r}")
    family = FAMILIES[name]
    if not family.supports(shape):
        raise ValueError(f"family {name!r} does not support shape {shape}")
    return normalise_sphere(family.sample(key, batch, shape).astype(jnp.float32)).astype(dtype)


def check_mixture(mixture: Mapping[str, float] | Sequence | None) -> Mixture | None:
    """Validates a mixture (``{family: weight}`` or ``(family, weight)`` pairs); None passes."""
    if mixture is None:
        return None
    pairs = list(mixture.items()) if isinstance(mixture, Mapping) else list(mixture)
    try:
        out = tuple((str(name), float(weight)) for name, weight in pairs)
    except (TypeError, ValueError) as err:
        raise TypeError(f"families must be (family, weight) pairs, got {mixture!r}") from err
    bad = [name for name, _ in out if name not in FAMILIES]
    if bad or not out:
        raise ValueError(f"families must name some of {sorted(FAMILIES)}, got {mixture!r}")
    if len({name for name, _ in out}) != len(out):
        raise ValueError(f"families names a family twice: {mixture!r}")
    if any(not (math.isfinite(w) and w >= 0) for _, w in out) or sum(w for _, w in out) <= 0:
        raise ValueError(f"families: weights must be finite, >= 0, with a positive sum, got {mixture!r}")
    return out


def mixture_counts(mixture: Mixture, batch: int, shape: Sequence[int]) -> tuple[tuple[str, int], ...]:
    """Games per family in a batch of ``batch`` (largest remainders over the families that
    support ``shape``; static, so every batch of a shape has the same composition)."""
    shape = check_shape(shape)
    usable = [(n, w) for n, w in mixture if w > 0 and FAMILIES[n].supports(shape)]
    if not usable:
        raise ValueError(f"no family of {mixture!r} supports shape {shape}")
    total = sum(w for _, w in usable)
    exact = [batch * w / total for _, w in usable]
    counts = [int(math.floor(x)) for x in exact]
    for i in sorted(range(len(usable)), key=lambda i: counts[i] - exact[i])[: batch - sum(counts)]:
        counts[i] += 1
    return tuple((n, c) for (n, _), c in zip(usable, counts, strict=True) if c > 0)


def sample_mixture(key: jax.Array, batch: int, shape: Sequence[int], mixture: Mixture, dtype=jnp.float32) -> jax.Array:
    """``[B, N, A1..AN]`` normalised games, ``mixture_counts`` of each family, in order."""
    parts = [sample_family(jax.random.fold_in(key, i), name, count, shape, dtype)
             for i, (name, count) in enumerate(mixture_counts(mixture, batch, shape))]
    return jnp.concatenate(parts, axis=0)


def sample_training_batch(
    key: jax.Array,
    batch: int,
    shape: Sequence[int],
    presets: Sequence[str],
    mixture: Mixture | None = None,
    dtype=jnp.float32,
) -> tuple[jax.Array, SelectionInputs]:
    """``(games, SelectionInputs)``: ``sampling.sample_batch`` when ``mixture`` is None
    (the same draws), else the mixture's games with selections drawn as there."""
    if mixture is None:
        return sample_batch(key, batch, shape, presets, dtype)
    k_game, k_sel = jax.random.split(key)
    games = sample_mixture(k_game, batch, shape, mixture, dtype)
    return games, sample_selection(k_sel, games, presets)
