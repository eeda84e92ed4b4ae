"""The files a running flow wrote, so that a cancelled job's partial output is removed."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

written_outputs: ContextVar[list[Path] | None] = ContextVar(
    "llmsched_written_outputs", default=None
)
"""Set by the executor for each flow run; tasks copy the context, so they share the list."""


def note_output(path: Path) -> Path:
    outputs = written_outputs.get()
    if outputs is not None:
        outputs.append(path)
    return path
