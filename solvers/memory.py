"""Memory budget of the dense Newton buffers.

Projected Newton (``solvers.newton``) factors the free block of the dual Hessian densely:
two ``[n, n]`` float64 buffers (Hessian and Cholesky factor) per game being solved, plus,
on the identity (CCE) layout, two ``[n, |A|]`` column buffers. With ``n`` up to the
number of duals ``K`` that is ``16 K^2`` bytes: 515 GB for a 2-player 300x300 CE
(``K = 179,400``). ``method="auto"`` keeps Newton within ``memory_budget()`` and takes
the first-order path beyond it; ``method="newton"`` beyond it is a ``MemoryError``
raised before anything is allocated.

The budget is ``BUDGET_FRACTION`` of the memory available when the solve starts
(``MemAvailable`` in ``/proc/meminfo``, else ``sysconf``), or the environment variable
``HYBRID_NES_MEMORY_BUDGET`` (bytes, or a number with a K/M/G/T suffix, binary units),
or the ``memory_budget`` argument of ``solve`` / ``solve_batch`` / ``refine_batch``.

Whole games are checked too: a solve whose estimated peak (``solvers.policy.solve_bytes``:
the gain layout, or newton-cg's few copies of the joint) exceeds the available memory (or
a larger explicit budget) is refused with ``GameTooLargeError`` before anything of the
game's size is allocated, never left to the OOM killer.

This module measures (available memory, buffer sizes, the budget); the decisions that
use it (``newton_plan``, ``auto_first_order``, ``check_game_memory``) are
``solvers.policy``'s.
"""

from __future__ import annotations

import math
import os
import re

__all__ = [
    "BUDGET_FRACTION",
    "ENV_VAR",
    "FALLBACK_AVAILABLE",
    "GameTooLargeError",
    "UNCHECKED_BYTES",
    "available_memory",
    "concurrent_games",
    "env_budget_set",
    "format_bytes",
    "game_limit",
    "game_too_large_error",
    "memory_budget",
    "newton_bytes",
    "newton_max_block",
    "newton_fits",
    "newton_memory_error",
    "parse_bytes",
]

#: Environment variable overriding the budget (bytes; K/M/G/T suffixes, binary units).
ENV_VAR = "HYBRID_NES_MEMORY_BUDGET"
#: Share of the available memory the dense Newton buffers may take; the rest is left to
#: the gains, the certificate, the CVXPY polish and other processes.
BUDGET_FRACTION = 0.5
#: Assumed available memory (bytes) where the platform reports none.
FALLBACK_AVAILABLE = 4 * 2**30
#: Dense buffers up to this size are not checked against the available memory (reading
#: ``/proc/meminfo`` would cost more than a small game's solve); an explicit budget
#: (argument or environment variable) is always applied.
UNCHECKED_BYTES = 64 * 2**20



def env_budget_set() -> bool:
    """True when ``HYBRID_NES_MEMORY_BUDGET`` is set to a non-blank value, read on every call.

    Reads ``os.environ``'s own mapping (``_data``, which ``os.environ[...] = ...``,
    ``putenv`` through it and ``monkeypatch.setenv`` update) where CPython has it:
    ``os.environ.get`` costs ~1.7 us on a loaded 2-core machine, a third of a small game's
    Python work in ``solve`` (benchmarks/results/solvers_suite_overhead.md), against ~50 ns.
    """
    if _ENV_DATA is not None:
        value = _ENV_DATA.get(_ENV_KEY)
        return value is not None and bool(value.strip())
    return bool(os.environ.get(ENV_VAR, "").strip())


try:  # CPython's os._Environ internals; any other mapping takes os.environ.get
    _ENV_DATA = os.environ._data if isinstance(os.environ._data, dict) else None  # type: ignore[attr-defined]
    _ENV_KEY = os.environ.encodekey(ENV_VAR)  # type: ignore[attr-defined]
except AttributeError:
    _ENV_DATA = None


class GameTooLargeError(MemoryError):
    """A game whose solve needs more memory than is available (raised before allocating)."""


_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_BYTES_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_bytes(value: object, name: str = "memory budget") -> int:
    """A byte count from an int, a float or a string such as ``"512M"``, ``"2GiB"``, ``"1e9"``.

    Raises:
      TypeError: not a number or string; ValueError: unparsable, negative or not finite.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of bytes or a string like '2G', got {value!r}")
    if isinstance(value, str):
        match = _BYTES_RE.match(value)
        if match is None:
            raise ValueError(f"{name} {value!r} is not a byte count (e.g. 2000000000, '512M', '2G')")
        number = float(match.group(1)) * _UNITS[match.group(2).lower()]
    else:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a number of bytes or a string like '2G', got {value!r}") from err
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number of bytes >= 0, got {value!r}")
    return int(number)


def available_memory() -> int:
    """Bytes of memory available to new allocations now (``MemAvailable``; ``sysconf``
    available pages where ``/proc/meminfo`` is missing; ``FALLBACK_AVAILABLE`` otherwise)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return FALLBACK_AVAILABLE


