"""Jobs as flow runs of deployments on the `llmsched` work pool.

Every job type that is a flow has a deployment `<flow name>/<pool>` on the work pool
`llmsched` (LLMSCHED_WORK_POOL names another), e.g. `story-pipeline/llmsched`. A queued
job's flow run is created when it is queued, in a Scheduled state named "Queued", so
the Prefect UI lists the queue and offers Cancel and Retry. Only the scheduler starts
these runs: the pool's type, `llmsched`, has no Prefect worker (`prefect worker start`
refuses it), and its concurrency limit is 0, so the Prefect server hands no run of it
to any Prefect worker that is forced onto it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from typing import Any
from uuid import UUID

import httpx
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import FlowRunCreate, WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy, WorkPool
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Scheduled, to_state_create

from scheduler_core.statuses import JobStatus
from scheduler_core.values import Job

log = logging.getLogger("flows.prefect_jobs")

POOL_TYPE = "llmsched"
QUEUED = "Queued"
"""The name of a queued job's Scheduled state; Prefect marks only runs named "Scheduled"
late, and a run named so (or "Late") is one the scheduler has not taken in yet."""
NEW_RUN_STATES = ("Scheduled", "Late")
RETRY_STATE = "AwaitingRetry"  # what the UI's Retry button sets
ENDED_UNRUN = {JobStatus.CANCELLED: "Cancelled", JobStatus.SKIPPED: "Skipped"}
"""A job that ended before its flow run ran: the name of the run's Cancelled state."""

POOL_TEMPLATE: dict[str, Any] = {
    "job_configuration": {"priority": "{{ priority }}"},
    "variables": {
        "type": "object",
        "properties": {
            "priority": {
                "type": "integer",
                "title": "Priority",
                "description": "Higher runs first among queued jobs (llmsched).",
                "default": 0,
            }
        },
    },
}


DEFAULT_POOL = "llmsched"


def pool_name() -> str:
    return os.environ.get("LLMSCHED_WORK_POOL", DEFAULT_POOL)


def scope() -> str:
    """What tells this scheduler database's objects apart on a shared Prefect server: ""
    on the default pool, else the pool's name (one work pool per scheduler database)."""
    pool = pool_name()
    return "" if pool == DEFAULT_POOL else pool


def resource_id(kind: str, object_id: int | str | None) -> str:
    """A job's or group's Prefect event resource: `llmsched.job.<id>`, or
    `llmsched.<pool>.job.<id>` on another work pool."""
    prefix = f"llmsched.{scope()}." if scope() else "llmsched."
    return f"{prefix}{kind}.{object_id}"


def artifact_key(kind: str, object_id: int | None) -> str:
    """An artifact key (lowercase letters, digits, dashes): `llmsched-group-<id>`, or
    `llmsched-<pool>-group-<id>` on another work pool."""
    pool = re.sub(r"[^a-z0-9]+", "-", scope().lower()).strip("-")
    return "-".join(part for part in ("llmsched", pool, kind, str(object_id)) if part)


def flow_run_name(job: Job) -> str:
    return f"{job.job_type}-job-{job.job_id}-attempt-{job.attempt}"


def flow_run_tags(job: Job) -> list[str]:
    """Tags that let the Prefect UI filter runs by job, type, attempt, chain and group."""
    tags = [
        "llmsched",
        f"job:{job.job_id}",
        f"type:{job.job_type}",
        f"attempt:{job.attempt}",
        f"priority:{job.priority}",
        f"resource:{job.resource}",
        f"origin:{job.origin.value}",
    ]
    if job.retry_of is not None:
        tags.append(f"retry_of:{job.retry_of}")
    if job.group_id is not None:
        tags += [f"group:{job.group_id}", f"position:{(job.sequence or 0) + 1}"]
    return tags


def queued_state() -> Any:
    return Scheduled(name=QUEUED, message="queued in the scheduler")


async def ensure_pool(client: PrefectClient) -> WorkPool:
    """The work pool, created if missing; its concurrency limit held at 0 (see above)."""
    name = pool_name()
    try:
        pool = await client.read_work_pool(name)
    except ObjectNotFound:
        with contextlib.suppress(ObjectAlreadyExists):  # another process was first
            await client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=POOL_TYPE,
                    description="Runs of llmsched jobs; served by `llmsched worker` only.",
                    base_job_template=POOL_TEMPLATE,
                    concurrency_limit=0,
                )
            )
        return await client.read_work_pool(name)
    if pool.concurrency_limit != 0:
        log.warning(
            "action=pool_limit_reset pool=%s limit=%s: only the scheduler runs its flow runs",
            name,
            pool.concurrency_limit,
        )
        await client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=0))
    return pool


