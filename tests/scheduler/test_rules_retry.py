"""DEC-007: a failed job gets a linked retry job (attempt <= max_retries), with backoff;
a manual retry of a FAILED run is always allowed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from scheduler_core import (
    JobRunStatus,
    JobStatus,
    RunNotFoundError,
    RunNotRetryableError,
    SchedulerError,
    SchedulerService,
)
from tests.conftest import wait_for
from tests.scheduler.rules_support import GateHandler, count_rows, drain, run_of, status_of


def test_failed_job_gets_a_linked_retry_with_the_same_type_params_and_priority(
    jobs: SchedulerService,
) -> None:
    job = jobs.enqueue_job("job", {"name": "flaky", "fail": 1, "x": [1, 2]}, priority=4)
    failed, run = jobs.dispatch_one()
    assert failed.status == JobStatus.FAILED and run.status == JobRunStatus.FAILED
    (retry,) = jobs.list_queued_jobs()
    assert retry.retry_of == job.job_id
    assert retry.attempt == 2
    assert (retry.job_type, retry.params, retry.priority, retry.resource) == (
        job.job_type,
        job.params,
        job.priority,
        job.resource,
    )
    assert retry.max_retries == job.max_retries
    done, _ = jobs.dispatch_one()
    assert done.job_id == retry.job_id and done.status == JobStatus.COMPLETED


def test_retry_backoff_puts_not_before_in_the_future_and_holds_the_retry_until_then(
    open_service: Callable[..., SchedulerService], handler: GateHandler
) -> None:
    # A backoff long enough that the next call comes before it ends on a loaded machine.
    svc = open_service(retry_backoff_seconds=3.0, retry_backoff_factor=2.0)
    svc.register("job", handler, resource="external")
    svc.enqueue_job("job", {"name": "flaky", "fail": 1})
    _, run = svc.dispatch_one()
    (retry,) = svc.list_queued_jobs()
    assert retry.not_before is not None
    assert retry.not_before >= run.finished_at + timedelta(seconds=2.99)
    # Not dispatched before its time, although a slot is free.
    assert svc.dispatch_one() is None
    assert status_of(svc, retry) == JobStatus.QUEUED
    wait_for(lambda: svc.dispatch_one() is not None, timeout=20, what="the retry to become due")
    assert run_of(svc, retry).started_at >= retry.not_before
    assert status_of(svc, retry) == JobStatus.COMPLETED


def test_retry_backoff_grows_exponentially(
    open_service: Callable[..., SchedulerService], handler: GateHandler
) -> None:
    svc = open_service(retry_backoff_seconds=100, retry_backoff_factor=3.0)
    svc.register("job", handler, resource="external")
    job = svc.enqueue_job("job", {"name": "doomed", "fail": -1})
    _, run1 = svc.dispatch_one()
    (retry,) = svc.list_queued_jobs()
    delay = retry.not_before - run1.finished_at
    assert timedelta(seconds=99) <= delay <= timedelta(seconds=101)
    assert svc.dispatch_one() is None
    assert svc.get_retry_chain(job.job_id)[-1].job_id == retry.job_id


def test_job_with_max_retries_zero_is_not_retried(jobs: SchedulerService, handler) -> None:
    job = jobs.enqueue_job("job", {"name": "once", "fail": -1}, max_retries=0)
    failed, run = jobs.dispatch_one()
    assert failed.status == JobStatus.FAILED and run.status == JobRunStatus.FAILED
    assert jobs.list_queued_jobs() == []
    assert jobs.get_retry_chain(job.job_id) == [jobs.get_job(job.job_id)]
    assert handler.started == ["once"]


def test_service_wide_max_retries_zero_disables_automatic_retries(
    open_service: Callable[..., SchedulerService], handler: GateHandler
) -> None:
    svc = open_service(max_retries=0)
    svc.register("job", handler, resource="external")
    job = svc.enqueue_job("job", {"name": "once", "fail": -1})
    assert job.max_retries == 0
    assert drain(svc) == 1
    assert svc.list_jobs() == [svc.get_job(job.job_id)]


def test_automatic_retries_stop_after_max_retries(jobs: SchedulerService, handler) -> None:
    job = jobs.enqueue_job("job", {"name": "doomed", "fail": -1}, max_retries=2)
    assert drain(jobs) == 3
    chain = jobs.get_retry_chain(job.job_id)
    assert [j.attempt for j in chain] == [1, 2, 3]
    assert all(j.status == JobStatus.FAILED for j in chain)


def test_manual_retry_of_a_failed_run_creates_a_linked_job(jobs: SchedulerService, handler) -> None:
    job = jobs.enqueue_job("job", {"name": "manual", "fail": 1}, max_retries=0, priority=2)
    _, run = jobs.dispatch_one()
    retry = jobs.retry_run(run.run_id)
    assert retry.status == JobStatus.QUEUED
    assert retry.retry_of == job.job_id and retry.attempt == 2
    assert retry.params == job.params and retry.priority == 2
    done, done_run = jobs.dispatch_one()
    assert done.job_id == retry.job_id and done_run.status == JobRunStatus.COMPLETED
    assert handler.started == ["manual", "manual"]


def test_manual_retry_is_allowed_after_the_automatic_retries_are_exhausted(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "stubborn", "fail": 2}, max_retries=1)
    assert drain(jobs) == 2
    last = jobs.get_retry_chain(job.job_id)[-1]
    assert last.attempt == 2 and last.status == JobStatus.FAILED
    retry = jobs.retry_run(run_of(jobs, last).run_id)
    assert retry.retry_of == last.job_id and retry.attempt == 3
    assert retry.not_before is None
    assert drain(jobs) == 1
    assert status_of(jobs, retry) == JobStatus.COMPLETED
    assert [j.job_id for j in jobs.get_retry_chain(job.job_id)][-1] == retry.job_id


def test_retrying_a_completed_run_is_refused(jobs: SchedulerService) -> None:
    jobs.enqueue_job("job", {"name": "fine"})
    _, run = jobs.dispatch_one()
    before = count_rows(jobs)
    with pytest.raises(RunNotRetryableError) as info:
        jobs.retry_run(run.run_id)
    assert isinstance(info.value, SchedulerError)
    assert "COMPLETED" in str(info.value) and "FAILED" in str(info.value)
    assert count_rows(jobs) == before


def test_retrying_an_unknown_run_raises_not_found(jobs: SchedulerService) -> None:
    before = count_rows(jobs)
    with pytest.raises(RunNotFoundError, match="424242"):
        jobs.retry_run(424242)
    assert count_rows(jobs) == before


def test_retry_keeps_priority_and_position_ahead_of_later_jobs(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    flaky = jobs.enqueue_job("job", {"name": "flaky", "fail": 1}, priority=5)
    jobs.enqueue_job("job", {"name": "later"}, priority=5)
    jobs.dispatch_one()  # flaky fails; its retry takes flaky's place in line
    jobs.enqueue_job("job", {"name": "latest"}, priority=5)
    retry = jobs.get_retry_chain(flaky.job_id)[1]
    assert retry.priority == 5 and retry.position == flaky.position
    assert [j.params["name"] for j in jobs.list_queued_jobs()] == ["flaky", "later", "latest"]
    drain(jobs)
    assert handler.started == ["flaky", "flaky", "later", "latest"]
