"""solvers.vexp.exp_nonpos: within 1 ulp of the exact exp on [-746, 0], 0 at -inf and far
below, NaN for NaN, and a loop of it vectorises."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from solvers.vexp import exp_nonpos


@njit(cache=True)
def _exps(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_nonpos(x[i])


def _ulps(got, want):
    """|got - want| in units of the last place of ``want`` (subnormals: of the smallest one)."""
    spacing = np.maximum(np.spacing(np.abs(want)), np.spacing(0.0))
    return np.abs(got - want) / spacing


def test_within_one_ulp_of_the_exact_exp():
    rng = np.random.default_rng(0)
    x = np.concatenate([-rng.exponential(1.0, 200_000), rng.uniform(-746.0, 0.0, 200_000),
                        rng.uniform(-1e-8, 0.0, 10_000), -np.arange(0, 746, 0.5) * math.log(2.0),
                        [0.0, -0.0, -1e-300, -708.39641853226408, -745.1332191019411, -745.2]])
    got = np.empty_like(x)
    _exps(x, got)
    # The reference: glibc's exp (correctly rounded in all but rare cases), with a
    # half-ulp allowance for its own error.
    want = np.exp(x)
    assert _ulps(got, want).max() <= 1.5
    # Exact where exp is a power of two (r = 0) and at 0.
    assert got[-6] == 1.0 and got[-5] == 1.0


def test_special_values():
    x = np.array([-np.inf, -746.0, -800.0, -1e308, np.nan, -745.0])
    got = np.empty_like(x)
    _exps(x, got)
    assert got[0] == 0.0 and got[1] == 0.0 and got[2] == 0.0 and got[3] == 0.0
    assert np.isnan(got[4])
    assert got[5] == math.exp(-745.0) > 0.0  # the smallest subnormal


def test_the_loop_vectorises():
    # A fresh, uncached compilation: Numba returns no real assembly for cached code.
    exps = njit(_exps.py_func)
    x = np.linspace(-5.0, 0.0, 64)
    exps(x, np.empty_like(x))
    asm = next(iter(exps.inspect_asm().values()))
    assert "vfmadd" in asm or "ymm" in asm
