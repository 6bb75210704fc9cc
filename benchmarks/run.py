"""Runs the benchmark suites (``tox -e bench`` or ``python -m benchmarks.run [--quick]``).

Each suite is a module ``benchmarks.<name>`` with ``main(quick, out_dir) -> dict`` that
writes its own JSON and markdown into ``out_dir``; this runner times them and writes
``out_dir/summary.md``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks.results import write_text_atomic

SUITES: tuple[str, ...] = (
    "solvers_suite", "nes_suite", "pipeline_suite", "jpsro_suite", "diff_suite", "related_suite",
    "distributed_suite",
)


#: Suites whose full mode does not fit the 20-minute budget of ``tox -e bench``: they run
#: in quick mode unless ``--full-all`` is given (JPSRO: OpenSpiel's CVXPY meta-solver
#: alone takes ~14 minutes on 3-player Kuhn poker; ``python -m benchmarks.jpsro_suite``).
LONG_SUITES: tuple[str, ...] = ("jpsro_suite",)


def failure(err: BaseException) -> str:
    """One line naming what failed; for an import error, the module that could not be imported."""
    text = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, ImportError) and err.name and err.name not in text:
        text = f"{text} (module {err.name!r})"
    return f"{type(err).__name__}: {text}"


def run(suites: tuple[str, ...], quick: bool, out_dir: Path, full_all: bool = False) -> int:
    """Runs ``suites``; returns the number that failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Benchmark summary", "", f"mode: {'quick' if quick else 'full'}", ""]
    failed = 0
    for name in suites:
        suite_quick = quick or (name in LONG_SUITES and not full_all)
        print(f"=== {name} ({'quick' if suite_quick else 'full'})", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            module.main(quick=suite_quick, out_dir=out_dir)
            status = "ok"
        except Exception as err:  # a failing suite must not hide the others; it fails the run
            traceback.print_exc()
            status = f"FAILED ({failure(err)})"
            failed += 1
        seconds = time.perf_counter() - start
        print(f"=== {name}: {status} in {seconds:.1f} s", flush=True)
        mode = "quick" if suite_quick else "full"
        lines.append(f"- `{name}` ({mode}): {status} in {seconds:.1f} s (see `{name}.md`)")
    write_text_atomic(out_dir / "summary.md", "\n".join(lines) + "\n")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a ~2-minute smoke run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--suite", action="append", choices=SUITES, help="run only these suites")
    parser.add_argument("--full-all", action="store_true", help=f"full mode for {LONG_SUITES} too")
    args = parser.parse_args(argv)
    return 1 if run(tuple(args.suite or SUITES), args.quick, args.out, args.full_all) else 0


if __name__ == "__main__":
    sys.exit(main())
