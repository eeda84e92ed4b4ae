"""Cancellation, the user's decision: a QUEUED job becomes CANCELLED and never runs; a
RUNNING job is marked, and its worker stops it (its run and the job end CANCELLED, no
retry). The scheduler itself never preempts running work."""

from __future__ import annotations

from scheduler_core.errors import JobNotCancellableError
from scheduler_core.values import Job


def refusal(job: Job) -> JobNotCancellableError:
    """Why `job`, already ended, cannot be cancelled."""
    return JobNotCancellableError(
        f"job {job.job_id} is {job.status.value} and cannot be cancelled: it has already ended"
    )
