"""An ``exp`` of non-positive arguments that LLVM vectorises (the shifted exponentials of a softmax).

``math.exp`` in a Numba loop is a scalar call into glibc (~6 ns; no SVML here), and the
softmax of the dual's logits takes 64 of them per point of an 8x8 game: the largest single
part of the compiled solve (benchmarks/results/solvers_suite_profile.md). ``exp_nonpos`` is
branch-free arithmetic (Cody-Waite reduction by ``ln 2``, a degree-13 Taylor polynomial on
``|r| <= ln(2) / 2``, ``2^k`` built from its bits in two factors so that subnormal results
are rounded once), so a loop of it vectorises. Within 1 ulp of the exact value on
``[-746, 0]`` (``tests/test_vexp.py``); ``exp_nonpos(-inf) == 0``, NaN gives NaN, and below
``-746`` the result is 0 as for ``math.exp``. Every softmax of the dual's logits
(``kernels.softmax_one``, ``kernels.log_partition_one``, ``newton_step.shifted_exps_one``)
uses it, so Newton's joint and a recomputed one stay bit-identical.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp_nonpos", "shifted_exps", "sum_shifted"]

_LOG2E = 1.4426950408889634
# ln 2 split so that k * _LN2_HI is exact for |k| < 2^20 (Cody-Waite; fdlibm's constants).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# 1 / n!, n = 2 .. 13 (the Taylor series' truncation is below 0.05 ulp on |r| <= ln(2) / 2).
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (1.0 / math.factorial(n) for n in range(2, 14))


# 2^52: for an integer-valued float v in [0, 2^52), the bits of v + 2^52 are those of
# 2^52 plus v (AVX2 has no packed float64 <-> int64 conversion; this keeps the loop in vectors).
_TWO52 = 4503599627370496.0
_BIAS = 1023.0 + _TWO52


@intrinsic
def _from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 ``bits`` (a register bitcast)."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _to_bits(typingctx, value):
    """The IEEE bits of the float64 ``value`` as an int64 (a register bitcast)."""
    if value != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@njit(cache=True, forceinline=True)
def _pow2(kf):
    """``2^kf`` for an integer-valued float ``kf`` in [-1022, 1023]."""
    return _from_bits((_to_bits(kf + _BIAS) - _to_bits(_TWO52)) << 52)


@njit(cache=True, forceinline=True)
def exp_nonpos(x):
    """``exp(x)`` for ``x <= 0`` (or -inf, NaN), within 1 ulp; branch-free (vectorises)."""
    xc = -746.0 if x < -746.0 else x  # NaN stays NaN
    y = xc * _LOG2E + 0.5
    kf = np.floor(y if y > -1100.0 else -1100.0)  # a NaN's k is any finite one: r is NaN
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    # Estrin's scheme: a short dependency chain (the loop's latency, not its width, bounds it).
    r2 = r * r
    r4 = r2 * r2
    q = ((_C2 + _C3 * r) + r2 * (_C4 + _C5 * r)) + r4 * (((_C6 + _C7 * r) + r2 * (_C8 + _C9 * r))
                                                      + r4 * ((_C10 + _C11 * r) + r2 * (_C12 + _C13 * r)))
    p = 1.0 + (r + r2 * q)
    # 2^k in two factors (each >= 2^-550): a subnormal result is rounded once, by the last product.
    k1 = np.floor(kf * 0.5)
    return p * _pow2(k1) * _pow2(kf - k1)


@njit(cache=True, forceinline=True)
def shifted_exps(lg, top, ex):
    """``ex[a] = exp_nonpos(lg[a] - top)`` (a vectorised loop); returns their sum, taken as
    ``sum_shifted`` takes it (four running sums over the entries in turn, then the rest)."""
    for a in range(lg.shape[0]):
        ex[a] = exp_nonpos(lg[a] - top)
    n = ex.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    a = 0
    while a + 4 <= n:
        s0 += ex[a]
        s1 += ex[a + 1]
        s2 += ex[a + 2]
        s3 += ex[a + 3]
        a += 4
    rest = 0.0
    for b in range(a, n):
        rest += ex[b]
    return ((s0 + s1) + (s2 + s3)) + rest


@njit(cache=True, forceinline=True)
def sum_shifted(lg, top):
    """``shifted_exps``'s sum without storing the exponentials (the same values, the same order)."""
    n = lg.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    a = 0
    while a + 4 <= n:
        s0 += exp_nonpos(lg[a] - top)
        s1 += exp_nonpos(lg[a + 1] - top)
        s2 += exp_nonpos(lg[a + 2] - top)
        s3 += exp_nonpos(lg[a + 3] - top)
        a += 4
    rest = 0.0
    for b in range(a, n):
        rest += exp_nonpos(lg[b] - top)
    return ((s0 + s1) + (s2 + s3)) + rest
