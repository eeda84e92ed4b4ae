"""Files and directories the scheduler creates are private to its user by default.

The data directory holds the database (with webhook secrets), run logs, the spool and
the pipelines' outputs: nothing another local user should read. Every directory we
create gets mode 0700 and every file 0600, whatever the umask. `LLMSCHED_FILE_MODE=group`
shares them with the directory's group instead (directories 2770, so new entries keep
the group; files 0660), for workers of several users in one group.

What exists already is left as it is: a directory a user made, or chose, keeps its mode
(see docs/security.md). The setting is read at each creation, so every process (worker,
command line, flow run) follows the environment it was started with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Literal

from scheduler_core.errors import ConfigurationError

FILE_MODE_ENV = "LLMSCHED_FILE_MODE"

Sharing = Literal["private", "group"]
MODES: dict[str, tuple[int, int]] = {"private": (0o600, 0o700), "group": (0o660, 0o2770)}
"""(file mode, directory mode) per sharing setting."""

_FLAGS = {
    "w": os.O_WRONLY | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_APPEND,
    "x": os.O_WRONLY,
}


def sharing() -> Sharing:
    """The `LLMSCHED_FILE_MODE` setting: `private` (default) or `group`."""
    value = os.environ.get(FILE_MODE_ENV, "").strip().lower() or "private"
    if value == "private":
        return "private"
    if value == "group":
        return "group"
    raise ConfigurationError(
        f"{FILE_MODE_ENV}={value!r} is not a file mode setting: use 'private' (files 0600, "
        "directories 0700) or 'group' (0660 and 2770, shared with the directory's group)"
    )


def file_mode() -> int:
    return MODES[sharing()][0]


def dir_mode() -> int:
    return MODES[sharing()][1]


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` and its missing parents with the directory mode; existing ones,
    `path` included, are left as they are (a directory a user chose keeps its mode)."""
    path = Path(path)
    mode = dir_mode()
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # another process made it meanwhile: theirs, with its own mode
        os.chmod(directory, mode)  # the umask may have removed bits; setgid needs chmod
    if not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a directory")
    return path


def create_private(path: str | os.PathLike[str]) -> bool:
    """Create `path` as an empty file with the file mode unless it exists; True if it was
    created. For files another program opens later (a SQLite database)."""
    try:
        fd = _create(path, os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def open_private(
    path: str | os.PathLike[str], mode: str = "a", *, encoding: str | None = "utf-8"
) -> IO[Any]:
    """`open(path, mode)` for writing (`w`, `a` or `x`, optionally with `b`) that creates a
    missing file with the file mode; an existing file keeps its mode. The directory must
    exist (`private_dir`)."""
    kind = mode.replace("b", "")
    if kind not in _FLAGS or mode.count("b") > 1:
        raise ValueError(f"open_private mode must be 'w', 'a' or 'x' (and 'b'), got {mode!r}")
    flags = _FLAGS[kind]
    try:
        fd = _create(path, flags)
    except FileExistsError:
        if kind == "x":
            raise
        fd = os.open(path, flags)  # a removal in between surfaces as FileNotFoundError
    binary = "b" in mode
    return os.fdopen(fd, mode, encoding=None if binary else encoding)


def _create(path: str | os.PathLike[str], flags: int) -> int:
    """Exclusive creation (never through a symlink), then the exact mode: the umask
    only removes bits, so the file is never wider than asked, even before the chmod."""
    mode = file_mode()
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def other_access(path: str | os.PathLike[str]) -> int:
    """The permission bits of an existing `path` beyond what the setting would give it:
    0 when it is as private as we would create it."""
    st = os.stat(path)
    allowed = dir_mode() if os.path.isdir(path) else file_mode()
    return st.st_mode & 0o777 & ~allowed