class Deployments:
    """Each flow job type's deployment, created (or updated) once per process."""

    def __init__(self) -> None:
        self._ids: dict[str, UUID] = {}  # job type -> deployment id
        self._flow_ids: dict[str, UUID] = {}  # job type -> flow id
        self.job_types: dict[UUID, str] = {}  # deployment id -> job type
        self._lock: asyncio.Lock | None = None  # made on the loop that uses it

    async def ensure(self, client: PrefectClient, job_type: str, flow: Flow[..., Any]) -> UUID:
        known = self._ids.get(job_type)
        if known is not None:
            return known
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:  # one creation, however many callers wait for it
            known = self._ids.get(job_type)
            if known is not None:
                return known
            return await self._deploy(client, job_type, flow)

    async def _deploy(self, client: PrefectClient, job_type: str, flow: Flow[..., Any]) -> UUID:
        """The deployment `<flow>/<pool>`: the one already on the server (deployed from
        deployments/prefect.yaml, with its schedules) is left as it is; only a missing
        one is created. (Creating is an upsert that would drop the schedules.)"""
        await ensure_pool(client)
        flow_id = await client.create_flow(flow)
        try:
            found = await client.read_deployment_by_name(f"{flow.name}/{pool_name()}")
            deployment_id = found.id
            if found.work_pool_name != pool_name():
                log.warning(
                    "action=deployment_elsewhere deployment=%s/%s pool=%s: its runs are "
                    "not queued; deploy it to the %s work pool",
                    flow.name,
                    pool_name(),
                    found.work_pool_name,
                    pool_name(),
                )
        except ObjectNotFound:
            deployment_id = await client.create_deployment(
                flow_id=flow_id,
                name=pool_name(),  # `story-pipeline/llmsched`: one per flow and pool
                work_pool_name=pool_name(),
                work_queue_name="default",
                entrypoint=entrypoint_of(flow),
                tags=["llmsched", f"type:{job_type}"],
                description=f"{job_type} jobs of the llmsched scheduler: runs start in its queue.",
                parameter_openapi_schema=flow.parameters.model_dump_for_openapi(),
                enforce_parameter_schema=True,
            )
        self._ids[job_type] = deployment_id
        self._flow_ids[job_type] = flow_id
        self.job_types[deployment_id] = job_type
        return deployment_id

    async def create_run(
        self, client: PrefectClient, job: Job, flow: Flow[..., Any], *, state: Any = None
    ) -> FlowRun:
        """The job's flow run, named and tagged after it, in its deployment's queue:
        Scheduled ("Queued") unless another `state` is given.

        Created with `POST /flow_runs/`, as a flow call creates its run, rather than the
        deployment's `create_flow_run`, which validates parameters and job variables
        first: on the server's default SQLite database, the longer a request reads
        before it writes, the likelier a busy server refuses the write ("database is
        locked", a 503 the client retries after 2 s). Our params were checked at enqueue.
        """
        for attempt in (1, 2):
            deployment_id = await self.ensure(client, job.job_type, flow)
            create = FlowRunCreate(
                flow_id=self._flow_ids[job.job_type],
                deployment_id=deployment_id,
                flow_version=flow.version,
                name=flow_run_name(job),
                parameters=flow.serialize_parameters(dict(job.params)),
                tags=flow_run_tags(job),
                state=to_state_create(state or queued_state()),
                work_pool_name=pool_name(),
                work_queue_name="default",
                empirical_policy=FlowRunPolicy(retries=0, retry_delay=0),
            )
            try:
                response = await client.request(
                    "POST", "/flow_runs/", json=create.model_dump(mode="json", exclude_unset=True)
                )
            except httpx.HTTPStatusError as exc:
                if attempt == 2 or exc.response.status_code not in (404, 409):
                    raise
                self.forget(job.job_type)  # deleted on the server: deploy it again
                continue
            return FlowRun.model_validate(response.json())
        raise AssertionError("unreachable")

    def forget(self, job_type: str) -> None:
        self._flow_ids.pop(job_type, None)
        deployment_id = self._ids.pop(job_type, None)
        self.job_types.pop(deployment_id, None)  # type: ignore[arg-type]


def entrypoint_of(flow: Flow[..., Any]) -> str:
    module = flow.fn.__module__
    return f"{module.replace('.', '/')}.py:{flow.fn.__name__}"


async def deploy_flows(client: PrefectClient, flows: dict[str, Flow[..., Any]]) -> list[str]:
    """The work pool and each flow job type's deployment, as the worker makes them when
    it starts (`llmsched setup`); their names."""
    deployments = Deployments()
    for job_type, flow in flows.items():
        await deployments.ensure(client, job_type, flow)
    return [f"{flow.name}/{pool_name()}" for flow in flows.values()]
