"""The Python examples in the docs and the README run, so they stay correct.

Convention:

- In ``docs/*.md``, a ```` ```python ```` block runs when its first line is exactly
  ``# doctest: run``. Other blocks (signatures, fragments) are not run.
- In ``README.md``, every ```` ```python ```` block runs, unless its first line is
  ``# doctest: skip``.
- The runnable blocks of one file run in order in one shared namespace, like a
  session, so a page can build on its set-up block.
- Each file runs in a fresh temporary directory (the working directory) with
  ``LLMSCHED_HOME`` pointing at it and no other ``LLMSCHED_*`` variable set, so
  relative SQLite URLs and the default database land in that directory.
- Any ``SchedulerService`` a file leaves open is closed afterwards.

A failure's traceback names the Markdown file and its line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from scheduler_core import SchedulerService

ROOT = Path(__file__).resolve().parents[1]
RUN_MARKER = "# doctest: run"
SKIP_MARKER = "# doctest: skip"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line in the Markdown file
    code: str


def runnable_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    readme = path.name == "README.md"
    blocks = []
    for match in FENCE.finditer(text):
        code = match.group(1)
        first = code.split("\n", 1)[0].strip()
        run = first != SKIP_MARKER if readme else first == RUN_MARKER
        if run:
            line = text.count("\n", 0, match.start(1)) + 1
            blocks.append(Block(path, line, code))
    return blocks


def documented_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


FILES = [p for p in documented_files() if runnable_blocks(p)]


def test_the_api_page_and_the_readme_have_runnable_examples() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert {"README.md", "docs/python-api.md"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LLMSCHED_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LLMSCHED_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for block in runnable_blocks(path):
            # Pad with blank lines so tracebacks point at the Markdown line.
            source = "\n" * (block.line - 1) + block.code
            exec(compile(source, str(block.path), "exec"), namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, SchedulerService):
                value.close()
