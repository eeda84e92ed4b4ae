"""Prefect kept in step with the scheduler (a plugin every Prefect-running service has):
a new job's flow run is created as it is queued; the ends Prefect cannot see are set on
the job's flow run (a job cancelled while queued ends Cancelled, a skipped group member
Cancelled named "Skipped"); and every change is a Prefect event (events.py).

Prefect calls run on the executor's loop, after the database commit and without holding
up the caller; `stop` waits for those still under way. Those that write to Prefect's
database take turns (`writes`), with the executor's creation of a run too: on the
server's default SQLite database, a request that reads before it writes (creating a
flow run does) is refused ("database is locked", a 503 the client retries after about
2 s) when another write commits in between, e.g. the previous group's artifact.
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
from prefect.events import Event
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled

from flows import events, group_artifact
from flows.prefect_jobs import ENDED_UNRUN, Deployments
from scheduler_core.plugins import Plugin
from scheduler_core.statuses import JobStatus
from scheduler_core.values import Job, JobGroup, JobRun

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from flows.executor import PrefectExecutor
    from scheduler_core.service import SchedulerService

log = logging.getLogger("flows.prefect_sync")

_NOTES = "llmsched_prefect_notes"
EVENT_BATCH_SECONDS = 0.25


class PrefectSync(Plugin):
    def __init__(self, svc: SchedulerService, executor: PrefectExecutor) -> None:
        self.svc = svc
        self.executor = executor
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._outbox: list[Event] = []  # events waiting for the next batch (on the loop)
        self._flushing = False
        self.writes = asyncio.Lock()  # held on the executor's loop, see above

    # ------------------------------------------------------------------ hooks

    def after_enqueue(self, jobs: list[Job]) -> None:
        if api_configured():
            self._submit(self._queued(jobs))

    def writes_with_end(self, dialect: str) -> bool:
        return False  # the hooks note, and `after_write` publishes once committed

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
        if committed and notes and api_configured():
            self._submit(self._publish(notes))

    def stop(self, timeout: float) -> None:
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending, timeout=timeout)

    def publish(self, event: Event) -> None:
        """Send one event in the background (the executor's `started`)."""
        self._submit(self._send([event]))

    # ------------------------------------------------------------------ in the background

    async def _queued(self, jobs: list[Job]) -> None:
        """New jobs: their flow runs, then their `queued` events (naming those runs)."""
        flow_jobs = [
            (j, f) for j in jobs if j.external_id is None and (f := self.flow_of(j.job_type))
        ]
        created = dict(await self.create_runs_now(flow_jobs))
        for job, _flow in flow_jobs:  # claimed first: the run its executor created
            if job.job_id not in created:
                created[job.job_id or 0] = await asyncio.to_thread(
                    self.svc.get_job, job.job_id or 0
                )
        await self._send([events.job_event("queued", created.get(j.job_id or 0, j)) for j in jobs])

    async def _publish(self, notes: list[tuple[str, Any, Any]]) -> None:
        """What a committed change means in Prefect: events, the end states Prefect cannot
        see, and flow runs for the automatic retries it queued."""
        sent: list[Event] = []
        ended: list[tuple[str, str]] = []  # (flow run id, name of its Cancelled state)
        retries: list[Job] = []
        for kind, subject, extra in notes:
            if kind == "group":
                sent.append(events.group_event(subject))
            elif kind == "cancelled":  # while queued
                sent.append(events.job_event("cancelled", subject))
                if subject.external_id:
                    ended.append((subject.external_id, ENDED_UNRUN[JobStatus.CANCELLED]))
            elif kind == "retry":
                sent.append(
                    events.job_event("retrying" if extra else "exhausted", subject, retry=extra)
                )
                if extra is not None:
                    retries.append(extra)
            else:
                run: JobRun = extra
                sent.append(events.job_event(run.status.value.lower(), subject, run=run))
                flow_run_id = run.flow_run_id or subject.external_id
                # Ends the flow engine does not set: a stopped flow, a member skipped.
                name = ENDED_UNRUN.get(JobStatus(run.status.value))
                if name is not None and flow_run_id:
                    ended.append((flow_run_id, name))
        async with self.writes, get_client() as client:
            for flow_run_id, name in ended:
                state: Any = Cancelled(name=name, message=f"{name.lower()} in the scheduler")
                await client.set_flow_run_state(UUID(flow_run_id), state, force=True)
        if retries:
            await self._queued(retries)
        await self._send(sent)
        await self._groups(
            {s.group_id for kind, s, _ in notes if kind != "group" and s.group_id is not None}
            | {s.group_id for kind, s, _ in notes if kind == "group"}
        )

    async def _groups(self, group_ids: set[int]) -> None:
        """Each changed group's artifact, written again from the database."""
        for group_id in sorted(group_ids):
            group, members = await asyncio.to_thread(self._group_state, group_id)
            async with self.writes, get_client() as client:
                await group_artifact.publish(client, group, members)

    def _group_state(self, group_id: int) -> tuple[JobGroup, list[tuple[Job, JobRun | None]]]:
        group = self.svc.get_job_group(group_id)
        members = self.svc.list_jobs(group_id=group_id)
        return group, [(job, self.svc.get_job_run_for_job(job.job_id or 0)) for job in members]

    async def _send(self, batch: list[Event]) -> None:
        """Queue events for the next batch: one request per `EVENT_BATCH_SECONDS` at most,
        however many jobs change (each request is a write on the server)."""
        self._outbox += batch
        if self._outbox and not self._flushing:
            self._flushing = True
            self._submit(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(EVENT_BATCH_SECONDS)
        batch, self._outbox, self._flushing = self._outbox, [], False
        async with get_client() as client:
            await events.send(client, batch)

    async def create_runs_now(
        self, jobs: list[tuple[Job, Flow[..., Any]]]
    ) -> list[tuple[int, Job]]:
        """Create these queued jobs' flow runs; the jobs that got theirs, by id."""
        deployments: Deployments = self.executor.deployments
        created: list[tuple[int, Job]] = []
        async with self.writes, get_client() as client:
            for job, flow in jobs:
                current = await asyncio.to_thread(self.svc.get_job, job.job_id or 0)
                if current.external_id is not None or current.status != JobStatus.QUEUED:
                    continue  # claimed meanwhile: its executor has created its run
                flow_run = await deployments.create_run(client, job, flow)
                given = await asyncio.to_thread(
                    self.svc.set_external_id, job.job_id or 0, str(flow_run.id)
                )
                if not given:  # another process gave it one first
                    await client.delete_flow_run(flow_run.id)
                    continue
                created.append(
                    (job.job_id or 0, job.model_copy(update={"external_id": str(flow_run.id)}))
                )
        return created

    async def settled_external_id(self, job_id: int) -> str | None:
        """The job's flow run id once no creation of runs is under way: a job claimed
        just after it was queued takes the run being created for it, not a second one."""
        async with self.writes:
            return (await asyncio.to_thread(self.svc.get_job, job_id)).external_id

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
