"""Cancellation: a QUEUED job never runs; a RUNNING one is stopped by its worker and ends
CANCELLED without a retry; groups."""

from __future__ import annotations

import pytest

from scheduler_core import (
    JobGroupStatus,
    JobNotCancellableError,
    JobNotFoundError,
    JobRunStatus,
    JobStatus,
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


def test_a_running_job_cancelled_is_stopped_and_ends_cancelled_without_a_retry(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "busy", "block": True})
    thread, result = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("busy")
        marked = jobs.cancel_job(job.job_id)
        assert marked.status == JobStatus.RUNNING and marked.cancel_requested
        thread.join(10)  # stopped by the worker's next check, not by the gate
        assert not thread.is_alive()
    finally:
        handler.release("busy")
        thread.join(10)
    assert result[0][0].status == JobStatus.CANCELLED
    run = run_of(jobs, job)
    assert run.status == JobRunStatus.CANCELLED and run.finished_at is not None
    assert "cancelled" in (run.error or "")
    assert handler.finished == []  # the handler never got past its gate
    assert jobs.get_retry_chain(job.job_id) == [jobs.get_job(job.job_id)]
    with pytest.raises(JobNotCancellableError, match="already ended"):
        jobs.cancel_job(job.job_id)
    retry = jobs.retry_run(run.run_id)  # a cancelled run may be retried by hand
    assert retry.retry_of == job.job_id and retry.status == JobStatus.QUEUED


def test_cancelling_an_unknown_job_raises_not_found(jobs: SchedulerService) -> None:
    with pytest.raises(JobNotFoundError, match="987654"):
        jobs.cancel_job(987654)


def test_cancelling_a_group_cancels_queued_members_and_stops_the_running_one(
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
        # The running member stops at its worker's next check; the group ends then.
        assert returned.status == JobGroupStatus.RUNNING
        assert returned.finished_at is None
        assert status_of(jobs, members[1]) == JobStatus.CANCELLED
        assert status_of(jobs, members[2]) == JobStatus.CANCELLED
        thread.join(10)
        assert not thread.is_alive()
    finally:
        handler.release("m0")
        thread.join(10)
    assert status_of(jobs, members[0]) == JobStatus.CANCELLED
    assert run_of(jobs, members[0]).status == JobRunStatus.CANCELLED
    final = jobs.get_job_group(group.group_id)
    assert final.status == JobGroupStatus.CANCELLED
    assert final.finished_at is not None
    assert final.finished_at >= run_of(jobs, members[0]).finished_at
    assert drain(jobs) == 0
    assert handler.started == ["m0"] and handler.finished == []
    assert jobs.get_job_run_for_job(members[1].job_id) is None
    assert jobs.get_job_run_for_job(members[2].job_id) is None


def test_cancelling_a_running_member_ends_its_group_cancelled(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    group, members = jobs.create_job_group(
        [
            {"job_type": "job", "params": {"name": "m0", "block": True}},
            {"job_type": "job", "params": {"name": "m1"}},
        ]
    )
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("m0")
        jobs.cancel_job(members[0].job_id)
        thread.join(10)
    finally:
        handler.release("m0")
        thread.join(10)
    assert status_of(jobs, members[0]) == JobStatus.CANCELLED
    assert status_of(jobs, members[1]) == JobStatus.CANCELLED
    assert jobs.get_job_group(group.group_id).status == JobGroupStatus.CANCELLED
    assert drain(jobs) == 0 and handler.started == ["m0"]


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
