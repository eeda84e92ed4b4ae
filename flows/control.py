"""Prefect steering the scheduler: what users do in the Prefect UI or API reaches the
queue. The worker looks every second (`CONTROL_INTERVAL`) at the `llmsched` work pool:

- a flow run of a job deployment created outside the scheduler (UI Run, `prefect
  deployment run`, REST `create_flow_run`, a schedule), state "Scheduled" or "Late",
  becomes a job (origin `prefect`) executed as that same flow run; its priority is the
  job variable `priority`, else a tag `priority:<n>`, else 0;
- a run a user cancelled (Cancelling or Cancelled): its job is cancelled, and stopped
  if it runs;
- a run a user retried ("AwaitingRetry") of a FAILED or CANCELLED job: the manual retry
  (a new job linked by `retry_of`) takes that flow run over;
- a paused work pool (or its queue) stops new claims until it is resumed;
- a flow run still "Queued" whose job was cancelled or skipped where Prefect was not
  told (`llmsched cancel`, an API outage) ends as the job did, and one whose job got a
  new priority (`llmsched priority`) gets its tags, within `RECONCILE_SECONDS`;
- and the worker heartbeats to the pool, so it shows on the pool's page.

It also creates the flow runs of queued jobs that have none yet (queued while no Prefect
server was configured, or while it was down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Cancelled, Failed
from prefect.types._datetime import now as prefect_now

from flows.prefect_jobs import (
    ENDED_UNRUN,
    NEW_RUN_STATES,
    QUEUED,
    RETRY_STATE,
    ensure_pool,
    flow_run_name,
    flow_run_tags,
    pool_name,
    queued_state,
)
from scheduler_core.errors import (
    DuplicateExternalIdError,
    JobNotCancellableError,
    SchedulerError,
)
from scheduler_core.plugins import Plugin
from scheduler_core.statuses import JobOrigin, JobStatus
from scheduler_core.values import Job

if TYPE_CHECKING:
    from flows.executor import PrefectExecutor
    from flows.prefect_sync import PrefectSync
    from scheduler_core.service import SchedulerService

log = logging.getLogger("flows.control")

CONTROL_INTERVAL = 1.0
HEARTBEAT_SECONDS = 30.0
CANCEL_LOOKBACK = timedelta(days=1)  # cancels made while no worker ran
RECONCILE_SECONDS = 5.0  # how often queued flow runs are checked against their jobs
POOL_PAUSED = "prefect work pool"
BATCH = 50  # queued jobs given a flow run per pass
PAGE = 200  # the server's largest page
MAX_RUNS = 2000


class PrefectControl(Plugin):
    """The worker's Prefect control loop (started and stopped with the service's loop)."""

    def __init__(self, svc: SchedulerService, executor: PrefectExecutor, sync: PrefectSync) -> None:
        self.svc = svc
        self.executor = executor
        self.sync = sync
        self.paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_at = 0.0
        self._reconciled_at = 0.0
        self._cancels_since: Any = None
        svc.availability.add_probe(POOL_PAUSED, lambda: not self.paused)

    def first_look(self) -> None:
        """One pass before the worker claims anything; an unreachable API is left to the
        loop (the worker's own probes pause it while Prefect is down)."""
        try:
            self.executor.run(self.tick())
        except Exception as exc:
            log.warning("action=prefect_control_failed error=%s", exc)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="llmsched-prefect-control", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.run(self.tick())
            except Exception as exc:  # the API is down: try again next time
                log.debug("action=prefect_control_failed error=%s", exc)
            self._stop.wait(CONTROL_INTERVAL)

    async def tick(self) -> None:
        async with get_client() as client:
            await self._pool(client)
            started = prefect_now("UTC")
            await self._cancels(client)
            self._cancels_since = started - timedelta(seconds=30)
            await self._new_runs(client)
            await self._missing_runs()
            if time.monotonic() - self._reconciled_at >= RECONCILE_SECONDS:
                await self._reconcile(client)
                self._reconciled_at = time.monotonic()

    # ------------------------------------------------------------------ the pool

    async def _pool(self, client: PrefectClient) -> None:
        pool = await ensure_pool(client)
        for job_type in self.svc.registry.names():
            flow = self.sync.flow_of(job_type)
            if flow is not None:
                await self.executor.deployments.ensure(client, job_type, flow)
        if time.monotonic() - self._beat_at >= HEARTBEAT_SECONDS:
            await client.send_worker_heartbeat(
                work_pool_name=pool.name,
                worker_name=f"llmsched {self.svc.worker_id}",
                heartbeat_interval_seconds=int(HEARTBEAT_SECONDS),
            )
            self._beat_at = time.monotonic()
        queue = await client.read_work_queue_by_name("default", work_pool_name=pool.name)
        paused = bool(pool.is_paused or queue.is_paused)
        if paused and not self.paused:
            self.paused = True
            self.svc.availability.fault(
                POOL_PAUSED, f"work pool {pool.name!r} is paused in Prefect"
            )
        elif not paused:
            self.paused = False

    # ------------------------------------------------------------------ cancels

    async def _cancels(self, client: PrefectClient) -> None:
        since = self._cancels_since or prefect_now("UTC") - CANCEL_LOOKBACK
        cancelling = await self._runs(
            client,
            FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING]))
            ),
        )
        cancelled = await self._runs(
            client,
            FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLED])),
                end_time=FlowRunFilterEndTime(after_=since),  # type: ignore[arg-type]
            ),
        )
        for flow_run in cancelling + cancelled:
            job = await asyncio.to_thread(self.svc.job_by_external_id, str(flow_run.id))
            if job is not None and not job.status.is_terminal:
                if not job.cancel_requested:
                    log.warning(
                        "action=cancel_from_prefect job_id=%s flow_run_id=%s",
                        job.job_id,
                        flow_run.id,
                    )
                    # The job's end sets its run Cancelled (prefect_sync.py); if it ended
                    # meanwhile, its run has the end it had.
                    with contextlib.suppress(JobNotCancellableError):
                        await asyncio.to_thread(self.svc.cancel_job, job.job_id or 0)
            elif flow_run.state is not None and flow_run.state.type == StateType.CANCELLING:
                # Nothing of ours runs it: its cancellation is complete.
                await client.set_flow_run_state(flow_run.id, Cancelled(), force=True)

    async def _reconcile(self, client: PrefectClient) -> None:
        """Queued flow runs checked against their jobs, for what was changed where
        Prefect was not told (`llmsched cancel` or `priority`, the Python API without
        the plugin, an API outage): a job cancelled or skipped ends its run as it did; a
        queued job's new priority shows in its run's tags."""
        runs = await self._runs(
            client,
            FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]),
                    name=FlowRunFilterStateName(any_=[QUEUED]),
                )
            ),
        )
        by_id = {str(flow_run.id): flow_run for flow_run in runs}
        jobs = await asyncio.to_thread(self.svc.jobs_by_external_id, list(by_id)) if runs else []
        for job in jobs:
            flow_run = by_id[job.external_id or ""]
            name = ENDED_UNRUN.get(job.status)
            if name is not None:
                await client.set_flow_run_state(
                    flow_run.id,
                    Cancelled(name=name, message=f"{name.lower()} in the scheduler"),
                    force=True,
                )
            elif job.status == JobStatus.QUEUED and set(flow_run.tags) != set(flow_run_tags(job)):
                await client.update_flow_run(flow_run.id, tags=flow_run_tags(job))

    # ------------------------------------------------------------------ submissions, retries

    async def _new_runs(self, client: PrefectClient) -> None:
        runs = await self._runs(
            client,
            FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]),
                    name=FlowRunFilterStateName(any_=[*NEW_RUN_STATES, RETRY_STATE]),
                )
            ),
        )
        for flow_run in runs:
            job_type = self.executor.deployments.job_types.get(flow_run.deployment_id)  # type: ignore[arg-type]
            if job_type is None:
                continue
            job = await asyncio.to_thread(self.svc.job_by_external_id, str(flow_run.id))
            try:
                job = await self._take(flow_run, job_type, job)
            except DuplicateExternalIdError:
                continue  # another worker took it in
            except SchedulerError as exc:
                await client.set_flow_run_state(
                    flow_run.id, Failed(message=f"refused by the scheduler: {exc}"), force=True
                )
                continue
            if job is None:
                continue
            await client.update_flow_run(
                flow_run.id, name=flow_run_name(job), tags=flow_run_tags(job)
            )
            await client.set_flow_run_state(flow_run.id, queued_state(), force=True)

    async def _take(self, flow_run: FlowRun, job_type: str, job: Job | None) -> Job | None:
        """The job this flow run stands for now: queued for it, or a manual retry."""
        external_id = str(flow_run.id)
        if job is None:
            job = await asyncio.to_thread(
                lambda: self.svc.enqueue_job(
                    job_type,
                    dict(flow_run.parameters),
                    priority=submitted_priority(flow_run),
                    origin=JobOrigin.PREFECT,
                    external_id=external_id,
                )
            )
            log.info("action=queued_from_prefect job_id=%s flow_run_id=%s", job.job_id, external_id)
            return job
        if not job.status.is_terminal:
            return job  # already queued: only its state is restored
        if flow_run.state is None or flow_run.state.name != RETRY_STATE:
            return None
        retry = await asyncio.to_thread(
            lambda: self.svc.retry_job(job.job_id or 0, external_id=external_id)
        )
        log.info(
            "action=retry_from_prefect job_id=%s retry_of=%s flow_run_id=%s",
            retry.job_id,
            job.job_id,
            external_id,
        )
        return retry

    async def _missing_runs(self) -> None:
        jobs = await asyncio.to_thread(self.svc.queued_without_external_id, BATCH)
        flow_jobs = [(j, f) for j in jobs if (f := self.sync.flow_of(j.job_type)) is not None]
        if flow_jobs:
            await self.sync.create_runs_now(flow_jobs)

    async def _runs(self, client: PrefectClient, flow_runs: FlowRunFilter) -> list[FlowRun]:
        """Every matching run of the pool, page by page (at most `MAX_RUNS` a pass)."""
        found: list[FlowRun] = []
        while len(found) < MAX_RUNS:
            page = await client.read_flow_runs(
                flow_run_filter=flow_runs,
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool_name()])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=PAGE,
                offset=len(found),
            )
            found += page
            if len(page) < PAGE:
                break
        return found


def submitted_priority(flow_run: FlowRun) -> int:
    """A submitted run's priority: job variable `priority`, else tag `priority:<n>`, else 0."""
    value = (flow_run.job_variables or {}).get("priority")
    if value is None:
        for tag in flow_run.tags:
            if tag.startswith("priority:"):
                value = tag.partition(":")[2]
    try:
        return int(value) if value is not None else 0
    except ValueError as exc:
        raise SchedulerError(f"priority must be an integer, got {value!r}") from exc
