"""Cancellation: a QUEUED job never runs; running work is never preempted; groups."""

from __future__ import annotations

import pytest

from scheduler_core import (
    JobGroupStatus,
    JobNotCancellableError,
    JobNotFoundError,
    JobRunStatus,
    JobStatus,
    SchedulerError,
    SchedulerService,
)
from tests.scheduler.rules_support import (
    GateHandler,
    drain,
    run_in_thread,
    run_of,
    status_of,
    wait_status,
)


def test_cancelled_queued_job_never_runs_and_has_no_run(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "doomed"})
    other = jobs.enqueue_job("job", {"name": "other"})
    cancelled = jobs.cancel_job(job.job_id)
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert [j.job_id for j in jobs.list_queued_jobs()] == [other.job_id]
    assert drain(jobs) == 1
    assert handler.started == ["other"]
    assert status_of(jobs, job) == JobStatus.CANCELLED
    assert jobs.get_job_run_for_job(job.job_id) is None


def test_running_job_cannot_be_cancelled(jobs: SchedulerService, handler: GateHandler) -> None:
    job = jobs.enqueue_job("job", {"name": "busy", "block": True})
    thread, result = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("busy")
        with pytest.raises(JobNotCancellableError) as info:
            jobs.cancel_job(job.job_id)
        message = str(info.value)
        assert "RUNNING" in message and "preempt" in message
        assert str(job.job_id) in message
        assert isinstance(info.value, SchedulerError)
        assert status_of(jobs, job) == JobStatus.RUNNING
    finally:
        handler.release("busy")
        thread.join(10)
    # The refused cancel did not interfere: the job ran to its end.
    assert result[0][0].status == JobStatus.COMPLETED
    assert run_of(jobs, job).status == JobRunStatus.COMPLETED


def test_cancelling_an_unknown_job_raises_not_found(jobs: SchedulerService) -> None:
    with pytest.raises(JobNotFoundError, match="987654"):
        jobs.cancel_job(987654)


def test_cancelling_a_group_cancels_queued_members_and_lets_the_running_one_finish(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group(
        [
            {"job_type": "job", "params": {"name": "m0", "block": True}},
            {"job_type": "job", "params": {"name": "m1"}},
            {"job_type": "job", "params": {"name": "m2"}},
        ],
        name="cancel-me",
    )
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("m0")
        returned = jobs.cancel_job_group(group.group_id)
        # The running member is not preempted, so the group is not terminal yet.
        assert returned.status == JobGroupStatus.RUNNING
        assert returned.finished_at is None
        assert status_of(jobs, members[0]) == JobStatus.RUNNING
        assert status_of(jobs, members[1]) == JobStatus.CANCELLED
        assert status_of(jobs, members[2]) == JobStatus.CANCELLED
        assert jobs.get_job_group(group.group_id).status == JobGroupStatus.RUNNING
    finally:
        handler.release("m0")
        thread.join(10)
    assert status_of(jobs, members[0]) == JobStatus.COMPLETED
    assert run_of(jobs, members[0]).status == JobRunStatus.COMPLETED
    final = jobs.get_job_group(group.group_id)
    assert final.status == JobGroupStatus.CANCELLED
    assert final.finished_at is not None
    assert final.finished_at >= run_of(jobs, members[0]).finished_at
    assert drain(jobs) == 0
    assert handler.started == ["m0"]
    assert jobs.get_job_run_for_job(members[1].job_id) is None
    assert jobs.get_job_run_for_job(members[2].job_id) is None


def test_cancelling_a_queued_group_cancels_it_at_once(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group(
        [{"job_type": "job", "params": {"name": f"q{i}"}} for i in range(3)]
    )
    returned = jobs.cancel_job_group(group.group_id)
    assert returned.status == JobGroupStatus.CANCELLED
    assert returned.finished_at is not None
    assert all(status_of(jobs, m) == JobStatus.CANCELLED for m in members)
    assert drain(jobs) == 0
    assert handler.started == []


def test_cancelling_the_first_group_member_lets_the_next_member_run(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group(
        [{"job_type": "job", "params": {"name": f"m{i}"}} for i in range(3)]
    )
    jobs.cancel_job(members[0].job_id)
    assert drain(jobs) == 2
    assert handler.started == ["m1", "m2"]
    assert status_of(jobs, members[0]) == JobStatus.CANCELLED
    assert jobs.get_job_run_for_job(members[0].job_id) is None
    final = jobs.get_job_group(group.group_id)
    assert final.status.is_terminal and final.finished_at is not None


def test_cancelling_a_waiting_group_member_lets_the_member_after_it_run(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group(
        [
            {"job_type": "job", "params": {"name": "m0", "block": True}},
            {"job_type": "job", "params": {"name": "m1"}},
            {"job_type": "job", "params": {"name": "m2"}},
        ]
    )
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("m0")
        assert jobs.cancel_job(members[1].job_id).status == JobStatus.CANCELLED
        assert jobs.get_job_group(group.group_id).status == JobGroupStatus.RUNNING
    finally:
        handler.release("m0")
        thread.join(10)
    assert drain(jobs) == 1
    assert handler.started == ["m0", "m2"]
    assert status_of(jobs, members[2]) == JobStatus.COMPLETED
    wait_status(jobs, members[1], JobStatus.CANCELLED)
    final = jobs.get_job_group(group.group_id)
    assert final.status.is_terminal and final.finished_at is not None


def test_running_member_of_a_cancelled_group_that_fails_is_not_retried(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group(
        [
            {"job_type": "job", "params": {"name": "m0", "block": True, "fail": -1}},
            {"job_type": "job", "params": {"name": "m1"}},
        ]
    )
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("m0")
        jobs.cancel_job_group(group.group_id)
    finally:
        handler.release("m0")
        thread.join(10)
    assert status_of(jobs, members[0]) == JobStatus.FAILED
    assert jobs.get_retry_chain(members[0].job_id) == [jobs.get_job(members[0].job_id)]
    assert status_of(jobs, members[1]) == JobStatus.CANCELLED
    assert jobs.get_job_group(group.group_id).status == JobGroupStatus.CANCELLED
    assert drain(jobs) == 0
    assert handler.started == ["m0"]
