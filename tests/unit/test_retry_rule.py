"""DEC-007 retry rule: backoff, when a failure is retried, and what a retry copies."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from scheduler_core.errors import RunNotRetryableError
from scheduler_core.rules.retry import (
    RetryPolicy,
    automatic_retry_at,
    check_manual_retry,
    retry_values,
)
from scheduler_core.statuses import JobOrigin, JobRunStatus, JobStatus
from scheduler_core.values import Job
from tests.unit.conftest import MakeJob, MakeRun

# --- RetryPolicy.next_run_at ------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected_seconds"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0)],
)
def test_backoff_doubles_with_each_attempt_by_default(
    attempt: int, expected_seconds: float, now: datetime
) -> None:
    at = RetryPolicy().next_run_at(attempt=attempt, max_retries=10, now=now)
    assert at == now + timedelta(seconds=expected_seconds)


def test_backoff_follows_a_custom_base_and_factor(now: datetime) -> None:
    policy = RetryPolicy(backoff_seconds=1.5, factor=3.0, max_backoff_seconds=1000.0)
    assert policy.next_run_at(attempt=3, max_retries=5, now=now) == now + timedelta(
        seconds=1.5 * 3.0**2
    )


@pytest.mark.parametrize("attempt", [7, 8, 30])
def test_backoff_is_capped_at_the_maximum(attempt: int, now: datetime) -> None:
    # 10 * 2**6 = 640 > 600: from attempt 7 on every delay is the cap.
    at = RetryPolicy().next_run_at(attempt=attempt, max_retries=100, now=now)
    assert at == now + timedelta(seconds=600)


def test_a_backoff_exactly_at_the_cap_is_not_cut(now: datetime) -> None:
    policy = RetryPolicy(backoff_seconds=10.0, factor=2.0, max_backoff_seconds=40.0)
    assert policy.next_run_at(attempt=3, max_retries=5, now=now) == now + timedelta(seconds=40)


def test_a_constant_backoff_with_factor_one(now: datetime) -> None:
    policy = RetryPolicy(backoff_seconds=5.0, factor=1.0)
    delays = [policy.next_run_at(attempt=a, max_retries=9, now=now) for a in (1, 2, 9)]
    assert delays == [now + timedelta(seconds=5)] * 3


@pytest.mark.parametrize(
    ("attempt", "max_retries", "retried"),
    [
        (1, 0, False),  # no retries allowed: the first failure is final
        (1, 1, True),
        (2, 1, False),  # 1 + max_retries runs in all
        (3, 3, True),  # the last allowed retry
        (4, 3, False),
        (10, 3, False),
    ],
)
def test_a_retry_is_granted_while_attempt_is_at_most_max_retries(
    attempt: int, max_retries: int, retried: bool, now: datetime
) -> None:
    at = RetryPolicy().next_run_at(attempt=attempt, max_retries=max_retries, now=now)
    assert (at is not None) is retried


def test_the_policy_is_an_immutable_value() -> None:
    policy = RetryPolicy()
    assert (policy.backoff_seconds, policy.factor, policy.max_backoff_seconds) == (
        10.0,
        2.0,
        600.0,
    )
    with pytest.raises(AttributeError):
        policy.factor = 3.0  # type: ignore[misc]
    assert RetryPolicy() == RetryPolicy()


# --- automatic_retry_at ----------------------------------------------------------------


def test_a_failed_job_within_its_retries_gets_a_retry_after_backoff(
    make_job: MakeJob, now: datetime
) -> None:
    job = make_job(status=JobStatus.FAILED, attempt=2, max_retries=3)
    at = automatic_retry_at(job, policy=RetryPolicy(), group_cancel_requested=False, now=now)
    assert at == now + timedelta(seconds=20)


def test_the_retry_uses_the_given_policy(make_job: MakeJob, now: datetime) -> None:
    job = make_job(status=JobStatus.FAILED, attempt=1, max_retries=1)
    policy = RetryPolicy(backoff_seconds=0.25)
    at = automatic_retry_at(job, policy=policy, group_cancel_requested=False, now=now)
    assert at == now + timedelta(seconds=0.25)


def test_a_failed_job_with_its_retries_exhausted_gets_no_retry(
    make_job: MakeJob, now: datetime
) -> None:
    job = make_job(status=JobStatus.FAILED, attempt=4, max_retries=3)
    at = automatic_retry_at(job, policy=RetryPolicy(), group_cancel_requested=False, now=now)
    assert at is None


def test_a_failed_job_gets_no_retry_once_its_group_cancel_was_requested(
    make_job: MakeJob, now: datetime
) -> None:
    job = make_job(status=JobStatus.FAILED, attempt=1, max_retries=3, group_id=7, sequence=0)
    at = automatic_retry_at(job, policy=RetryPolicy(), group_cancel_requested=True, now=now)
    assert at is None


@pytest.mark.parametrize("status", [s for s in JobStatus if s != JobStatus.FAILED])
@pytest.mark.parametrize("group_cancel_requested", [False, True])
def test_a_job_that_did_not_fail_is_never_retried_automatically(
    status: JobStatus, group_cancel_requested: bool, make_job: MakeJob, now: datetime
) -> None:
    job = make_job(status=status, attempt=1, max_retries=3)
    assert (
        automatic_retry_at(
            job, policy=RetryPolicy(), group_cancel_requested=group_cancel_requested, now=now
        )
        is None
    )


# --- check_manual_retry -----------------------------------------------------------------


def test_a_failed_run_may_be_retried_manually_however_many_attempts_came_before(
    make_run: MakeRun,
) -> None:
    check_manual_retry(make_run(status=JobRunStatus.FAILED))  # does not raise


@pytest.mark.parametrize(
    "status", [s for s in JobRunStatus if s not in (JobRunStatus.FAILED, JobRunStatus.CANCELLED)]
)
def test_a_run_that_did_not_fail_cannot_be_retried_manually(
    status: JobRunStatus, make_run: MakeRun
) -> None:
    with pytest.raises(RunNotRetryableError) as raised:
        check_manual_retry(make_run(run_id=17, status=status))
    assert str(raised.value) == (
        f"run 17 is {status.value}: only a FAILED or CANCELLED run can be retried"
    )


# --- retry_values -----------------------------------------------------------------------


@pytest.fixture
def original(make_job: MakeJob) -> Job:
    return make_job(
        job_id=41,
        job_type="story",
        params={"topic": "owls", "n": 3},
        priority=5,
        position=123_456,
        status=JobStatus.FAILED,
        resource="ollama",
        held=True,
        group_id=9,
        sequence=2,
        retry_of=40,
        attempt=2,
        max_retries=4,
        origin=JobOrigin.DIRECT,
        worker_id="w-old",
        timeout_seconds=90.0,
    )


def test_an_automatic_retry_copies_the_job_and_keeps_its_group_place(
    original: Job, now: datetime
) -> None:
    not_before = now + timedelta(seconds=20)
    values = retry_values(original, not_before=not_before, now=now, keep_group=True)
    assert values == {
        "job_type": "story",
        "params": {"topic": "owls", "n": 3},
        "priority": 5,
        "position": 123_456,
        "status": "QUEUED",
        "resource": "ollama",
        "held": False,
        "group_id": 9,
        "sequence": 2,
        "retry_of": 41,
        "attempt": 3,
        "max_retries": 4,
        "not_before": not_before,
        "origin": "queue",
        "created_at": now,
        "queued_at": now,
        "timeout_seconds": 90.0,  # a retry keeps its original's deadline
    }


def test_a_manual_retry_runs_on_its_own_outside_the_group(original: Job, now: datetime) -> None:
    values = retry_values(original, not_before=None, now=now, keep_group=False)
    assert values["group_id"] is None
    assert values["sequence"] is None
    assert values["not_before"] is None
    # Everything else is copied just as for an automatic retry.
    kept = retry_values(original, not_before=None, now=now, keep_group=True)
    assert {k: v for k, v in values.items() if k not in ("group_id", "sequence")} == {
        k: v for k, v in kept.items() if k not in ("group_id", "sequence")
    }


def test_a_retry_is_queued_released_and_unowned_whatever_the_original_was(
    original: Job, now: datetime
) -> None:
    values = retry_values(original, not_before=None, now=now, keep_group=True)
    assert values["status"] == JobStatus.QUEUED.value
    assert values["held"] is False
    assert values["origin"] == JobOrigin.QUEUE.value  # a direct job's retry goes through the queue
    assert "worker_id" not in values
    assert "started_at" not in values and "finished_at" not in values
    assert "job_id" not in values


def test_a_retry_of_a_standalone_job_has_no_group_either_way(
    make_job: MakeJob, now: datetime
) -> None:
    job = make_job(job_id=3, status=JobStatus.FAILED)
    for keep_group in (True, False):
        values = retry_values(job, not_before=None, now=now, keep_group=keep_group)
        assert (values["group_id"], values["sequence"], values["retry_of"], values["attempt"]) == (
            None,
            None,
            3,
            2,
        )
