"""Shared fixtures."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def x64():
    """float64 JAX for the test. The global flag, not the thread-local ``jax.enable_x64``
    context: ``hybrid_nes.diff``'s callbacks run on XLA's threads, where JAX would
    otherwise cast their float64 results to float32."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)
