"""Where a run's output files go, and the files it wrote (so that a cancelled job's partial
output is removed).

A job's `output_dir` comes from whoever can submit work, which includes anyone who can
reach the Prefect API: it may only name a directory inside the artifacts directory
(`$LLMSCHED_HOME/artifacts`) or inside a root the operator lists in
`LLMSCHED_OUTPUT_ROOTS`. The text is checked at enqueue (`confined_output_dir`); the run
checks again with symlinks resolved before it creates or writes anything
(`prepare_output_dir`). See docs/security.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from scheduler_core.errors import ConfigurationError, OutputDirError
from scheduler_core.files import private_dir

DEFAULT_HOME = "~/.llmsched"
HOME_ENV = "LLMSCHED_HOME"
OUTPUT_ROOTS_ENV = "LLMSCHED_OUTPUT_ROOTS"
"""Extra directories outputs may go to, separated by os.pathsep (`:`): the operator's
list, so that a submitter cannot make workers write where it chooses."""

NAME_MAX = 255
"""Bytes in one file name (Linux, and most file systems)."""
PATH_MAX = 4096
"""Bytes in a path, its terminating NUL included (Linux)."""

written_outputs: ContextVar[list[Path] | None] = ContextVar(
    "llmsched_written_outputs", default=None
)
"""Set by the executor for each flow run; tasks copy the context, so they share the list."""


def note_output(path: Path) -> Path:
    outputs = written_outputs.get()
    if outputs is not None:
        outputs.append(path)
    return path


def artifacts_dir() -> Path:
    """`$LLMSCHED_HOME/artifacts` (default `~/.llmsched/artifacts`), absolute."""
    home = os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(os.path.abspath(Path(home).expanduser() / "artifacts"))


def output_roots() -> list[Path]:
    """The directories outputs may go to: the artifacts directory, then the operator's
    `LLMSCHED_OUTPUT_ROOTS`."""
    roots = [artifacts_dir()]
    for entry in os.environ.get(OUTPUT_ROOTS_ENV, "").split(os.pathsep):
        entry = entry.strip()
        if not entry:
            continue
        root = Path(entry).expanduser()
        if not root.is_absolute() or "\x00" in entry:
            raise ConfigurationError(
                f"{OUTPUT_ROOTS_ENV} entry {entry!r} is not an absolute path: list absolute "
                f"directories separated by {os.pathsep!r}, e.g. /srv/stories{os.pathsep}/srv/cards"
            )
        roots.append(Path(os.path.normpath(root)))
    return roots


def confined_output_dir(value: object) -> Path:
    """The directory a job's `output_dir` names, checked on its text alone (nothing is
    read or created): blank means the artifacts directory; a relative path is inside it;
    an absolute path must lie in the artifacts directory or an `LLMSCHED_OUTPUT_ROOTS`
    root. Raises OutputDirError naming the problem and the fix."""
    root = artifacts_dir()
    if value is None or value == "":
        return root
    if not isinstance(value, str):
        raise OutputDirError(
            f"output_dir must be a string (a directory inside {root}), got {type(value).__name__}"
        )
    shown = value if len(value) <= 80 else value[:77] + "..."
    if "\x00" in value:
        raise OutputDirError(
            f"output_dir {shown!r} contains a NUL character, which no path may hold; remove it"
        )
    if value.startswith("~"):
        raise OutputDirError(
            f"output_dir {shown!r} starts with '~': home directories are not expanded; "
            f"name a directory inside the artifacts directory {root}, such as 'stories'"
        )
    try:
        size = len(os.fsencode(value))
    except UnicodeError:
        raise OutputDirError(
            f"output_dir {shown!r} cannot be encoded as a file name; use valid Unicode text"
        ) from None
    if size >= PATH_MAX:
        raise OutputDirError(
            f"output_dir is {size} bytes long; a path has at most {PATH_MAX - 1}: "
            "use a shorter directory name"
        )
    parts = Path(value).parts
    if ".." in parts:
        raise OutputDirError(
            f"output_dir {shown!r} contains '..': name a directory inside the artifacts "
            f"directory {root} without going up, such as 'stories/nightly'"
        )
    for part in parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise OutputDirError(
                f"output_dir has a name of {len(os.fsencode(part))} bytes; a file name has "
                f"at most {NAME_MAX}: use shorter directory names"
            )
    target = Path(os.path.normpath(root / value))  # an absolute value replaces the root
    # As configured first: resolving the roots costs system calls, per job of a group.
    if not _within(target, output_roots()) and not _within(target, _lexical_roots()):
        raise OutputDirError(
            f"output_dir {shown!r} is outside the artifacts directory {root}: name a "
            "directory inside it (a relative path such as 'stories'), or have the operator "
            f"allow this location in {OUTPUT_ROOTS_ENV}"
        )
    if len(os.fsencode(target)) >= PATH_MAX:
        raise OutputDirError(
            f"output_dir {shown!r} makes a path of {len(os.fsencode(target))} bytes; a path "
            f"has at most {PATH_MAX - 1}: use a shorter directory name"
        )
    return target


def prepare_output_dir(value: object) -> Path:
    """The run-time check: `confined_output_dir`, then each existing directory on the way
    resolved (a symlink must lead into an allowed root) before a missing one is created
    private; returns the real path the run writes to."""
    target = confined_output_dir(value)
    real_roots = [root.resolve() for root in output_roots()]
    base = max((r for r in _lexical_roots() if target.is_relative_to(r)), key=_depth)
    private_dir(base)
    current = base
    for part in target.relative_to(base).parts:
        current = current / part
        if not os.path.lexists(current):
            private_dir(current)
        elif not _check_real(current, value, real_roots).is_dir():
            raise OutputDirError(
                f"output_dir {value!r}: {current} is not a directory; name another directory"
            )
    return _check_real(target, value, real_roots)


def confined_outputs(
    validate: Callable[[dict[str, Any]], object],
) -> Callable[[dict[str, Any]], object]:
    """A pipeline's enqueue-time validator: its own (the flow's signature), then the
    `output_dir` check."""

    def checked(params: dict[str, Any]) -> object:
        result = validate(params)
        check_output_params(params)
        return result

    return checked


def check_output_params(params: Mapping[str, Any]) -> None:
    confined_output_dir(params.get("output_dir"))


def _lexical_roots() -> list[Path]:
    """Each allowed root as configured and as resolved: a path through either is inside."""
    roots = output_roots()
    return list(dict.fromkeys([*roots, *(root.resolve() for root in roots)]))


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _depth(path: Path) -> int:
    return len(path.parts)


def _check_real(path: Path, value: object, real_roots: list[Path]) -> Path:
    real = path.resolve()
    if not _within(real, real_roots):
        raise OutputDirError(
            f"output_dir {value!r} leads to {real} through a symbolic link, outside the "
            f"artifacts directory {artifacts_dir()}: remove the link, or have the operator "
            f"allow that location in {OUTPUT_ROOTS_ENV}"
        )
    return real
