"""The JSON shape of runs and groups, defined once so webhooks, CLI and API agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scheduler_core.models import Job, JobGroup, JobRun


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` suffix, the form most receivers parse without help."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_to_dict(job: Job, run: JobRun) -> dict[str, Any]:
    """A run as clients see it, with the job fields a receiver needs to act on it."""
    return {
        "run_id": run.run_id,
        "job_id": run.job_id,
        "status": run.status.value,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_seconds": run.duration_seconds,
        "exit_code": run.exit_code,
        "error": run.error,
        "artifacts": list(run.artifacts),
        "log_path": run.log_path,
        "flow_run_id": run.flow_run_id,
        "job_type": job.job_type,
        "attempt": job.attempt,
        "retry_of": job.retry_of,
        "group_id": job.group_id,
        "sequence": job.sequence,
        "priority": job.priority,
        "resource": job.resource,
    }


def group_to_dict(group: JobGroup) -> dict[str, Any]:
    return {
        "group_id": group.group_id,
        "name": group.name,
        "status": group.status.value,
        "size": group.size,
        "origin": group.origin.value,
        "cancel_requested": group.cancel_requested,
        "created_at": iso(group.created_at),
        "started_at": iso(group.started_at),
        "finished_at": iso(group.finished_at),
    }
