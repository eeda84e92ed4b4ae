"""DEC-007 retry: what a failure leads to, and what a retry copies.

A failed job with ``attempt <= max_retries`` gets a new job linked by ``retry_of``,
so a job runs at most ``1 + max_retries`` times; no automatic retry once its group's
cancel was requested. A manual retry of a FAILED run is always allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scheduler_core.errors import RunNotRetryableError
from scheduler_core.statuses import JobOrigin, JobRunStatus, JobStatus
from scheduler_core.values import Job, JobRun


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: `backoff_seconds * factor ** (attempt - 1)`, capped."""

    backoff_seconds: float = 10.0
    factor: float = 2.0
    max_backoff_seconds: float = 600.0

    def next_run_at(self, *, attempt: int, max_retries: int, now: datetime) -> datetime | None:
        """When the retry of a job that failed on `attempt` may run, or None for no retry."""
        if attempt > max_retries:
            return None
        delay = min(self.backoff_seconds * self.factor ** (attempt - 1), self.max_backoff_seconds)
        return now + timedelta(seconds=delay)


def automatic_retry_at(
    job: Job, *, policy: RetryPolicy, group_cancel_requested: bool, now: datetime
) -> datetime | None:
    """When the automatic retry of `job`, which just ended, may run; None: no retry.

    Only a FAILED job is retried, and not once the user asked its group to stop.
    """
    if job.status != JobStatus.FAILED or group_cancel_requested:
        return None
    return policy.next_run_at(attempt=job.attempt, max_retries=job.max_retries, now=now)


RETRYABLE_RUNS = frozenset({JobRunStatus.FAILED, JobRunStatus.CANCELLED})
RETRYABLE_JOBS = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def check_manual_retry(run: JobRun) -> None:
    """A manual retry is allowed for a FAILED or CANCELLED run, however many attempts
    came before."""
    if run.status not in RETRYABLE_RUNS:
        raise RunNotRetryableError(
            f"run {run.run_id} is {run.status.value}: only a FAILED or CANCELLED run can be retried"
        )


def check_manual_job_retry(job: Job) -> None:
    """A job retried as a whole (from Prefect, where a run cancelled while queued has no
    run of ours): FAILED or CANCELLED."""
    if job.status not in RETRYABLE_JOBS:
        raise RunNotRetryableError(
            f"job {job.job_id} is {job.status.value}: only a FAILED or CANCELLED job can be retried"
        )


def retry_values(
    original: Job, *, not_before: datetime | None, now: datetime, keep_group: bool
) -> dict[str, Any]:
    """The new job a retry of `original` is: the same type, params, priority and place in
    line (its position), one attempt more, linked by `retry_of`.

    An automatic retry keeps the group member's place (`keep_group`); a manual retry runs
    on its own, outside the group, whose order and terminal status are final.
    """
    return {
        "job_type": original.job_type,
        "params": original.params,
        "priority": original.priority,
        "position": original.position,
        "status": JobStatus.QUEUED.value,
        "resource": original.resource,
        "held": False,
        "group_id": original.group_id if keep_group else None,
        "sequence": original.sequence if keep_group else None,
        "retry_of": original.job_id,
        "attempt": original.attempt + 1,
        "max_retries": original.max_retries,
        "not_before": not_before,
        "origin": JobOrigin.QUEUE.value,
        "created_at": now,
        "queued_at": now,
        "timeout_seconds": original.timeout_seconds,
    }
