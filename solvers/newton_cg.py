"""Truncated projected Newton on the eps-MWMRE dual, matrix-free (DESIGN §4, §11).

The method of ``solvers.newton`` (Bertsekas' projected Newton with an active set,
Levenberg-Marquardt damping, projected Armijo line search, step expansion while the dual
drifts) with the dense Cholesky of the free block replaced by preconditioned conjugate
gradients on ``(H_FF + lambda I) d = -g_F``. Every product with ``H`` is two GEMM passes
of ``solvers.matrix_free`` and the preconditioner is block-Jacobi: per CCE player its
``[A_p, A_p]`` block, per CE ``(player, recommendation)`` the ``(A_p - 1)`` rows that share
it (diagonal Jacobi for players whose blocks cost more than
``matrix_free.BLOCK_FLOPS``), or, where the free rows are few (``dense_rows``), the
Cholesky factor of the free block of ``H`` itself, kept across Newton iterations. Memory: a few copies of the joint plus ``O(K)``; the gain
layout of ``solvers.gains`` is never built.

Stopping test and certificate are those of the Numba solvers (``kernels.measures_one``,
``kernels.dgap_one``): "optimal" only when violation, KKT residual and duality gap are
all ``<= tol`` at the returned duals, computed from exact GEMM gains.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import NamedTuple

import numpy as np

from solvers import kernels as kn
from solvers.matrix_free import MatrixFreeGame, TiedGame
from solvers.newton import DIVERGED, MAX_ITER, OPTIMAL, STALLED

__all__ = ["NewtonCGOptions", "MatrixFreeResult", "blas_threads", "certify", "newton_cg"]


class NewtonCGOptions(NamedTuple):
    """Tolerances and caps of the truncated projected Newton method.

    Attributes:
      tol: stop when violation, KKT residual and duality gap are all <= tol.
      max_iter: Newton iteration cap.
      cg_max_iter: conjugate-gradient iterations per Newton step.
      precond_every: the block-Jacobi blocks (``A_p^2 |A|`` flops per CE player) are
        formed every this many Newton iterations and reused in between (masked and
        damped afresh); the preconditioner only changes the CG iteration count.
      forcing: CG stops at ``||r|| <= min(forcing, sqrt(pgn)) ||g_F||`` (``pgn``: the
        projected-gradient norm), so steps become exact Newton steps near the optimum.
      armijo, backtrack, min_step, damping, damping_min, damping_max, active_eps,
      alpha_cap, expand, max_expand: as ``solvers.newton.NewtonOptions``.
      first_order_iter: FISTA iterations (``_fista``, the same GEMM passes) before Newton;
        it certifies interior optima of well-conditioned duals alone (0: Newton alone).
        at most ``max_iter`` of them; Newton then has its own ``max_iter``.
      progress_after: seconds after which a tqdm bar (stderr) shows iterations and the
        KKT residual; ``inf`` never.
      blas_threads: BLAS threads for the GEMM passes during the solve (threadpoolctl;
        restored afterwards); None leaves the process setting alone. One by default: the
        passes are narrow GEMMs (``[A_p, R] x [R, A_p]``) that gain little from threads,
        and OpenBLAS threads that find their cores busy spin-wait, which made a
        21x66-evaluation-game CE 12-30x slower on a loaded 2-core machine
        (benchmarks/results/blas_threads.md).
      dense_rows: up to this many free rows (and within ``matrix_free.DENSE_NNZ`` /
        ``DENSE_FLOPS``) the preconditioner is the Cholesky factor of the free block
        ``H_FF + lam I``, formed from the sparse gains of the free rows
        (``MatrixFreeGame.hessian_rows``) and kept across iterations; 0: block-Jacobi
        always. On the 21x66 evaluation-game CE it cut the CG iterations 1271 -> 134
        (cold) and 1814 -> 132 (warm), benchmarks/results/related_suite.md.
      dense_refresh_cg: the dense factor's Hessian is formed afresh after a CG solve
        that took more than this many iterations (or when more than a tenth of the
        free rows are new); in between only the masked block is factored again.
    """

    tol: float = 1e-8
    max_iter: int = 500
    cg_max_iter: int = 200
    precond_every: int = 10
    forcing: float = 0.1
    armijo: float = 1e-4
    backtrack: float = 0.5
    min_step: float = 1e-10
    damping: float = 1e-3
    damping_min: float = 1e-10
    damping_max: float = 1e10
    active_eps: float = 1e-3
    alpha_cap: float = 1e6
    expand: float = 2.0
    max_expand: float = 64.0
    progress_after: float = 3.0
    first_order_iter: int = 300
    blas_threads: int | None = 1
    dense_rows: int = 3000
    dense_refresh_cg: int = 6


class MatrixFreeResult(NamedTuple):
    """Outcome of ``newton_cg`` (normalised units).

    Attributes:
      alpha: ``[K]`` duals; joint: ``sigma(alpha)`` (joint-shaped); eps: ``[N]`` the
        certificate's ``eps'``; gaps: ``[N]`` the (C)CE gap per player; violation, kkt,
        duality_gap, loss: the certificate at ``alpha``; iterations: FISTA + Newton steps;
        cg_iterations: total CG iterations; status: ``solvers.newton`` code;
        first_order_iterations: the FISTA part of ``iterations``.
    """

    alpha: np.ndarray
    joint: np.ndarray
    eps: np.ndarray
    gaps: np.ndarray
    violation: float
    kkt: float
    duality_gap: float
    loss: float
    iterations: int
    cg_iterations: int
    status: int
    first_order_iterations: int = 0


class _State:
    """Loss, joint, expected gains and gradient at one ``alpha``."""

    __slots__ = ("alpha", "lg", "loss", "joint", "mean", "ssum", "eps", "grad")


class _Dual:
    def __init__(self, game: MatrixFreeGame, base: np.ndarray, eps_hat, eps_plus, rho: float):
        self.game = game
        self.base = np.asarray(base, dtype=np.float64).reshape(game.shape)
        self.eps_hat = np.ascontiguousarray(eps_hat, dtype=np.float64)
        self.eps_plus = np.ascontiguousarray(eps_plus, dtype=np.float64)
        self.rho = float(rho)
        self.player = game.player
        self.free = np.zeros(game.num_constraints, dtype=np.bool_)

    def _penalty(self, alpha: np.ndarray, ssum: np.ndarray, eps: np.ndarray) -> float:
        ssum[:] = np.bincount(self.player, weights=alpha, minlength=self.game.num_players)
        return kn.eps_and_penalty_one(ssum, self.eps_hat, self.eps_plus, self.rho, eps)

    def loss(self, alpha: np.ndarray) -> tuple[float, np.ndarray]:
        """``(L(alpha), logits)``."""
        lg = self.base - self.game.weighted_gains(alpha)
        top = lg.max()
        lse = top + math.log(np.exp(lg - top).sum()) if top > -np.inf else -np.inf
        n = self.game.num_players
        return lse + self._penalty(alpha, np.empty(n), np.empty(n)), lg

    def evaluate(self, alpha: np.ndarray, lg: np.ndarray | None = None) -> _State:
        st = _State()
        st.alpha = alpha
        st.lg = self.base - self.game.weighted_gains(alpha) if lg is None else lg
        top = st.lg.max()
        joint = np.exp(st.lg - top)
        total = joint.sum()
        joint /= total
        st.joint = joint
        n = self.game.num_players
        st.ssum = np.empty(n)
        st.eps = np.empty(n)
        st.loss = top + math.log(total) + self._penalty(alpha, st.ssum, st.eps)
        st.mean = self.game.expected_gains(joint)
        st.grad = st.eps[self.player] - st.mean
        return st

    def certificate(self, st: _State) -> tuple[np.ndarray, np.ndarray, float, float, float]:
        """``(gaps, eps', violation, kkt, duality gap)`` as ``kernels.certify_range``."""
        n = self.game.num_players
        gaps = np.empty(n)
        kn.player_gaps_one(st.mean, self.player, gaps)
        viol, kkt = kn.measures_one(st.alpha, st.grad, self.free)
        dgap = kn.dgap_one(st.alpha, st.grad, st.ssum, st.eps, gaps, self.eps_hat, self.eps_plus, self.rho, self.free)
        epsp = self.eps_hat.copy() if self.rho == np.inf else np.maximum(st.eps, gaps)
        return gaps, epsp, float(viol), float(kkt), float(dgap)

    def curvature(self, st: _State) -> np.ndarray:
        curv = np.empty(self.game.num_players)
        kn.curvature_one(st.ssum, self.eps_hat, self.eps_plus, self.rho, curv)
        return curv


class _Preconditioner:
    """Block-Jacobi (diagonal where blocks are too costly) of ``H_FF + lam I``."""

    def __init__(self, game: MatrixFreeGame, st: _State, curv: np.ndarray, mask: np.ndarray, lam: float,
                 raw: dict[int, np.ndarray] | None = None):
        """``raw``: the unmasked Hessian blocks to reuse (from an earlier iterate); None
        forms them at ``st``. ``self.raw`` keeps the ones used."""
        self.game = game
        self.mask = mask
        diag = game.hessian_diagonal(st.joint, st.mean, curv)
        self.inv_diag = np.where(mask, 1.0 / np.maximum(diag + lam, 1e-300), 0.0)
        self.blocks: dict[int, np.ndarray] = {}
        if raw is None:
            raw = {}
            for p in range(game.num_players):
                if game.use_blocks(p):  # tied players share their representative's blocks
                    src = game.block_source(p)
                    raw[p] = raw[src] if src in raw else game.hessian_blocks(st.joint, st.mean, curv, src)
        self.raw = raw
        for p, blk in raw.items():
            n = game.shape[p]
            keep = game.block(mask.astype(np.float64), p) > 0.5  # CCE [n]; CE [dev, rec]
            keep = keep[None, :] if game.concept == "cce" else keep.T  # [blocks, dev]
            blk = blk * (keep[:, :, None] & keep[:, None, :])
            idx = np.arange(n)
            blk[:, idx, idx] += np.where(keep, lam + 1e-12 * (1.0 + np.abs(blk[:, idx, idx])), 1.0)
            try:
                self.blocks[p] = np.linalg.inv(blk)
            except np.linalg.LinAlgError:
                continue

    def apply(self, r: np.ndarray) -> np.ndarray:
        z = self.inv_diag * r
        game = self.game
        for p, inv in self.blocks.items():
            seg = game.block(r, p)
            if game.concept == "cce":
                vals = inv[0] @ seg
            else:
                vals = np.einsum("rij,jr->ir", inv, seg)  # [dev, rec]
            game._store(vals, p, z)
        z *= self.mask
        return z


class _DensePreconditioner:
    """``(H_SS + lam I)^{-1}`` by Cholesky on the free rows in ``S``, Jacobi on the others.

    ``H_SS`` (``MatrixFreeGame.hessian_rows``, ``S`` the free rows when it is formed) is
    kept across Newton iterations: ``update`` factors its block on the free rows again
    only where ``lam`` changed by more than ``LAM_REFACTOR`` or more than ``KEEP_CHANGE``
    of those rows changed; free rows outside the factor get ``1 / (diag H + lam)``.
    """

    LAM_REFACTOR = 10.0
    #: ``H_SS`` is formed afresh where more than this fraction of ``S`` are new free rows.
    OUTSIDE = 0.1
    #: ... or where more than this fraction of the factored rows changed sides (0.05 took
    #: twice the CG iterations on the 21x66 evaluation-game CE, a refactor costs ~5 CG's).
    KEEP_CHANGE = 0.0
    #: joint actions below this fraction of the largest probability are left out of
    #: ``H_SS`` (``MatrixFreeGame.hessian_rows``); CG multiplies by the exact ``H``.
    CUTOFF = 1e-12

    def __init__(self, game: MatrixFreeGame, st: _State, curv: np.ndarray, mask: np.ndarray):
        self.game = game
        self.rows = np.flatnonzero(mask > 0)
        self.h = game.hessian_rows(st.joint, st.mean, curv, self.rows, cutoff=self.CUTOFF)
        self.keep = None
        self.lam = -1.0
        self.factor = None

    def outside(self, mask: np.ndarray) -> int:
        """Free rows of ``mask`` outside ``S``."""
        return int(mask.sum() - mask[self.rows].sum())

    def update(self, st: _State, curv: np.ndarray, mask: np.ndarray, lam: float) -> _DensePreconditioner:
        import scipy.linalg as sl

        self.mask = mask
        keep = mask[self.rows] > 0
        if self.keep is None or np.count_nonzero(keep != self.keep) > self.KEEP_CHANGE * max(keep.sum(), 1) or not (
                self.lam / self.LAM_REFACTOR <= lam <= self.lam * self.LAM_REFACTOR):
            self.keep, self.lam = keep, lam
            self.sub = self.rows[keep]
            # All kept (every refactor right after H_SS is formed): a copy, 5x cheaper than the gather.
            hs = self.h.copy() if keep.all() else self.h[np.ix_(keep, keep)]
            diag = np.diag_indices(hs.shape[0])
            base = hs[diag].copy()
            shift = lam + 1e-10 * max(float(base.max(initial=0.0)), 1e-300)
            self.factor = None
            for _ in range(8):
                hs[diag] = base + shift
                try:
                    # hs.T: the same symmetric matrix in Fortran order, factored in place.
                    self.factor = sl.cho_factor(hs.T, lower=True, overwrite_a=True, check_finite=False)
                    break
                except np.linalg.LinAlgError:
                    hs = self.h.copy() if keep.all() else self.h[np.ix_(keep, keep)]  # spoilt by the failure
                    shift *= 100.0
        # Between factorisations the factored rows that left the free set see zero
        # residuals and are masked out (a principal block of an SPD inverse: still SPD).
        jacobi = mask.copy()
        jacobi[self.sub] = 0.0
        self.inv_diag = jacobi
        if np.any(jacobi):
            diag = self.game.hessian_diagonal(st.joint, st.mean, curv)
            self.inv_diag = jacobi / np.maximum(diag + lam, 1e-300)
        return self

    def apply(self, r: np.ndarray) -> np.ndarray:
        import scipy.linalg as sl

        z = self.inv_diag * r
        if self.factor is not None and self.sub.size:
            z[self.sub] = sl.cho_solve(self.factor, r[self.sub], check_finite=False)
        elif self.sub.size:
            z[self.sub] = r[self.sub]
        z *= self.mask
        return z


def _pcg(hvp, precond: _Preconditioner, rhs: np.ndarray, lam: float, mask: np.ndarray, rtol: float,
         max_iter: int) -> tuple[np.ndarray, int]:
    """Preconditioned CG on ``(H_FF + lam I) x = rhs`` (vectors zero off ``mask``)."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    target = rtol * np.linalg.norm(rhs)
    z = precond.apply(r)
    p = z.copy()
    rz = float(r @ z)
    it = 0
    while it < max_iter and np.linalg.norm(r) > target:
        it += 1
        ap = hvp(p) * mask + lam * p
        pap = float(p @ ap)
        if not pap > 0.0:
            break
        step = rz / pap
        x += step * p
        r -= step * ap
        z = precond.apply(r)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, it


def _fista(dual: _Dual, alpha: np.ndarray, tol: float, max_iter: int,
           progress_after: float = np.inf, deadline: float = np.inf) -> tuple[np.ndarray, int, bool]:
    """FISTA with backtracking and adaptive restart from ``alpha``; ``(alpha, iterations,
    certified)``, the certificate checked every 10 iterations (shown by a tqdm bar on
    stderr after ``progress_after`` seconds). No iteration starts after ``deadline``
    (a ``time.perf_counter()`` value)."""
    y, t, lip, prev = alpha.copy(), 1.0, 1.0, np.inf
    it = 0
    t_start = time.perf_counter()
    bar = None
    while it < max_iter and time.perf_counter() < deadline:
        it += 1
        sy = dual.evaluate(y)
        while True:
            new = np.maximum(y - sy.grad / lip, 0.0)
            step = new - y
            loss, _ = dual.loss(new)
            if loss <= sy.loss + sy.grad @ step + 0.5 * lip * (step @ step) + 1e-15 * abs(sy.loss) or lip > 1e12:
                break
            lip *= 2.0
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        if loss > prev:
            t_new, y = 1.0, new.copy()
        else:
            y = new + ((t - 1.0) / t_new) * (new - alpha)
        alpha, t, prev, lip = new, t_new, loss, lip * 0.9
        if it % 10 == 0:
            _, _, viol, kkt, dgap = dual.certificate(dual.evaluate(alpha))
            if bar is None and time.perf_counter() - t_start > progress_after:
                from tqdm import tqdm

                bar = tqdm(total=max_iter, desc="newton-cg (fista)", file=sys.stderr, leave=False,
                           disable=None)  # None: no bar where stderr is not a terminal (logs, CI)
            if bar is not None:
                bar.n = it
                bar.set_postfix(kkt=f"{kkt:.1e}", viol=f"{viol:.1e}", dgap=f"{dgap:.1e}")
            if viol <= tol and kkt <= tol and abs(dgap) <= tol:
                if bar is not None:
                    bar.close()
                return alpha, it, True
    if bar is not None:
        bar.close()
    return alpha, it, False


_CONTROLLER: list = []


def blas_threads(limit: int | None) -> contextlib.AbstractContextManager:
    """A context that limits the BLAS libraries to ``limit`` threads (None: unchanged).

    One ``threadpoolctl.ThreadpoolController``, made on first use after SciPy's BLAS is
    loaded, serves every call: ``threadpool_limits`` scans the process's libraries each
    time (2-8 ms CPU, 2-18 ms wall per call on the 2-core machine, a fixed cost of every
    matrix-free solve and warm start).
    """
    if limit is None:
        return contextlib.nullcontext()
    if not _CONTROLLER:
        import scipy.linalg  # noqa: F401  (its BLAS must be loaded before the scan)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=limit, user_api="blas")


def newton_cg(game: MatrixFreeGame, base: np.ndarray, eps_hat: np.ndarray, eps_plus: np.ndarray, rho: float,
              alpha0: np.ndarray | None = None, options: NewtonCGOptions | None = None) -> MatrixFreeResult:
    """Minimises the dual ``L(alpha)`` over ``alpha >= 0`` for one normalised game.

    Args:
      game: the ``MatrixFreeGame``; base: base logits (``|A|`` values; ``-inf`` off a
        support); eps_hat, eps_plus: ``[N]``; rho: approximation weight (inf: hard).
      alpha0: ``[K]`` start (projected onto ``alpha >= 0``); None: zeros.
      options: ``NewtonCGOptions`` (None: defaults).

    Returns:
      A ``MatrixFreeResult`` whose certificate is evaluated at the returned duals.
    """
    opt = NewtonCGOptions() if options is None else options
    if opt.blas_threads is not None and (not isinstance(opt.blas_threads, int) or opt.blas_threads < 1):
        raise ValueError(f"blas_threads must be a positive int or None, got {opt.blas_threads!r}")
    with blas_threads(opt.blas_threads):
        if not isinstance(game, TiedGame):
            return _newton_cg(game, base, eps_hat, eps_plus, rho, alpha0, opt)
        return _tied(game, base, eps_hat, eps_plus, rho, alpha0, opt)


def _tied(game: TiedGame, base: np.ndarray, eps_hat: np.ndarray, eps_plus: np.ndarray, rho: float,
          alpha0: np.ndarray | None, opt: NewtonCGOptions) -> MatrixFreeResult:
    """The symmetric subspace first (tied start), then the certificate on the full, untied
    problem; where that falls short (rounding), Newton goes on untied from there."""
    start = None if alpha0 is None else game.tie(np.maximum(np.asarray(alpha0, dtype=np.float64), 0.0))
    res = _newton_cg(game, base, eps_hat, eps_plus, rho, start, opt)
    full = game.untied()
    checked = _recertify(full, base, eps_hat, eps_plus, rho, res, opt.tol)
    if res.status != OPTIMAL or checked.status == OPTIMAL:
        return checked
    more = _newton_cg(full, base, eps_hat, eps_plus, rho, res.alpha, opt._replace(first_order_iter=0))
    return more._replace(iterations=res.iterations + more.iterations,
                         cg_iterations=res.cg_iterations + more.cg_iterations,
                         first_order_iterations=res.first_order_iterations)


def _recertify(game: MatrixFreeGame, base: np.ndarray, eps_hat: np.ndarray, eps_plus: np.ndarray, rho: float,
               res: MatrixFreeResult, tol: float) -> MatrixFreeResult:
    """``res`` with joint and certificate evaluated afresh on ``game`` at ``res.alpha``;
    "optimal" only if that certificate meets the tolerance again (else the status stays,
    or becomes ``MAX_ITER``)."""
    dual = _Dual(game, base, eps_hat, eps_plus, rho)
    st = dual.evaluate(res.alpha)
    gaps, epsp, viol, kkt, dgap = dual.certificate(st)
    status = res.status
    if status == OPTIMAL and not (viol <= tol and kkt <= tol and abs(dgap) <= tol):
        status = MAX_ITER
    return res._replace(joint=st.joint, eps=epsp, gaps=gaps, violation=viol, kkt=kkt, duality_gap=dgap,
                        loss=st.loss, status=status)


def _newton_cg(game: MatrixFreeGame, base: np.ndarray, eps_hat: np.ndarray, eps_plus: np.ndarray, rho: float,
               alpha0: np.ndarray | None, opt: NewtonCGOptions) -> MatrixFreeResult:
    dual = _Dual(game, base, eps_hat, eps_plus, rho)
    num = game.num_constraints
    alpha = np.zeros(num) if alpha0 is None else np.maximum(np.asarray(alpha0, dtype=np.float64), 0.0)
    first = 0
    if opt.first_order_iter > 0:
        st = dual.evaluate(alpha)
        _, _, viol, kkt, dgap = dual.certificate(st)
        if not (viol <= opt.tol and kkt <= opt.tol and abs(dgap) <= opt.tol):
            alpha, first, _ = _fista(dual, alpha, opt.tol, min(opt.first_order_iter, opt.max_iter),
                                     opt.progress_after)
    st = dual.evaluate(alpha)
    mult = opt.damping
    last_pgn = prev_pgn = np.inf
    status = MAX_ITER
    it = cg_total = 0
    t_start = time.perf_counter()
    bar = None
    raw_blocks = None
    dense = None
    last_cg = 0
    while True:
        gaps, epsp, viol, kkt, dgap = dual.certificate(st)
        if bar is None and time.perf_counter() - t_start > opt.progress_after:
            from tqdm import tqdm

            bar = tqdm(total=opt.max_iter, initial=it, desc="newton-cg", file=sys.stderr, leave=False,
                       disable=None)
        if bar is not None:
            bar.n = it
            bar.set_postfix(kkt=f"{kkt:.1e}", viol=f"{viol:.1e}", dgap=f"{dgap:.1e}", cg=cg_total)
        if viol <= opt.tol and kkt <= opt.tol and abs(dgap) <= opt.tol:
            status = OPTIMAL
            break
        if it >= opt.max_iter:
            status = MAX_ITER
            break
        if np.abs(st.alpha).max(initial=0.0) > opt.alpha_cap or not math.isfinite(st.loss):
            status = DIVERGED
            break
        it += 1
        alpha = st.alpha
        grad = st.grad
        pgn = float(np.abs(alpha - np.maximum(alpha - grad, 0.0)).max(initial=0.0))
        w = min(opt.active_eps, pgn)
        prev_pgn, last_pgn = last_pgn, pgn
        active = (alpha <= w) & (grad > 0.0)
        mask = (~active).astype(np.float64)
        curv = dual.curvature(st)
        lam = mult * pgn + 1e-12
        if dense is not None and (last_cg > opt.dense_refresh_cg or dense.outside(mask) > dense.OUTSIDE * dense.rows.size):
            dense = None
        if dense is None and game.dense_hessian_ok(np.flatnonzero(mask), opt.dense_rows):
            dense = _DensePreconditioner(game, st, curv, mask)
        if dense is not None:
            precond = dense.update(st, curv, mask, lam)
        else:
            reuse = raw_blocks if (it - 1) % max(opt.precond_every, 1) else None
            precond = _Preconditioner(game, st, curv, mask, lam, reuse)
            raw_blocks = precond.raw
        rhs = -grad * mask
        rtol = min(opt.forcing, math.sqrt(pgn))

        def hvp(v, st=st, curv=curv):
            return game.hessian_vector(st.joint, st.mean, curv, v)

        sol, cg_it = _pcg(hvp, precond, rhs, lam, mask, rtol, opt.cg_max_iter)
        cg_total += cg_it
        last_cg = cg_it
        direction = np.where(active, -alpha, sol)
        slack = 1e-15 * (1.0 + abs(st.loss))
        t = 1.0
        accepted = False
        while t >= opt.min_step:
            trial = np.maximum(alpha + t * direction, 0.0)
            dec = float(grad @ (trial - alpha))
            lt, lg = dual.loss(trial)
            if lt <= st.loss + opt.armijo * dec + slack:
                accepted = True
                break
            t *= opt.backtrack
        if not accepted:
            mult *= 100.0
            if mult > opt.damping_max:
                status = STALLED
                break
            continue
        if t == 1.0 and opt.expand > 1.0 and pgn > 0.25 * prev_pgn:
            # Linear progress with full steps (a dual drifting towards a face): longer
            # steps along the same direction, as in solvers.newton.
            best = lt
            tt = opt.expand
            while tt <= opt.max_expand:
                probe = np.maximum(alpha + tt * direction, 0.0)
                dec2 = float(grad @ (probe - alpha))
                l2, lg2 = dual.loss(probe)
                if l2 < best - slack and l2 <= st.loss + opt.armijo * dec2:
                    best, trial, lg = l2, probe, lg2
                    tt *= opt.expand
                else:
                    break
        st = dual.evaluate(trial, lg)
        mult = max(mult * 0.1, opt.damping_min) if t == 1.0 else min(mult * 10.0, opt.damping_max)
    if bar is not None:
        bar.close()
    return MatrixFreeResult(st.alpha, st.joint, epsp, gaps, viol, kkt, dgap, st.loss, first + it, cg_total, status, first)


def certify(game: MatrixFreeGame, base: np.ndarray, eps_hat: np.ndarray, eps_plus: np.ndarray, rho: float,
            alpha: np.ndarray, tol: float) -> MatrixFreeResult:
    """The joint ``sigma(alpha)`` and its certificate on ``game`` (no iterations); status
    ``OPTIMAL`` when violation, KKT residual and duality gap are all ``<= tol``, else
    ``MAX_ITER``."""
    alpha = np.maximum(np.asarray(alpha, dtype=np.float64), 0.0)
    stub = MatrixFreeResult(alpha, alpha, alpha, alpha, 0.0, 0.0, 0.0, 0.0, 0, 0, OPTIMAL)
    return _recertify(game, base, eps_hat, eps_plus, rho, stub, tol)
