"""DEC-011 resources: every job needs one resource class; a class may cap how many of
its jobs run at once across every worker (a local model server: 1), and a direct
execution needs a free slot among the live workers.

Which classes exist and what they are capped at is declared by whoever registers the
job types; the core knows no class by name.
"""

from __future__ import annotations

import re

from scheduler_core.errors import ConfigurationError, InvalidJobError

_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_SHAPE = re.compile(r"[A-Za-z0-9][^@]*(@[A-Za-z0-9_.:-]+)?")
"""A class, or `class@instance` (one instance, e.g. `ollama@127.0.0.1:11434`), starting
with a letter or digit: never `.`, `..` or another name that reads as a path."""


def check_name(name: object) -> str:
    """A resource class name: 1-64 letters, digits or _ . : @ -, starting with a letter or
    digit, with at most one `@` (before the instance)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        from scheduler_core.validation import shown

        raise ConfigurationError(
            f"invalid resource class {shown(name)}: use 1-64 letters, digits or _ . : @ -"
        )
    if not _SHAPE.fullmatch(name):
        raise ConfigurationError(
            f"invalid resource class {name!r}: start it with a letter or digit, and write an "
            "instance of a class as class@instance (one @), e.g. ollama@127.0.0.1:11434"
        )
    return name


def check_limit(limit: object) -> int | None:
    """A cap is a positive integer, or None for no cap."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidJobError(f"resource limit must be a positive integer or None, got {limit!r}")
    return limit


def class_of(name: str) -> str | None:
    """The class an instance name `class@instance` belongs to (None for a plain class).

    A new instance is capped like its class: a job that names its instance (one model
    server among several) is held to the same cap as the jobs a worker runs there.
    """
    cls, sep, _ = name.partition("@")
    return cls if sep and cls else None


def has_room(*, limit: int | None, running: int) -> bool:
    """May one more job of a class with `limit` start while `running` of it run?

    The SQLite claim states the same in its one statement (store/hot.py); a test holds
    the two to agree.
    """
    return limit is None or running < limit


def capacity(live_slots: int) -> int:
    """The slots of live workers; at least one, so a lone direct caller can always run."""
    return max(1, live_slots)


def direct_has_room(*, running: int, live_slots: int) -> bool:
    """A direct execution never preempts: it starts only in a free slot."""
    return running < capacity(live_slots)
