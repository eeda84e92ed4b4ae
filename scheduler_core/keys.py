"""Idempotency keys: a submission repeated with the same key (a client's retry, a
re-run of the same scheduled slot) returns what the first one queued and writes
nothing. One job, or one group, per key, held by a unique index, so two processes
submitting one key at once create one. The same key for different work is refused."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from scheduler_core.errors import KeyReusedError
from scheduler_core.values import Job, JobGroup, JobSpec

T = TypeVar("T")


def submit_once(
    key: str | None,
    *,
    find: Callable[[], T | None],
    same: Callable[[T], T],
    insert: Callable[[], T],
) -> tuple[T, bool]:
    """`insert()` unless `key` names earlier work, which `find()` returns and `same()`
    checks; True when inserted. A unique-key conflict means another process was first:
    its work is returned. Any other conflict is raised."""
    if key is not None and (found := find()) is not None:
        return same(found), False
    try:
        return insert(), True
    except IntegrityError:
        if key is None or (found := find()) is None:
            raise
        return same(found), False


def same_job(found: Job, spec: JobSpec) -> Job:
    """The job queued earlier under `spec.key`, if it is the same work."""
    if (found.job_type, found.params) != (spec.job_type, spec.params):
        raise KeyReusedError(
            f"key {spec.key!r} already names job {found.job_id} ({found.job_type}) with other "
            "params; use a new key for different work"
        )
    return found


def same_group(
    found: tuple[JobGroup, list[Job]], key: str, name: str, specs: Sequence[JobSpec]
) -> tuple[JobGroup, list[Job]]:
    """The group queued earlier under `key`, if it is the same work."""
    group, members = found
    if (group.name, [(m.job_type, m.params) for m in members]) != (
        name,
        [(s.job_type, s.params) for s in specs],
    ):
        raise KeyReusedError(
            f"key {key!r} already names job group {group.group_id} ({group.name!r}) with other "
            "members; use a new key for different work"
        )
    return found
