"""Packaging: the ``openspiel`` extra declares what OpenSpiel's jpsro imports, and a
missing import is reported by name.

OpenSpiel's ``jpsro`` imports ``egt.alpharank``, whose visualiser imports matplotlib and
networkx at module level, but the ``open_spiel`` distribution does not declare them; a
fresh ``pip install -e ".[openspiel]"`` then failed on them (issue 18). A machine that
happens to have them installed cannot see that, so the first test checks the declared
requirements, not what is installed.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_nes.integrations import openspiel as hos

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str | None:
    """The distribution named by a requirement string; None for one behind an extra."""
    if re.search(r"""extra\s*==""", requirement):
        return None
    match = NAME.match(requirement)
    return _normalised(match.group(1)) if match else None


def _declared_closure(extra: str) -> set[str]:
    """Distributions that ``pip install hybrid_nes[extra]`` pulls in (following the
    installed distributions' own requirements, without their extras)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    todo = [*project["dependencies"], *project["optional-dependencies"][extra]]
    seen: set[str] = set()
    while todo:
        name = _requirement_name(todo.pop())
        if name is None or name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(metadata.requires(name) or ())
        except metadata.PackageNotFoundError:
            pass  # not installed here: its own requirements cannot be followed
    return seen


def test_requirement_name():
    assert _requirement_name("open_spiel>=1.5") == "open-spiel"
    assert _requirement_name("Jinja2 (>=3.0)") == "jinja2"
    assert _requirement_name('pytest ; extra == "test"') is None
    assert _requirement_name('tomli>=1.1; python_version < "3.11"') == "tomli"


def _import_jpsro(blocked: str | None = None) -> subprocess.CompletedProcess:
    """Imports OpenSpiel's jpsro in a fresh interpreter (with ``blocked`` made unimportable);
    prints the top-level modules the import loaded."""
    script = (
        "import sys\n"
        f"if {blocked!r}: sys.modules[{blocked!r}] = None\n"
        "before = set(sys.modules)\n"
        "from open_spiel.python.algorithms import jpsro\n"
        "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def test_openspiel_extra_declares_what_jpsro_imports():
    pytest.importorskip("open_spiel")
    out = _import_jpsro()
    assert out.returncode == 0, f"importing OpenSpiel's jpsro failed:\n{out.stderr[-3000:]}"
    imported = set(out.stdout.split()) - set(sys.stdlib_module_names)
    assert "networkx" in imported and "open_spiel" in imported, imported  # the probe works
    by_module = metadata.packages_distributions()
    declared = _declared_closure("openspiel")
    outside = {
        module: dists
        for module in sorted(imported)
        if (dists := by_module.get(module)) and not {_normalised(d) for d in dists} & declared
    }
    # Some of those are optional (jax's debugger tries pygments): only a module without
    # which the import fails must be declared.
    undeclared = {m: d for m, d in outside.items() if _import_jpsro(blocked=m).returncode != 0}
    assert not undeclared, (
        "OpenSpiel's jpsro needs modules that hybrid_nes[openspiel] does not pull in "
        f"(module: distributions): {undeclared}; add them to the openspiel extra in pyproject.toml"
    )


def _forget_jpsro(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes the next ``from open_spiel.python.algorithms import jpsro`` run its imports again."""
    for name in list(sys.modules):
        if name.startswith(("open_spiel.python.algorithms.jpsro", "open_spiel.python.egt.alpharank")):
            monkeypatch.delitem(sys.modules, name)
    for package, attribute in (
        ("open_spiel.python.algorithms", "jpsro"),
        ("open_spiel.python.egt", "alpharank"),
        ("open_spiel.python.egt", "alpharank_visualizer"),
    ):
        if package in sys.modules:
            monkeypatch.delattr(sys.modules[package], attribute, raising=False)


@pytest.mark.parametrize("module", ["networkx", "matplotlib"])
def test_require_openspiel_names_a_missing_dependency(monkeypatch, module):
    pytest.importorskip("open_spiel")
    _forget_jpsro(monkeypatch)
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ImportError, match=f"jpsro could not import '{module}") as info:
        hos.require_openspiel()
    assert "not installed" not in str(info.value)
    assert info.value.name.split(".")[0] == module


def test_require_openspiel_without_open_spiel(monkeypatch):
    for name in list(sys.modules):
        if name == "open_spiel" or name.startswith("open_spiel.") or name == "pyspiel":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "open_spiel", None)
    with pytest.raises(ImportError, match=re.escape("OpenSpiel is not installed")) as info:
        hos.require_openspiel()
    assert info.value.name.split(".")[0] == "open_spiel"


def test_bench_runner_names_the_missing_module(monkeypatch, tmp_path):
    """``tox -e bench`` without networkx: the jpsro suite fails naming networkx, not
    "OpenSpiel is not installed", and the run fails."""
    pytest.importorskip("open_spiel")
    from benchmarks import run as bench_run

    _forget_jpsro(monkeypatch)
    monkeypatch.setitem(sys.modules, "networkx", None)
    assert bench_run.run(("jpsro_suite",), quick=True, out_dir=tmp_path) == 1
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "`jpsro_suite` (quick): FAILED (ImportError: OpenSpiel's jpsro could not import 'networkx'" in summary
    assert not (tmp_path / "jpsro_suite.json").exists()


def test_bench_failure_line():
    from benchmarks.run import failure

    err = ModuleNotFoundError("No module named 'x.y'", name="x.y")
    assert failure(err) == "ModuleNotFoundError: No module named 'x.y'"
    assert failure(ImportError("cannot load", name="networkx")) == "ImportError: cannot load (module 'networkx')"
    assert failure(ValueError("bad\nsecond line")) == "ValueError: bad"
