"""A job group's one place in the Prefect UI: the Markdown artifact `llmsched-group-<id>`
(keys carry the work pool's name on any other pool, see `prefect_jobs.scope`),
written again (a new version under the same key) whenever one of its members changes, so
the artifact's page lists every member in order, retries included, with its state and
its flow run."""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import ArtifactCreate

from flows import prefect_jobs
from scheduler_core.values import Job, JobGroup, JobRun


def artifact_key(group_id: int) -> str:
    return prefect_jobs.artifact_key("group", group_id)


def markdown(group: JobGroup, members: list[tuple[Job, JobRun | None]]) -> str:
    rows = "\n".join(
        f"| {(job.sequence or 0) + 1} | {job.job_id} | {job.attempt} | {job.job_type} | "
        f"{job.status.value} | {cell(job.external_id or '')} | {cell(_error(run))} |"
        for job, run in sorted(members, key=lambda m: (m[0].sequence or 0, m[0].job_id or 0))
    )
    return (
        f"# Job group {group.group_id}: {cell(group.name)}\n\n"
        f"**{group.status.value}**: members run in this order and stop at the first that "
        "fails for good.\n\n"
        "| # | job | attempt | type | status | flow run | error |\n"
        "|---|---|---|---|---|---|---|\n"
        f"{rows}\n"
    )


async def publish(
    client: PrefectClient, group: JobGroup, members: list[tuple[Job, JobRun | None]]
) -> None:
    await client.create_artifact(
        ArtifactCreate(
            key=artifact_key(group.group_id or 0),
            type="markdown",
            data=markdown(group, members),
            description=f"llmsched job group {group.group_id} ({group.status.value})",
        )
    )


def _error(run: JobRun | None) -> str:
    return (run.error or "")[:200] if run is not None else ""


def cell(value: Any) -> str:
    """A value that cannot break its Markdown table row."""
    return str(value).replace("|", "\\|").replace("\n", " ")
