"""Deviation gains, logits and Hessian-vector products without a gain layout (DESIGN §11).

For player ``p`` let ``G = G_p`` and ``S`` (a joint, or any weight on joint actions) be
reshaped to ``[A_p, R]`` (``R`` the other players' joint actions). Then

- CE, row ``(p, dev a', rec a'')``:  ``E_S[A] = (S G^T)[a'', a'] - (S * G).sum(1)[a'']``;
- CCE, row ``(p, a')``:             ``E_S[A] = (G S.sum(0))[a'] - <S, G>``;

and the dual-weighted gain sum ``u(a) = sum_k v_k A_k(a)`` (the logits are
``base - u(alpha)``) is, per player,

- CE:  ``(V^T G)[a_p, r] - V.sum(0)[a_p] G[a_p, r]``, ``V = [dev, rec]`` (zero diagonal);
- CCE: ``(v G)[r] - v.sum() G[a_p, r]``.

Each is one GEMM (GEMV for CCE) per player: ``O(A_p |A|)`` flops and ``O(|A|)`` memory,
never an ``|A| x sum_p A_p`` structure. The Hessian of the dual is
``Cov_sigma(A) + soft term``, so ``H v = E_{sigma * u(v)}[A] - E_sigma[A] <sigma, u(v)>
+ curv_p sum_{k of p} v_k``: two passes. Flat dual order: ``solvers.gains``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from solvers.gains import check_concept, constraint_player, num_constraints

__all__ = ["MatrixFreeGame", "TiedGame", "BLOCK_FLOPS"]

#: Block-Jacobi preconditioner of a CE player: ``A_p`` dense ``[A_p, A_p]`` blocks cost
#: ``A_p^2 |A|`` flops to form and ``A_p^4 / 3`` to factor (``solvers.newton_cg`` forms
#: them every ``precond_every`` Newton iterations); beyond this many flops the player gets
#: the diagonal (Jacobi) preconditioner instead.
BLOCK_FLOPS = 6e10
#: ... and players with more actions than this get it too: their ``[A_p, A_p, A_p]``
#: blocks are masked and inverted every Newton iteration (``A_p^4 / 3`` flops), which on a
#: 2-player 256x256 CE cost more than the CG iterations they save
#: (benchmarks/results/eval_suite.md).
BLOCK_MAX_ACTIONS = 200
#: ``MatrixFreeGame.dense_hessian_ok``: the sparse gains of the free rows hold at most
#: this many entries (12 bytes each) ...
DENSE_NNZ = 10_000_000
#: ... and their product ``A_S diag(sigma) A_S^T`` costs at most this many multiply-adds
#: (``sum_a S(a)^2``, ``S(a)`` the free rows nonzero at joint action ``a``; the Numba
#: accumulation runs at a few 1e8 per second).
DENSE_FLOPS = 1e8
#: ... and its Cholesky factor (``S^3 / 3`` flops, formed again whenever the free set
#: changes) costs at most this many Hessian-vector products (``4 |A| sum_p A_p`` flops):
#: 725 free rows of the 21x66 evaluation-game CE factor in ~10 ms, ~5 products.
DENSE_FACTOR_HVPS = 30


@njit(cache=True)
def _outer_gains(flat_payoffs, strides, sizes, ptr, dev, pos, sigma, cutoff, ce, out):  # pragma: no cover - compiled
    """``out[S, S] += sum_a sigma(a) v(a) v(a)^T`` (each pair of rows once: ``out + out^T``
    with its diagonal halved is the sum), ``v(a)`` the gains at joint action ``a`` of the
    rows grouped in ``ptr [N, A_max + 1]`` by (player, recommendation) (one group per
    player for CCE), ``dev [S]`` their deviations, ``pos [S]`` their rows of ``out``; joint
    actions with ``sigma(a) <= cutoff`` are skipped."""
    n_players = strides.size
    vals = np.empty(out.shape[0])
    idx = np.empty(out.shape[0], dtype=np.int64)
    for a in range(sigma.size):
        w = sigma[a]
        if w <= cutoff:
            continue
        cnt = 0
        for p in range(n_players):
            ap = (a // strides[p]) % sizes[p]
            g = ap if ce else 0
            here = flat_payoffs[p, a]
            for i in range(ptr[p, g], ptr[p, g + 1]):
                vals[cnt] = flat_payoffs[p, a + (dev[i] - ap) * strides[p]] - here
                idx[cnt] = pos[i]
                cnt += 1
        for k1 in range(cnt):
            wv = w * vals[k1]
            if wv == 0.0:
                continue
            i1 = idx[k1]
            for k2 in range(k1, cnt):
                out[i1, idx[k2]] += wv * vals[k2]


class MatrixFreeGame:
    """One normalised game ``payoffs: [N, A1..AN]`` for the matrix-free dual (DESIGN §11).

    Keeps ``N`` copies of the payoffs (player ``p``'s axis first) and nothing of size
    ``|A| x K``.
    """

    def __init__(self, payoffs: np.ndarray, concept: str):
        self.concept = check_concept(concept)
        payoffs = np.asarray(payoffs, dtype=np.float64)
        self.shape = tuple(int(n) for n in payoffs.shape[1:])
        self.num_players = len(self.shape)
        self.num_joint = math.prod(self.shape)
        self.num_constraints = num_constraints(self.shape, self.concept)
        self.player = constraint_player(self.shape, self.concept)
        sizes = [n if self.concept == "cce" else n * (n - 1) for n in self.shape]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # Axis orders of _front / _back (np.moveaxis normalises its axes on every call: a
        # tenth of a warm 21x66 evaluation-game CE solve).
        axes = [tuple([p] + [q for q in range(self.num_players) if q != p]) for p in range(self.num_players)]
        self._to_front = axes
        self._to_back = [tuple(np.argsort(a).tolist()) for a in axes]
        self._rest = [self.shape[p:p + 1] + self.shape[:p] + self.shape[p + 1:] for p in range(self.num_players)]
        self.payoffs = [np.ascontiguousarray(self._front(payoffs[p], p)) for p in range(self.num_players)]
        # CE: flat positions of the off-diagonal entries of a [dev, rec] matrix, in the
        # row-major order of ``solvers.gains`` (dev-major, rec ascending, rec != dev).
        self._offdiag = [np.flatnonzero(~np.eye(n, dtype=bool)) for n in self.shape]

    # -- layout helpers ------------------------------------------------------------------
    def _front(self, x: np.ndarray, p: int) -> np.ndarray:
        """``x`` (the joint shape) with player p's axis first, as ``[A_p, R]``."""
        return x.reshape(self.shape).transpose(self._to_front[p]).reshape(self.shape[p], -1)

    def _back(self, y: np.ndarray, p: int) -> np.ndarray:
        """Inverse of ``_front`` (a view in the joint shape)."""
        return y.reshape(self._rest[p]).transpose(self._to_back[p])

    def block(self, vec: np.ndarray, p: int) -> np.ndarray:
        """Player p's part of a flat ``[K]`` vector: ``[A_p]`` (CCE) or ``[A_p, A_p]``
        ``[dev, rec]`` with a zero diagonal (CE)."""
        part = vec[self.offsets[p] : self.offsets[p + 1]]
        if self.concept == "cce":
            return part
        n = self.shape[p]
        full = np.zeros(n * n)
        full[self._offdiag[p]] = part
        return full.reshape(n, n)

    def _store(self, mat: np.ndarray, p: int, out: np.ndarray) -> None:
        """Writes player p's ``[A_p]`` / ``[dev, rec]`` values into the flat ``out``."""
        seg = out[self.offsets[p] : self.offsets[p + 1]]
        seg[:] = mat if self.concept == "cce" else mat.reshape(-1)[self._offdiag[p]]

    # -- the two passes ------------------------------------------------------------------
    def expected_gains(self, weight: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``[K]``: ``sum_a weight(a) A_k(a)`` for every row k (``weight`` any joint-shaped
        array, e.g. the joint: then the expected gains)."""
        out = np.empty(self.num_constraints) if out is None else out
        for p in range(self.num_players):
            self._store(self._expected_one(weight, p), p, out)
        return out

    def _expected_one(self, weight: np.ndarray, p: int) -> np.ndarray:
        """Player p's ``expected_gains``: ``[A_p]`` (CCE) or ``[dev, rec]`` (CE)."""
        g = self.payoffs[p]
        s = self._front(weight, p)
        own = np.einsum("ij,ij->i", s, g)  # [A_p]: sum_r S G
        if self.concept == "cce":
            return g @ s.sum(axis=0) - own.sum()
        return (s @ g.T - own[:, None]).T  # [dev, rec]

    def weighted_gains(self, vec: np.ndarray) -> np.ndarray:
        """``u(a) = sum_k vec_k A_k(a)``, joint-shaped (the logits are ``base - u(alpha)``)."""
        total = np.zeros(self.shape)
        for p in range(self.num_players):
            up = self._weighted_one(vec, p)
            if up is not None:
                total += up
        return total

    def _weighted_one(self, vec: np.ndarray, p: int) -> np.ndarray | None:
        """Player p's term of ``weighted_gains`` (joint-shaped view; None when zero)."""
        g = self.payoffs[p]
        v = self.block(vec, p)
        if not np.any(v):
            return None
        if self.concept == "cce":
            up = (v @ g)[None, :] - v.sum() * g
        else:
            up = v.T @ g
            up -= v.sum(axis=0)[:, None] * g
        return self._back(up, p)

    def hessian_vector(self, sigma: np.ndarray, mean: np.ndarray, curv: np.ndarray, vec: np.ndarray) -> np.ndarray:
        """``H vec`` at the joint ``sigma`` with expected gains ``mean`` and the soft
        curvature ``curv: [N]`` (zeros for hard constraints)."""
        su = sigma * self.weighted_gains(vec)
        out = self.expected_gains(su)
        out -= mean * su.sum()
        if np.any(curv):
            sums = np.bincount(self.player, weights=vec, minlength=self.num_players)
            out += (curv * sums)[self.player]
        return out

    # -- preconditioner pieces -------------------------------------------------------------
    def hessian_diagonal(self, sigma: np.ndarray, mean: np.ndarray, curv: np.ndarray) -> np.ndarray:
        """``diag H``: ``E_sigma[A_k^2] - mean_k^2 + curv_p``."""
        out = np.empty(self.num_constraints)
        for p in range(self.num_players):
            self._store(self._diagonal_one(sigma, p), p, out)
        out -= mean * mean
        out += curv[self.player]
        return out

    def _diagonal_one(self, sigma: np.ndarray, p: int) -> np.ndarray:
        """Player p's ``E_sigma[A_k^2]``: ``[A_p]`` (CCE) or ``[dev, rec]`` (CE)."""
        g = self.payoffs[p]
        s = self._front(sigma, p)
        sg = s * g
        sgg = np.einsum("ij,ij->i", sg, g)
        if self.concept == "cce":
            m = s.sum(axis=0)
            return (g * g) @ m - 2.0 * (g @ sg.sum(axis=0)) + sgg.sum()
        return (s @ (g * g).T - 2.0 * (sg @ g.T) + sgg[:, None]).T  # [dev, rec]

    def gain_rows(self, rows: np.ndarray):
        """The deviation gains of ``rows`` (sorted flat row indices ``[S]``) as a
        ``scipy.sparse.csr_matrix [S, |A|]``: a CE row ``(p, dev, rec)`` holds its
        ``|A| / A_p`` entries where ``a_p = rec``, a CCE row all ``|A|``."""
        import scipy.sparse as sp

        rows = np.asarray(rows, dtype=np.int64)
        flat = np.arange(self.num_joint)
        vals, cols, lens = [], [], []
        for p in range(self.num_players):
            lo, hi = self.offsets[p], self.offsets[p + 1]
            sel = rows[(rows >= lo) & (rows < hi)] - lo
            if sel.size == 0:
                continue
            g = self.payoffs[p]
            perm = self._front(flat, p)  # [A_p, R] flat joint indices
            if self.concept == "cce":
                v = g[sel][:, None, :] - g[None, :, :]
                c = np.broadcast_to(perm, v.shape)
            else:
                dev, rec = np.divmod(self._offdiag[p][sel], self.shape[p])
                v = g[dev] - g[rec]
                c = perm[rec]
            vals.append(v.reshape(sel.size, -1).ravel())
            cols.append(np.ascontiguousarray(c).reshape(sel.size, -1).ravel())
            lens.append(np.full(sel.size, v[0].size))
        if not lens:
            return sp.csr_matrix((0, self.num_joint))
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(lens))])
        return sp.csr_matrix((np.concatenate(vals), np.concatenate(cols), indptr),
                             shape=(indptr.size - 1, self.num_joint))

    def hessian_rows(self, sigma: np.ndarray, mean: np.ndarray, curv: np.ndarray, rows: np.ndarray,
                     cutoff: float = 0.0) -> np.ndarray:
        """``H[rows][:, rows]`` dense ``[S, S]`` (``rows`` sorted): ``A_S diag(sigma) A_S^T
        - mean_S mean_S^T`` plus ``curv_p`` within each player, accumulated per joint
        action (``sum_a S(a)^2`` multiply-adds, ``S(a)`` the rows nonzero at ``a``).
        Joint actions with ``sigma(a) <= cutoff * max(sigma)`` are left out (a
        preconditioner may drop them: on a face most of the joint is below 1e-12)."""
        rows = np.asarray(rows, dtype=np.int64)
        pl = self.player[rows]
        local = rows - self.offsets[pl]
        if self.concept == "ce":
            dev, rec = np.divmod(self._offdiag_all()[rows], np.asarray(self.shape)[pl])
        else:
            dev, rec = local, np.zeros_like(local)
        order = np.lexsort((dev, rec, pl))  # grouped by (player, recommendation)
        groups = max(self.shape) if self.concept == "ce" else 1
        counts = np.zeros((self.num_players, groups), dtype=np.int64)
        np.add.at(counts, (pl, rec), 1)
        ptr = np.concatenate([[0], np.cumsum(counts)])[:-1].reshape(self.num_players, groups)
        ptr = np.concatenate([ptr, ptr[:, -1:] + counts[:, -1:]], axis=1)
        strides = np.array([math.prod(self.shape[p + 1:]) for p in range(self.num_players)], dtype=np.int64)
        h = np.zeros((rows.size, rows.size))
        flat_sigma = np.ascontiguousarray(sigma, dtype=np.float64).ravel()
        # Written at the rows' own positions (``pos``): no [S, S] permutation afterwards
        # (3 ms of a 4 ms kernel at S = 720, 2-core CPU).
        _outer_gains(self._flat_payoffs(), strides, np.asarray(self.shape, dtype=np.int64), ptr,
                     np.ascontiguousarray(dev[order]), np.ascontiguousarray(order), flat_sigma,
                     cutoff * flat_sigma.max(initial=0.0), self.concept == "ce", h)
        h += h.T  # each pair once, mirrored (np.triu twice: 6x the time at S = 760)
        h[np.diag_indices(rows.size)] *= 0.5
        ms = mean[rows]
        h -= np.outer(ms, ms)
        if np.any(curv):
            h += np.where(pl[:, None] == pl[None, :], curv[pl][:, None], 0.0)
        return h

    def _flat_payoffs(self) -> np.ndarray:
        """``[N, |A|]`` the payoffs in the joint's own (C) order (kept after the first call)."""
        if getattr(self, "_flat", None) is None:
            self._flat = np.stack([np.ascontiguousarray(self._back(g, p)).ravel() for p, g in enumerate(self.payoffs)])
        return self._flat

    def _offdiag_all(self) -> np.ndarray:
        """``[K]`` (CE) each row's position ``dev * A_p + rec`` in its player's ``[dev, rec]``."""
        return np.concatenate(self._offdiag)

    def dense_hessian_ok(self, rows: np.ndarray, max_rows: int) -> bool:
        """Whether ``hessian_rows(rows)`` is within ``max_rows``, ``DENSE_FACTOR_HVPS``,
        ``DENSE_NNZ`` and ``DENSE_FLOPS`` (counted from the rows' recommendations)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0 or rows.size > max_rows:
            return False
        if rows.size ** 3 / 3.0 > DENSE_FACTOR_HVPS * 4.0 * self.num_joint * sum(self.shape):
            return False
        pl = self.player[rows]
        if self.concept == "cce":
            return rows.size * self.num_joint <= DENSE_NNZ and rows.size ** 2 * self.num_joint <= DENSE_FLOPS
        nnz = int(sum(np.count_nonzero(pl == p) * (self.num_joint // n) for p, n in enumerate(self.shape)))
        # S(a) = sum_p c_p[a_p], c_p[rec] the rows of p recommending rec: E_a[S(a)^2] over
        # the uniform joint = sum_p E[c_p^2] + sum_{p != q} E[c_p] E[c_q].
        means, squares = np.zeros(self.num_players), np.zeros(self.num_players)
        for p, n in enumerate(self.shape):
            sel = rows[pl == p] - self.offsets[p]
            counts = np.bincount(self._offdiag[p][sel] % n, minlength=n).astype(np.float64)
            means[p], squares[p] = counts.mean(), (counts * counts).mean()
        flops = self.num_joint * (squares.sum() + means.sum() ** 2 - (means * means).sum())
        return nnz <= DENSE_NNZ and flops <= DENSE_FLOPS

    def block_source(self, p: int) -> int:
        """The player whose Hessian blocks equal player p's (p itself; see ``TiedGame``)."""
        return p

    def use_blocks(self, p: int) -> bool:
        """Whether player p's block-Jacobi blocks are within ``BLOCK_FLOPS`` and
        ``BLOCK_MAX_ACTIONS``."""
        n = self.shape[p]
        if self.concept == "cce":
            return True
        return n <= BLOCK_MAX_ACTIONS and n * n * self.num_joint + n ** 4 / 3.0 <= BLOCK_FLOPS

    def hessian_blocks(self, sigma: np.ndarray, mean: np.ndarray, curv: np.ndarray, p: int) -> np.ndarray:
        """Player p's diagonal blocks of ``H``: CCE ``[1, A_p, A_p]`` (all its rows); CE
        ``[A_p, A_p, A_p]`` indexed ``[rec, dev, dev']`` (the rows with recommendation
        ``rec``; the ``dev == rec`` row and column are zero)."""
        g = self.payoffs[p]
        s = self._front(sigma, p)
        n = self.shape[p]
        mvals = self.block(mean, p)
        if self.concept == "cce":
            m = s.sum(axis=0)
            h = (s * g).sum(axis=0)
            c = g @ h
            blk = (g * m) @ g.T - c[:, None] - c[None, :] + np.einsum("ij,ij->", s, g * g)
            blk -= np.outer(mvals, mvals)
            blk += curv[p]
            return blk[None]
        out = np.empty((n, n, n))
        for rec in range(n):
            d = g - g[rec]
            blk = (d * s[rec]) @ d.T
            col = mvals[:, rec]
            blk -= np.outer(col, col)
            out[rec] = blk
        out += curv[p]
        idx = np.arange(n)
        out[idx, idx, :] = 0.0
        out[idx, :, idx] = 0.0
        return out


