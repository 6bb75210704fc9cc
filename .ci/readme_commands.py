"""Prints a command of README.md's set-up block, so that CI runs what the README says.

``python3 .ci/readme_commands.py install`` prints the install line (the line of the
first ```bash block under the "## Set-up" heading that starts with ``pip install``);
``... test`` prints the test line (the one that starts with ``python -m pytest``).
Trailing ``# comments`` are dropped. Standard library only: it runs before any install.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PREFIXES = {"install": "pip install", "test": "python -m pytest"}
COMMENT = re.compile(r"\s+#.*$")


def setup_block(text: str) -> list[str]:
    """The lines of the first ```bash block in README's "## Set-up" section."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.lower().startswith("## set-up"))
    except StopIteration:
        raise ValueError('README.md has no "## Set-up" section') from None
    body: list[str] | None = None
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if body is None:
            if line.strip() in ("```bash", "```sh", "```shell"):
                body = []
        elif line.strip().startswith("```"):
            return body
        else:
            body.append(line)
    raise ValueError('README.md: no closed ```bash block in the "## Set-up" section')


def readme_command(text: str, kind: str) -> str:
    """The ``kind`` ("install" or "test") command of README's set-up block, comment dropped."""
    if kind not in PREFIXES:
        raise ValueError(f"unknown command kind {kind!r}; expected one of {tuple(PREFIXES)}")
    found = [COMMENT.sub("", line).strip() for line in setup_block(text)]
    found = [line for line in found if line.startswith(PREFIXES[kind])]
    if len(found) != 1:
        raise ValueError(
            f'README.md: expected one line starting with "{PREFIXES[kind]}" in the set-up block, '
            f"found {len(found)}"
        )
    return found[0]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {Path(__file__).name} install|test", file=sys.stderr)
        return 2
    try:
        print(readme_command(README.read_text(encoding="utf-8"), argv[0]))
    except ValueError as err:
        print(f"readme_commands: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
