"""The `submit-job-group` flow: what a Prefect deployment schedule runs to queue a job group.

It only queues: the scheduler worker (`llmsched worker`) runs the members one after
another, so a scheduled group obeys the same priorities, the one-Ollama rule and the
retries as any other work. See docs/deployments.md.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import deployment, flow_run
from pydantic import BaseModel, ConfigDict, Field

from flows.group_artifact import cell
from flows.pipelines import install_pipelines
from flows.tasks import slugify
from scheduler_core.service import SchedulerService
from scheduler_core.statuses import JobOrigin
from scheduler_core.values import Job, JobGroup

NAME_LENGTH = 200
"""Room for the scheduled time the group name gets, within the 256 characters it may have."""

SUMMARY_KEYS = ("theme", "topic", "model")
"""The params shown in the artifact's table; enough to tell the members apart."""


class ScheduledJob(BaseModel):
    """One group member as a deployment lists it; unknown keys are refused, so a typo in
    the YAML fails when the run starts instead of being silently dropped."""

    model_config = ConfigDict(extra="forbid")

    job_type: str = Field(min_length=1, description="A registered job type: story or research.")
    name: str | None = Field(
        default=None,
        description='A name later members may use the outputs of: {"$outputs": name}.',
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="The pipeline flow's parameters."
    )
    priority: int = Field(default=0, description="Higher runs first among queued work.")


def group_name(name: str, scheduled: datetime) -> str:
    """The name plus the scheduled time (UTC), so each night's group is told apart."""
    return f"{name} {scheduled.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def run_name() -> str:
    """The submit run's name once it starts: `submit <group name>`, e.g. `submit
    nightly-stories 2026-11-26T01:00Z`. Until then a scheduled run has the random name
    Prefect's scheduler gave it (the scheduler cannot name runs)."""
    name = flow_run.parameters.get("name", "")
    return f"submit {group_name(str(name), flow_run.scheduled_start_time)}"


def submission_key(deployment_id: str | None, flow_run_id: str, scheduled: datetime) -> str:
    """The group's idempotency key: one group per scheduled slot of a deployment, so a
    UI Retry or a Prefect retry of that slot's run queues nothing more; per flow run
    when the flow is called without a deployment."""
    if deployment_id:
        return f"deployment:{deployment_id}@{scheduled.astimezone(UTC).isoformat()}"
    return f"flow-run:{flow_run_id}"


def submit(
    jobs: list[ScheduledJob], name: str, key: str | None = None
) -> tuple[JobGroup, list[Job], str]:
    """Validate every member against its pipeline's signature, then queue them in one
    transaction: a bad member queues nothing; a group queued with `key` before is
    returned as it is. The database is the worker's own (LLMSCHED_DATABASE_URL, else the
    SQLite file in LLMSCHED_HOME): never a parameter, which any API client could set."""
    with SchedulerService.open() as svc:
        install_pipelines(svc)
        group, members = svc.create_job_group(
            jobs=[job.model_dump(exclude_none=True) for job in jobs],
            name=name,
            origin=JobOrigin.SCHEDULE,
            key=key,
        )
        where = svc.db.engine.url.render_as_string(hide_password=True)
    return group, members, where


def summary(group: JobGroup, members: list[Job], *, database: str) -> str:
    rows = "\n".join(
        f"| {position} | {job.job_id} | {job.job_type} | {job.priority} | {job.resource} | "
        + ", ".join(f"{k}: {cell(job.params[k])}" for k in SUMMARY_KEYS if k in job.params)
        + " |"
        for position, job in enumerate(members, start=1)
    )
    return (
        f"# Job group {group.group_id}: {group.name}\n\n"
        f"{len(members)} jobs queued in `{database}`; the scheduler worker runs them in "
        "this order and stops at the first failure.\n\n"
        "| # | job id | type | priority | resource | params |\n"
        "|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Follow them with `llmsched jobs --group {group.group_id}`.\n"
    )


@flow(
    name="submit-job-group",
    flow_run_name=run_name,
    retries=2,  # safe: the slot's key (submission_key) queues the group once
    retry_delay_seconds=10,
    description="Queue a sequential job group for the scheduler worker; runs no job itself.",
)
async def submit_job_group(
    jobs: Annotated[list[ScheduledJob], Field(min_length=1)],
    name: Annotated[str, Field(min_length=1, max_length=NAME_LENGTH)],
) -> int:
    """Queue `jobs` as one group named after `name` and the scheduled time; returns its id.

    The group goes to the database of the Prefect worker's environment
    (LLMSCHED_DATABASE_URL, else the SQLite file in LLMSCHED_HOME), as the scheduler
    worker resolves it.
    """
    logger = get_run_logger()
    full_name = group_name(name, flow_run.scheduled_start_time)
    key = submission_key(deployment.id, flow_run.id, flow_run.scheduled_start_time)
    # The scheduler's API is synchronous; keep it off the flow's event loop.
    group, members, where = await asyncio.to_thread(submit, jobs, full_name, key)
    logger.info(
        "queued job group %s %r with origin schedule in %s: jobs %s",
        group.group_id,
        group.name,
        where,
        ", ".join(f"{job.job_id} ({job.job_type})" for job in members),
    )
    await acreate_markdown_artifact(
        markdown=summary(group, members, database=where),
        key=f"job-group-{slugify(name)}",
        description=f"job group {group.group_id} queued by schedule {name!r}",
    )
    assert group.group_id is not None
    return group.group_id
