"""Cancellation: a QUEUED job becomes CANCELLED and never runs; running work is never
preempted by the scheduler."""

from __future__ import annotations

from scheduler_core.errors import JobNotCancellableError
from scheduler_core.statuses import JobStatus
from scheduler_core.values import Job

CANCELLABLE = JobStatus.QUEUED


def refusal(job: Job) -> JobNotCancellableError:
    """Why `job`, no longer QUEUED, cannot be cancelled, and what to do instead."""
    hint = (
        "running work is never preempted; wait for it to finish"
        if job.status == JobStatus.RUNNING
        else "it has already ended"
    )
    return JobNotCancellableError(
        f"job {job.job_id} is {job.status.value} and cannot be cancelled: {hint}"
    )
