"""Prefect kept in step with the scheduler (a plugin every Prefect-running service has):
a new job's flow run is created as it is queued; the ends Prefect cannot see are set on
the job's flow run (a job cancelled while queued ends Cancelled, a skipped group member
Cancelled named "Skipped"); and every change is a Prefect event (events.py).

Prefect calls run on the executor's loop, after the database commit and without holding
up the caller; `stop` waits for those still under way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled

from flows import events
from flows.prefect_jobs import Deployments
from scheduler_core.plugins import Plugin
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Job, JobGroup, JobRun

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from flows.executor import PrefectExecutor
    from scheduler_core.service import SchedulerService

log = logging.getLogger("flows.prefect_sync")

_NOTES = "llmsched_prefect_notes"
SKIPPED_STATE = "Skipped"


class PrefectSync(Plugin):
    def __init__(self, svc: SchedulerService, executor: PrefectExecutor) -> None:
        self.svc = svc
        self.executor = executor
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()

    # ------------------------------------------------------------------ hooks

    def after_enqueue(self, jobs: list[Job]) -> None:
        for job in jobs:
            events.job_event("queued", job)
        if api_configured():
            self.create_runs([j for j in jobs if j.external_id is None])

    def on_terminal_run_in_tx(self, conn: Connection, job: Job, run: JobRun) -> None:
        _note(conn, ("run", job, run))

    def on_retry_decided_in_tx(self, conn: Connection, job: Job, retry: Job | None) -> None:
        _note(conn, ("retry", job, retry))

    def on_cancelled_in_tx(self, conn: Connection, job: Job) -> None:
        _note(conn, ("cancelled", job, None))

    def on_group_end_in_tx(self, conn: Connection, group: JobGroup) -> None:
        _note(conn, ("group", group, None))

    def after_write(self, conn: Connection, committed: bool) -> None:
        notes = conn.info.pop(_NOTES, None)
        if not committed or not notes:
            return
        ended: list[tuple[str, str]] = []  # (flow run id, state name) Prefect cannot know
        retries: list[Job] = []
        for kind, subject, extra in notes:
            if kind == "group":
                events.group_event(subject)
            elif kind == "cancelled":
                events.job_event("cancelled", subject)
                if subject.external_id:
                    ended.append((subject.external_id, "Cancelled"))
            elif kind == "retry":
                events.job_event("retrying" if extra else "exhausted", subject, retry=extra)
                if extra is not None:
                    events.job_event("queued", extra)
                    retries.append(extra)
            else:
                events.job_event(extra.status.value.lower(), subject, run=extra)
                if extra.status == JobRunStatus.SKIPPED and subject.external_id:
                    ended.append((subject.external_id, SKIPPED_STATE))
        if ended and api_configured():
            self._submit(_end_runs(ended))
        if retries and api_configured():
            self.create_runs(retries)

    def stop(self, timeout: float) -> None:
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending, timeout=timeout)

    # ------------------------------------------------------------------ flow runs

    def create_runs(self, jobs: list[Job]) -> None:
        """Create the flow runs of these queued jobs, in the background."""
        flow_jobs = [(j, f) for j in jobs if (f := self.flow_of(j.job_type)) is not None]
        if flow_jobs:
            self._submit(self.create_runs_now(flow_jobs))

    async def create_runs_now(self, jobs: list[tuple[Job, Flow[..., Any]]]) -> None:
        deployments: Deployments = self.executor.deployments
        async with get_client() as client:
            for job, flow in jobs:
                flow_run = await deployments.create_run(client, job, flow)
                given = await asyncio.to_thread(
                    self.svc.set_external_id, job.job_id or 0, str(flow_run.id)
                )
                if not given:  # another process gave it one first
                    await client.delete_flow_run(flow_run.id)

    def flow_of(self, job_type: str) -> Flow[..., Any] | None:
        try:
            handler = self.svc.registry.get(job_type).handler
        except Exception:
            return None
        return handler if isinstance(handler, Flow) else None

    def _submit(self, coro: Coroutine[Any, Any, None]) -> None:
        future = asyncio.run_coroutine_threadsafe(
            self.executor.with_clients(coro), self.executor.loop
        )
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.warning("action=prefect_sync_failed error=%s", future.exception())


def api_configured() -> bool:
    """A Prefect server is configured: without one, a command would start a temporary
    server just to record a queued job (the worker creates its flow run instead)."""
    return bool(PREFECT_API_URL.value())


def _note(conn: Connection, note: tuple[str, Any, Any]) -> None:
    conn.info.setdefault(_NOTES, []).append(note)


async def _end_runs(ended: list[tuple[str, str]]) -> None:
    async with get_client() as client:
        for flow_run_id, name in ended:
            await client.set_flow_run_state(
                UUID(flow_run_id),
                Cancelled(name=name, message=f"{name.lower()} in the scheduler"),
                force=True,
            )
