"""DEC-012 / INV-006 job groups: members run strictly in sequence, a failure with an
exhausted retry chain skips the rest, the terminal status is written only when every
member is terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scheduler_core import (
    EmptyGroupError,
    JobGroupStatus,
    JobRunStatus,
    JobStatus,
    SchedulerError,
    SchedulerService,
)
from tests.scheduler.rules_support import GateHandler, count_rows, drain, run_of, status_of


def member(name: str, **params: Any) -> dict[str, Any]:
    extra = {k: params.pop(k) for k in ("max_retries", "priority") if k in params}
    return {"job_type": "job", "params": {"name": name, **params}, **extra}


def test_members_run_in_sequence_even_with_free_slots(
    open_service: Callable[..., SchedulerService], handler: GateHandler
) -> None:
    svc = open_service()
    svc.register("job", handler, resource="external")
    group, members = svc.create_job_group([member("m0", block=True), member("m1"), member("m2")])
    svc.enqueue_job("job", {"name": "outsider"}, priority=-1)
    svc.start(concurrency=3)
    try:
        handler.wait_started("m0")
        handler.wait_started("outsider")  # a free slot is used by other work ...
        assert status_of(svc, members[1]) == JobStatus.QUEUED  # ... never by the next member
        assert svc.dispatch_one() is None
        handler.release("m0")
        handler.wait_started("m2")
    finally:
        handler.release_all()
        assert svc.stop(timeout=10)
    assert [n for n in handler.started if n != "outsider"] == ["m0", "m1", "m2"]
    runs = [run_of(svc, m) for m in members]
    assert runs[0].finished_at <= runs[1].started_at
    assert runs[1].finished_at <= runs[2].started_at
    assert svc.get_job_group(group.group_id).status == JobGroupStatus.COMPLETED


def test_a_group_starts_with_its_first_member_and_the_next_member_is_released_at_its_end(
    jobs: SchedulerService,
) -> None:
    """The group's start is written in the first member's start (one statement on
    PostgreSQL), the next member's release in the member's end."""
    group, members = jobs.create_job_group([member("m0"), member("m1"), member("m2")])
    assert jobs.get_job_group(group.group_id or 0).status == JobGroupStatus.QUEUED
    assert [jobs.get_job(m.job_id or 0).held for m in members] == [False, True, True]

    first, _ = jobs.dispatch_one()  # type: ignore[misc]
    started = jobs.get_job_group(group.group_id or 0)
    assert first.job_id == members[0].job_id
    assert started.status == JobGroupStatus.RUNNING and started.started_at == first.started_at
    assert [jobs.get_job(m.job_id or 0).held for m in members] == [False, False, True]

    second, _ = jobs.dispatch_one()  # type: ignore[misc]
    assert second.job_id == members[1].job_id
    assert jobs.get_job_group(group.group_id or 0).started_at == first.started_at  # once
    assert not jobs.get_job(members[2].job_id or 0).held


def test_a_members_pending_retry_keeps_the_group_waiting(
    open_service: Callable[..., SchedulerService], handler: GateHandler
) -> None:
    svc = open_service(retry_backoff_seconds=600)
    svc.register("job", handler, resource="external")
    group, members = svc.create_job_group([member("m0", fail=1), member("m1")])
    failed, _ = svc.dispatch_one()
    assert failed.job_id == members[0].job_id and failed.status == JobStatus.FAILED
    retry = svc.get_retry_chain(members[0].job_id)[1]
    assert retry.status == JobStatus.QUEUED
    assert (retry.group_id, retry.sequence) == (group.group_id, 0)
    # The retry is not due yet; the next member must not jump ahead of it.
    assert svc.dispatch_one() is None
    assert status_of(svc, members[1]) == JobStatus.QUEUED
    assert svc.get_job_run_for_job(members[1].job_id) is None
    current = svc.get_job_group(group.group_id)
    assert current.status == JobGroupStatus.RUNNING and current.finished_at is None
    assert handler.started == ["m0"]


def test_group_continues_after_a_members_successful_retry(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group([member("m0", fail=2), member("m1"), member("m2")])
    assert drain(jobs) == 5
    assert handler.started == ["m0", "m0", "m0", "m1", "m2"]
    assert [status_of(jobs, m) for m in members] == [
        JobStatus.FAILED,
        JobStatus.COMPLETED,
        JobStatus.COMPLETED,
    ]
    final = jobs.get_job_group(group.group_id)
    assert final.status == JobGroupStatus.COMPLETED and final.finished_at is not None


def test_group_terminal_status_is_written_only_when_every_member_is_terminal(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    seen: list[tuple[str, JobGroupStatus, bool]] = []
    group_id: list[int] = []

    def observe(params: dict[str, Any]) -> None:
        # Inside each member's run, from another connection: the group is still open.
        group = svc.get_job_group(group_id[0])
        seen.append((params["name"], group.status, group.finished_at is None))

    svc.register("job", observe, resource="external")
    group, members = svc.create_job_group([member("m0"), member("m1"), member("m2")])
    group_id.append(group.group_id)
    for i in range(3):
        svc.dispatch_one()
        state = svc.get_job_group(group.group_id)
        if i < 2:
            assert state.status == JobGroupStatus.RUNNING and state.finished_at is None
    assert seen == [(f"m{i}", JobGroupStatus.RUNNING, True) for i in range(3)]
    final = svc.get_job_group(group.group_id)
    assert final.status == JobGroupStatus.COMPLETED
    assert final.finished_at == run_of(svc, members[2]).finished_at


def test_first_member_failing_without_retries_skips_the_rest_and_fails_the_group(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group(
        [member("m0", fail=-1, max_retries=0), member("m1"), member("m2")]
    )
    assert drain(jobs) == 1
    assert handler.started == ["m0"]
    assert status_of(jobs, members[0]) == JobStatus.FAILED
    for m in members[1:]:
        assert status_of(jobs, m) == JobStatus.SKIPPED
        run = run_of(jobs, m)
        assert run.status == JobRunStatus.SKIPPED
        assert "predecessor" in run.error and "failed" in run.error
        assert str(members[0].job_id) in run.error
    final = jobs.get_job_group(group.group_id)
    assert final.status == JobGroupStatus.FAILED
    assert final.finished_at is not None


def test_later_member_failing_after_a_completed_one_ends_the_group_partial(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group(
        [member("m0"), member("m1", fail=-1, max_retries=1), member("m2")]
    )
    assert drain(jobs) == 3
    assert handler.started == ["m0", "m1", "m1"]
    assert status_of(jobs, members[2]) == JobStatus.SKIPPED
    assert jobs.get_job_group(group.group_id).status == JobGroupStatus.PARTIAL


def test_empty_group_is_refused_and_writes_nothing(jobs: SchedulerService) -> None:
    before = count_rows(jobs)
    with pytest.raises(EmptyGroupError) as info:
        jobs.create_job_group([], name="nothing")
    assert isinstance(info.value, SchedulerError)
    assert "no members" in str(info.value) and "nothing" in str(info.value)
    assert count_rows(jobs) == before


def test_a_member_failing_after_its_group_was_cancelled_is_not_retried(
    open_service: Callable[..., SchedulerService],
) -> None:
    """The member's end reads its group (on PostgreSQL in the end's own statement): a
    group the user stopped while the member ran gets no automatic retry of it."""
    svc = open_service(retry_backoff_seconds=0)
    group_ids: list[int] = []

    def cancel_then_fail(params: dict[str, Any]) -> None:
        svc.cancel_job_group(group_ids[0])
        raise RuntimeError("failed after its group was cancelled")

    svc.register("job", cancel_then_fail)
    group, members = svc.create_job_group([member("m0", max_retries=3), member("m1")])
    group_ids.append(group.group_id or 0)
    ended, run = svc.dispatch_one()  # type: ignore[misc]
    assert ended.job_id == members[0].job_id and run.status == JobRunStatus.FAILED
    assert svc.get_retry_chain(members[0].job_id or 0) == [svc.get_job(ended.job_id or 0)]
    assert status_of(svc, members[1]) == JobStatus.CANCELLED
    assert svc.get_job_group(group.group_id or 0).status == JobGroupStatus.CANCELLED
    assert svc.dispatch_one() is None
