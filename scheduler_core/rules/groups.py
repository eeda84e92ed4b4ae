"""DEC-012 / INV-006 job groups: members run one at a time, in sequence, and stop on
failure.

A member is held until its predecessor ends. When a member ends the group waits for
its retry, releases the next member, or skips the rest; its terminal status is
written once every member is terminal, never before.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from scheduler_core.statuses import JobGroupStatus, JobStatus
from scheduler_core.values import Job, JobGroup


class GroupStep(Enum):
    """What a group does after one of its members ended."""

    WAIT = "wait"  # a retry of the member will run, or the group has already ended
    RELEASE_NEXT = "release_next"  # the next queued member may run (if none: finalize)
    SKIP_REST = "skip_rest"  # every later queued member is SKIPPED, then finalize
    FINALIZE = "finalize"  # write the group's terminal status once all members are


def held_on_insert(sequence: int) -> bool:
    """Every member but the first waits for its predecessor."""
    return sequence > 0


def after_member_end(member: Job, *, group: JobGroup, retry_created: bool) -> GroupStep:
    """The step after `member` ended (COMPLETED, FAILED, or CANCELLED while it was next)."""
    if retry_created or group.status.is_terminal:
        return GroupStep.WAIT
    if group.cancel_requested:
        return GroupStep.FINALIZE
    if member.status == JobStatus.FAILED:
        return GroupStep.SKIP_REST
    return GroupStep.RELEASE_NEXT


def after_member_cancelled(member: Job, *, group: JobGroup) -> GroupStep:
    """A member cancelled while queued: if it was next in line the group moves on, as
    after any end; a held member is merely out of the line."""
    if member.held:
        return GroupStep.FINALIZE
    return after_member_end(member, group=group, retry_created=False)


def skip_error(failed: Job) -> str:
    """The error of each SKIPPED member's run."""
    return (
        f"skipped: predecessor job {failed.job_id} (sequence {failed.sequence}) "
        "failed and its retries are exhausted"
    )


def outcome(group: JobGroup, members: Iterable[tuple[int, JobStatus]]) -> JobGroupStatus | None:
    """The group's terminal status from its members' (sequence, status) pairs; None while
    any member (or retry of one) is not terminal, or when the group has already ended.

    A cancelled group (`cancel_requested`) ends CANCELLED whatever its members did.
    Otherwise a sequence counts as completed when any job of it (the member or one of
    its retries) COMPLETED: all completed, COMPLETED; some, PARTIAL; none, CANCELLED if
    every member was cancelled, else FAILED.
    """
    by_sequence: dict[int, set[JobStatus]] = {}
    for sequence, status in members:
        if not status.is_terminal:
            return None
        by_sequence.setdefault(sequence, set()).add(status)
    if group.status.is_terminal:
        return None
    completed = [JobStatus.COMPLETED in statuses for statuses in by_sequence.values()]
    if group.cancel_requested:
        return JobGroupStatus.CANCELLED
    if all(completed):
        return JobGroupStatus.COMPLETED
    if any(completed):
        return JobGroupStatus.PARTIAL
    if all(statuses == {JobStatus.CANCELLED} for statuses in by_sequence.values()):
        return JobGroupStatus.CANCELLED
    return JobGroupStatus.FAILED
