"""The scheduler's own Prefect events, for Automations: `llmsched.job.<what>` and
`llmsched.group.<status>` (docs/prefect-ui.md lists them).

A job's event has the job as its resource (`llmsched.job.<id>`) and its flow run, its
group and its deployment (when known) as related resources, so an Automation can match
on any of them. Events are built here and sent in batches through the process's Prefect
client (`send`), beside the flow-run writes of the same change (prefect_sync.py): a
failure is logged by us, not reported by a background service as the process exits.
"""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.events import Event

from flows.prefect_jobs import flow_run_name, resource_id
from scheduler_core.values import Job, JobGroup, JobRun

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


def job_event(
    what: str,
    job: Job,
    *,
    run: JobRun | None = None,
    retry: Job | None = None,
    deployment_id: str | None = None,
) -> Event:
    """The event `llmsched.job.<what>` of `job`."""
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
    related: list[Any] = []
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
                "prefect.resource.id": resource_id("group", job.group_id),
                "prefect.resource.role": "group",
            }
        )
    return Event(
        event=f"llmsched.job.{what}",
        resource={  # type: ignore[arg-type]  # validated into a Resource
            "prefect.resource.id": resource_id("job", job.job_id),
            "prefect.resource.name": flow_run_name(job),
            "llmsched.job-type": job.job_type,
        },
        related=related,
        payload=payload,
    )


def group_event(group: JobGroup) -> Event:
    """The event `llmsched.group.<status>` of a group that ended."""
    return Event(
        event=f"llmsched.group.{group.status.value.lower()}",
        resource={  # type: ignore[arg-type]  # validated into a Resource
            "prefect.resource.id": resource_id("group", group.group_id),
            "prefect.resource.name": group.name or f"group {group.group_id}",
        },
        payload={"group_id": group.group_id, "name": group.name, "status": group.status.value},
    )


async def send(client: PrefectClient, events: list[Event]) -> None:
    """One request for a batch of events (the server's `POST /events`)."""
    if events:
        await client.request(
            "POST", "/events", json=[event.model_dump(mode="json") for event in events]
        )