class TiedGame(MatrixFreeGame):
    """A ``MatrixFreeGame`` on the symmetric subspace of exchangeable players (DESIGN §10).

    For a group of exchangeable players with representative ``p`` (its first member) and
    ``swap`` the transposition ``(p q)`` of joint-action entries, row ``(q, dev, rec)``
    is row ``(p, dev, rec)`` after the swap: ``A_(q,d,c)(a) = A_(p,d,c)(swap a)``, and the
    other players' rows are invariant. The duals are tied, ``alpha = P beta`` (each row
    of q carries the value of its image row of p), and on tied vectors and swap-invariant
    weights every pass computes the representative only: its expected gains (hence
    ``P^T g``, ``P^T H P v`` up to the orbit sizes) are copied to the group, and its term
    of ``u(alpha)`` is added with the axes of p and q swapped for each q. Projected Newton
    started from tied duals stays tied exactly; by convexity and invariance its optimum
    is the full problem's, whose certificate ``newton_cg`` then evaluates on the untied
    game (``untied``). The inputs must be tied / invariant: ``tie`` the start.
    """

    def __init__(self, payoffs: np.ndarray, concept: str, groups: tuple[tuple[int, ...], ...]):
        super().__init__(payoffs, concept)
        self.groups = tuple(tuple(sorted(int(p) for p in g)) for g in groups)
        self.rep = list(range(self.num_players))
        for group in self.groups:
            if len({self.shape[p] for p in group}) != 1:
                raise ValueError(f"tied players {group} have different action counts")
            for q in group[1:]:
                self.rep[q] = group[0]

    def untied(self) -> MatrixFreeGame:
        """The same game without ties (shares the payoff copies)."""
        full = object.__new__(MatrixFreeGame)
        full.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("groups", "rep")})
        return full

    def tie(self, vec: np.ndarray) -> np.ndarray:
        """``[K]`` the orthogonal projection onto tied vectors (each group's segments averaged)."""
        out = np.array(vec, dtype=np.float64)
        for group in self.groups:
            segs = [slice(self.offsets[p], self.offsets[p + 1]) for p in group]
            mean = sum(out[seg] for seg in segs) / len(group)
            for seg in segs:
                out[seg] = mean
        return out

    def _copy_tied(self, out: np.ndarray) -> np.ndarray:
        for q, p in enumerate(self.rep):
            if p != q:
                out[self.offsets[q] : self.offsets[q + 1]] = out[self.offsets[p] : self.offsets[p + 1]]
        return out

    def expected_gains(self, weight: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """As ``MatrixFreeGame.expected_gains`` for a swap-invariant ``weight``."""
        out = np.empty(self.num_constraints) if out is None else out
        for p in range(self.num_players):
            if self.rep[p] == p:
                self._store(self._expected_one(weight, p), p, out)
        return self._copy_tied(out)

    def weighted_gains(self, vec: np.ndarray) -> np.ndarray:
        """As ``MatrixFreeGame.weighted_gains`` for a tied ``vec`` (swap-invariant result)."""
        total = np.zeros(self.shape)
        for p in range(self.num_players):
            if self.rep[p] != p:
                continue
            up = self._weighted_one(vec, p)
            if up is None:
                continue
            total += up
            for q in range(p + 1, self.num_players):
                if self.rep[q] == p:
                    total += np.swapaxes(up, p, q)
        return total

    def hessian_diagonal(self, sigma: np.ndarray, mean: np.ndarray, curv: np.ndarray) -> np.ndarray:
        """As ``MatrixFreeGame.hessian_diagonal`` at a swap-invariant ``sigma``."""
        out = np.empty(self.num_constraints)
        for p in range(self.num_players):
            if self.rep[p] == p:
                self._store(self._diagonal_one(sigma, p), p, out)
        self._copy_tied(out)
        out -= mean * mean
        out += curv[self.player]
        return out

    def block_source(self, p: int) -> int:
        return self.rep[p]
