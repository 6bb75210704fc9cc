"""README.md's python code blocks run as written, and ``.ci/run`` finds its commands there.

Every ```` ```python ```` block of README.md runs, in document order, in ONE shared
namespace: the README is a tour whose later blocks use names that earlier ones define
(``game``, ``games``, ``rng``, ...), exactly as a reader pasting them one after another
into a Python session would. A block added anywhere in the README is picked up
automatically; it may use what the blocks above it define. Blocks in other languages
(bash, the layout listing) are not executed.

Each block is compiled with README.md's own line numbers (it is padded with the lines
above it), so a traceback points at the README line that failed, and the failure
message names the block's opening line.

Blocks that use OpenSpiel (``pyspiel`` / ``open_spiel``) are skipped only when
``open_spiel`` itself is not installed; a missing dependency of an installed OpenSpiel
(e.g. networkx for its jpsro module) fails like any other error.
"""

from __future__ import annotations

import importlib.util
import re
import runpy
import traceback
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_COMMANDS = ROOT / ".ci" / "readme_commands.py"

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
OPENSPIEL_USE = re.compile(r"^\s*(import|from)\s+(pyspiel|open_spiel)\b", re.MULTILINE)
HAVE_OPENSPIEL = importlib.util.find_spec("open_spiel") is not None


class Block(NamedTuple):
    language: str
    line: int  # 1-based line of the block's first code line in README.md
    source: str


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, in order (ValueError: an unclosed fence)."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, language = match.groups()
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if end == len(lines):
            raise ValueError(f"README.md: the code fence opened at line {i + 1} is never closed")
        body = [line[len(indent) :] if line.startswith(indent) else line for line in lines[start:end]]
        blocks.append(Block(language.lower(), start + 1, "\n".join(body) + "\n"))
        i = end + 1
    return blocks


def python_blocks(text: str) -> list[Block]:
    return [b for b in code_blocks(text) if b.language in ("python", "py", "python3")]


def run_blocks(blocks: list[Block], filename: str = "README.md") -> dict:
    """Runs ``blocks`` in one namespace; AssertionError naming the failing block's line."""
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        code = compile("\n" * (block.line - 1) + block.source, filename, "exec")
        try:
            exec(code, namespace)
        except Exception as err:  # the README block's own error, with README line numbers
            trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            raise AssertionError(
                f"{filename}: the python block starting at line {block.line} failed: "
                f"{type(err).__name__}: {err}\n{trace}"
            ) from err
    return namespace


def test_code_blocks_parser():
    text = "intro\n```python\nx = 1\n```\n\n```bash\necho hi\n```\n  ```python\n  y = x + 1\n  ```\n"
    blocks = code_blocks(text)
    assert [b.language for b in blocks] == ["python", "bash", "python"]
    assert [b.line for b in blocks] == [3, 7, 10]
    assert blocks[2].source == "y = x + 1\n"
    with pytest.raises(ValueError, match="line 2 is never closed"):
        code_blocks("text\n```python\nx = 1\n")


def test_failure_names_the_readme_line():
    blocks = python_blocks("# t\n\n```python\nx = 1\n```\n\n```python\ny = 2\nz = undefined_name\n```\n")
    with pytest.raises(AssertionError, match="block starting at line 8 failed: NameError") as info:
        run_blocks(blocks)
    assert 'README.md", line 9' in str(info.value)  # the traceback uses README's numbering


def test_readme_python_blocks_run_as_written():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4, f"expected the API tour's python blocks in README.md, found {len(blocks)}"
    if not HAVE_OPENSPIEL:
        skipped = [b.line for b in blocks if OPENSPIEL_USE.search(b.source)]
        blocks = [b for b in blocks if not OPENSPIEL_USE.search(b.source)]
        if skipped:
            print(f"open_spiel is not installed: skipped the README blocks at lines {skipped}")
    namespace = run_blocks(blocks)
    # The tour's first block solves a game; its answer must be certified as shown.
    assert namespace["sol"].status == "optimal"


def test_ci_finds_the_readme_commands():
    """``.ci/run`` takes its install and test commands from README's set-up block."""
    module = runpy.run_path(str(CI_COMMANDS))
    install = module["readme_command"](README.read_text(encoding="utf-8"), "install")
    test = module["readme_command"](README.read_text(encoding="utf-8"), "test")
    assert install.startswith("pip install -e "), install
    assert "openspiel" in install and "dev" in install, install
    assert test.startswith("python -m pytest"), test
    assert "#" not in install and "#" not in test
    with pytest.raises(ValueError, match="Set-up"):
        module["readme_command"]("# nothing here\n", "install")