def memory_budget(budget: object = None) -> int:
    """Bytes the dense Newton buffers may take: ``budget`` when given, else the
    ``HYBRID_NES_MEMORY_BUDGET`` environment variable, else ``BUDGET_FRACTION`` of
    ``available_memory()``."""
    if budget is not None:
        return parse_bytes(budget)
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return parse_bytes(env, name=ENV_VAR)
    return int(BUDGET_FRACTION * available_memory())


def newton_bytes(block: int, num_joint: int, identity: bool) -> int:
    """Bytes ``solvers.newton.newton_one`` allocates for a dense free block of ``block``
    rows: Hessian and Cholesky ``[block, block]``, plus ``[block, |A|]`` twice on the
    identity (CCE) layout. The ``O(K + |A|)`` vectors are left out."""
    block = int(block)
    cols = 2 * block * int(num_joint) if identity else 0
    return 8 * (2 * block * block + cols)


def newton_fits(need: int, budget: object = None) -> bool:
    """True when ``need`` bytes of Newton buffers fit in ``memory_budget(budget)``
    (without reading the available memory for ``need <= UNCHECKED_BYTES`` and no explicit
    budget)."""
    if budget is None and need <= UNCHECKED_BYTES and not env_budget_set():
        return True
    return need <= memory_budget(budget)


def newton_max_block(budget: int, num_joint: int, identity: bool, concurrent: int = 1) -> int:
    """The largest block whose buffers, ``concurrent`` games at a time, fit in ``budget``."""
    per_game = int(budget) // max(1, int(concurrent))
    # 16 n^2 + 16 |A| n <= per_game (the |A| term on the identity layout only).
    lin = 16.0 * num_joint if identity else 0.0
    block = int((-lin + math.sqrt(lin * lin + 64.0 * per_game)) / 32.0)
    while block > 0 and newton_bytes(block, num_joint, identity) > per_game:
        block -= 1
    while newton_bytes(block + 1, num_joint, identity) <= per_game:
        block += 1
    return block


def concurrent_games(num_games: int, parallel: bool) -> int:
    """Games solved at the same time by a batched Numba solver (``prange`` over games)."""
    if not parallel or num_games <= 1:
        return 1
    import numba

    return max(1, min(int(num_games), int(numba.get_num_threads())))


def format_bytes(num: float) -> str:
    """``num`` bytes in binary units, e.g. ``'515.0 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num) < 1024 or unit == "TiB":
            return f"{num:.0f} B" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    raise AssertionError("unreachable")


def newton_memory_error(num_duals: int, num_joint: int, identity: bool, budget: int,
                        concurrent: int = 1) -> GameTooLargeError:
    """The ``MemoryError`` of ``method="newton"`` on a problem whose dense buffers exceed
    ``budget`` (naming the size, the memory needed and the remedies)."""
    need = newton_bytes(num_duals, num_joint, identity) * max(1, concurrent)
    games = f" for {concurrent} games at once" if concurrent > 1 else ""
    return GameTooLargeError(
        f"method='newton' on {num_duals:,} duals needs dense [K, K] Hessian buffers of "
        f"{format_bytes(need)}{games}, over the memory budget of {format_bytes(budget)} "
        f"(the memory_budget argument, else {ENV_VAR}, else {BUDGET_FRACTION:g} of the "
        "available memory); "
        "use method='auto' or 'gd' (first-order, O(K) memory)"
    )


def _explicit_budget(budget: object) -> int | None:
    """The budget given as an argument or by ``HYBRID_NES_MEMORY_BUDGET`` (None: neither)."""
    if budget is not None:
        return parse_bytes(budget)
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return parse_bytes(env, name=ENV_VAR)
    return None


def game_limit(need: int, budget: object = None) -> int | None:
    """Bytes a whole solve may take: ``available_memory()``, or an explicit budget
    (argument or environment variable) where that is larger (the caller's override, e.g.
    with swap). None (not checked) for ``need <= UNCHECKED_BYTES`` without an explicit
    budget: reading ``/proc/meminfo`` costs more than a small game's solve."""
    explicit = _explicit_budget(budget)
    if explicit is None and need <= UNCHECKED_BYTES:
        return None
    available = available_memory()
    return available if explicit is None else max(available, explicit)


def game_too_large_error(what: str, route: str, need: int, limit: int, detail: str) -> GameTooLargeError:
    """The refusal of a game (``what``, e.g. ``"game [3, 2000, 300, 300] CE"``) whose
    ``route`` (e.g. "newton-cg") needs ``need`` bytes over ``limit``."""
    return GameTooLargeError(
        f"{what} needs ~{format_bytes(need)} for {route} ({detail}); available {format_bytes(limit)}; "
        f"pass memory_budget=... (or set {ENV_VAR}) to allow more, or reduce the game (fewer actions or tasks)"
    )
