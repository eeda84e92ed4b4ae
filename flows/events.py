"""The scheduler's own Prefect events, for Automations: `llmsched.job.<what>` and
`llmsched.group.<status>` (docs/prefect-ui.md lists them).

A job's event has the job as its resource (`llmsched.job.<id>`) and its flow run, its
group and its deployment (when known) as related resources, so an Automation can match
on any of them.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL

from flows.prefect_jobs import flow_run_name
from scheduler_core.values import Job, JobGroup, JobRun

log = logging.getLogger("flows.events")

JOB_EVENTS = (
    "queued",
    "started",
    "completed",
    "failed",
    "retrying",
    "exhausted",
    "cancelled",
    "skipped",
)
GROUP_EVENTS = ("completed", "partial", "failed", "cancelled")

ENABLED = False
"""Set by `llmsched worker`: a short command whose server is down would print Prefect's
"failed with pending items" at exit, so only the long-running worker emits."""


def job_event(
    what: str,
    job: Job,
    *,
    run: JobRun | None = None,
    retry: Job | None = None,
    deployment_id: str | None = None,
) -> None:
    """Emit `llmsched.job.<what>`; never raises (events are best effort)."""
    payload: dict[str, Any] = {
        "job_id": job.job_id,
        "job_type": job.job_type,
        "attempt": job.attempt,
        "max_retries": job.max_retries,
        "priority": job.priority,
        "group_id": job.group_id,
        "retry_of": job.retry_of,
    }
    if run is not None:
        payload |= {"run_id": run.run_id, "status": run.status.value, "error": run.error}
    if retry is not None:
        payload["retry_job_id"] = retry.job_id
    related = []
    flow_run_id = (run.flow_run_id if run is not None else None) or job.external_id
    if flow_run_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        )
    if deployment_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{deployment_id}",
                "prefect.resource.role": "deployment",
            }
        )
    if job.group_id is not None:
        related.append(
            {
                "prefect.resource.id": f"llmsched.group.{job.group_id}",
                "prefect.resource.role": "group",
            }
        )
    _emit(
        f"llmsched.job.{what}",
        {
            "prefect.resource.id": f"llmsched.job.{job.job_id}",
            "prefect.resource.name": flow_run_name(job),
            "llmsched.job-type": job.job_type,
        },
        related,
        payload,
    )


def group_event(group: JobGroup) -> None:
    """Emit `llmsched.group.<status>` for a group that ended."""
    _emit(
        f"llmsched.group.{group.status.value.lower()}",
        {
            "prefect.resource.id": f"llmsched.group.{group.group_id}",
            "prefect.resource.name": group.name or f"group {group.group_id}",
        },
        [],
        {"group_id": group.group_id, "name": group.name, "status": group.status.value},
    )


def _emit(
    event: str, resource: dict[str, str], related: list[dict[str, str]], payload: dict[str, Any]
) -> None:
    if not ENABLED or not PREFECT_API_URL.value():
        return
    try:
        emit_event(event, resource=resource, related=related, payload=payload)
    except Exception as exc:
        log.warning("action=emit_event_failed event=%s error=%s", event, exc)
