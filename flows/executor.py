"""The Prefect executor: every job execution is one Prefect flow run.

The job's flow run is the one created when it was queued (prefect_jobs.py), or one a
Prefect client created and the scheduler took in (control.py); it is created now if
neither exists. The executor claims it (Pending: a second claimant is refused by the
server), stores its id on the JobRun, then runs the flow on this executor's event loop.
A cancelled job's coroutine is cancelled (the model call is abandoned), the outputs it
wrote are removed and its flow run ends Cancelled. Async flows take the engine's async
path; a synchronous flow call costs about a second more per job (it joins a heartbeat
thread), so pipelines here are `async def`.

The executor keeps one async and one sync Prefect client for its lifetime, opened on
its loop and seen by everything that runs there (our calls, the flow engine, the
`ollama` lease's release and renewal): otherwise Prefect builds a new HTTP client for
each of these in every flow run, each loading the CA bundle into a new SSL context
(about 27 ms apiece here, several per job).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Coroutine
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.exceptions import ObjectNotFound
from prefect.flow_engine import run_flow_async, run_flow_sync
from prefect.states import Crashed, Failed, Pending

from flows import events, prefect_faults, temporary_server
from flows.guard import lease_listener
from flows.library.context import scheduler_run_id
from flows.outputs import written_outputs
from flows.prefect_jobs import Deployments, flow_run_name, flow_run_tags, queued_state
from scheduler_core.cancellation import CANCELLED_ERROR
from scheduler_core.deadlines import deadline_error
from scheduler_core.errors import JobCancelled, JobInterrupted
from scheduler_core.executor import (
    CallableExecutor,
    ExecutionContext,
    RunLog,
    describe_error,
    failed,
    log_outcome,
    outcome_from_result,
    run_log,
)
from scheduler_core.plugins import Plugin
from scheduler_core.registry import JobType, ResourceRule
from scheduler_core.rules import faults
from scheduler_core.service import SchedulerService
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Claim, Finish, Outcome

log = logging.getLogger("flows.executor")
T = TypeVar("T")

PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
SIGNAL_CHECK_SECONDS = 0.25


class PrefectExecutor:
    """Runs Prefect flows registered as job handlers; plain callables run as before."""

    def __init__(self) -> None:
        self._fallback = CallableExecutor()
        self.zombies = prefect_faults.Zombies()
        self._lock = threading.Lock()
        self._in_flight: set[concurrent.futures.Future[Any]] = set()
        self._interrupting = False
        self._named: dict[int, Flow[..., Any]] = {}
        self.deployments = Deployments()
        self.sync: Any = None  # the PrefectSync plugin (install_prefect)
        self._jobs: dict[int, asyncio.Task[Any]] = {}  # running flows' tasks, by job id
        self._cancelled: set[int] = set()
        self._recent: deque[UUID] = deque(maxlen=16)  # the latest flow runs started here
        self._loop = asyncio.new_event_loop()
        self._clients: asyncio.Future[tuple[AsyncClientContext, SyncClientContext]] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="llmsched-prefect-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], *, job_id: int | None = None) -> T:
        """Run a coroutine on the executor's loop from any thread and wait for it; Prefect
        calls made in it use the executor's clients. If the waiting thread is interrupted
        (Ctrl-C, a deadline), the coroutine is cancelled too: it never runs on unseen."""
        wrapped = self.with_clients(coro if job_id is None else self._tracked(coro, job_id))
        future = asyncio.run_coroutine_threadsafe(wrapped, self._loop)
        with self._lock:
            self._in_flight.add(future)
        try:
            while True:
                # Waiting in slices: a signal the kernel hands to another thread is only
                # seen by the main thread when its wait returns, so Ctrl-C works at once.
                try:
                    return future.result(timeout=SIGNAL_CHECK_SECONDS)
                except concurrent.futures.TimeoutError:
                    if future.done():
                        raise  # the coroutine's own TimeoutError
        except concurrent.futures.CancelledError:
            if job_id is not None and job_id in self._cancelled:
                raise JobCancelled(f"job {job_id} was cancelled") from None
            if self._interrupting:
                raise JobInterrupted("the executor was interrupted") from None
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            with self._lock:
                self._in_flight.discard(future)
                if job_id is not None:
                    self._cancelled.discard(job_id)

    async def _tracked(self, coro: Coroutine[Any, Any, T], job_id: int) -> T:
        task = asyncio.current_task()
        assert task is not None
        self._jobs[job_id] = task
        try:
            return await coro
        finally:
            self._jobs.pop(job_id, None)

    def cancel(self, job_id: int) -> bool:
        """A user cancelled this running job: cancel its flow's task (the job's call
        returns once the flow has unwound and its outputs are removed: `_run_async`).
        False when no flow task of it runs here (a plain function, a synchronous flow):
        the scheduler then stops its thread (cancellation.py)."""
        with self._lock:
            self._cancelled.add(job_id)
        task = self._jobs.get(job_id)
        if task is None:
            return False
        self._loop.call_soon_threadsafe(task.cancel)
        return True

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def interrupt(self) -> None:
        """The worker is stopping before its jobs ended: cancel every running flow (its
        job is handed back to the queue)."""
        self._interrupting = True
        with self._lock:
            running = list(self._in_flight)
        for future in running:
            future.cancel()

    def close(self) -> None:
        """Close the clients on the loop that opened them, then stop the loop; with
        Prefect's temporary server, first let it record this process's task runs."""
        if not self._thread.is_alive():
            return
        if self._recent and temporary_server.in_use():
            self._settle_temporary_server()
        try:
            asyncio.run_coroutine_threadsafe(self._close_clients(), self._loop).result(timeout=30)
        except Exception as exc:
            log.warning("action=close_prefect_clients_failed error=%s", describe_error(exc))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _settle_temporary_server(self) -> None:
        """The server stops when this process exits: it must have recorded the task runs
        first (flows/temporary_server.py)."""
        try:
            temporary_server.send_queued_events()
            if not self.run(temporary_server.recorded(list(self._recent))):
                log.warning(
                    "action=temporary_server_unsettled seconds=%s: task runs may show as "
                    "unfinished in Prefect's database",
                    temporary_server.SETTLE_SECONDS,
                )
        except Exception as exc:
            log.warning("action=temporary_server_unsettled error=%s", describe_error(exc))

    def execute(self, job_type: JobType, ctx: ExecutionContext) -> Outcome:
        if not isinstance(job_type.handler, Flow):
            return self._fallback.execute(job_type, ctx)
        flow: Flow[..., Any] = job_type.handler
        with run_log(ctx, loggers=PREFECT_RUN_LOGGERS) as run_logger:
            try:
                if asyncio.iscoroutinefunction(flow.fn):
                    outcome = self.run(
                        self._run_async(job_type.name, flow, ctx, run_logger),
                        job_id=ctx.job.job_id,
                    )
                else:
                    outcome = self._run_sync(job_type.name, flow, ctx, run_logger)
            except JobCancelled:
                outcome = Outcome(status=JobRunStatus.CANCELLED, error=CANCELLED_ERROR)
            except Exception as exc:
                if prefect_faults.is_api_fault(exc):
                    outcome = faults.interrupted(prefect_faults.DEPENDENCY, describe_error(exc))
                else:
                    run_logger.exception("flow run could not be executed")
                    outcome = failed(describe_error(exc))
            log_outcome(run_logger, outcome)
            return outcome

    def _job_named(self, flow: Flow[..., Any]) -> Flow[..., Any]:
        """The flow without its own run-name template: the run keeps the job's name
        given at creation (a template would cost a rename call per run)."""
        named = self._named.get(id(flow))
        if named is None:
            named = flow.with_options()
            named.flow_run_name = None
            self._named[id(flow)] = named
        return named

    async def _run_async(
        self, job_type: str, flow: Flow[..., Any], ctx: ExecutionContext, run_logger: RunLog
    ) -> Outcome:
        """Claim, record and run the job's flow run in one visit to the loop (each visit
        from the worker thread is a cross-thread hand-off), all within the job's deadline.
        A deadline that passes before the flow started was the Prefect API's delay: the
        job goes back to the queue, its attempt not counted."""
        flow_run: FlowRun | None = None
        outputs: list[Path] = []
        running: FlowRun | None = None  # the flow run, once its flow started
        try:
            async with asyncio.timeout(ctx.timeout_seconds):
                flow_run = await self._claim_flow_run(job_type, flow, ctx)
                if flow_run is None:
                    return Outcome(
                        status=JobRunStatus.CANCELLED, error="its flow run was cancelled"
                    )
                await self._attach(ctx, str(flow_run.id))
                run_logger.follow_flow_run(str(flow_run.id))
                lease_listener.set(_lease_recorder(ctx))  # this task's own context
                written_outputs.set(outputs)
                scheduler_run_id.set(ctx.run.run_id)  # for the outputs' records (library)
                running = flow_run
                state = await run_flow_async(
                    self._job_named(flow),
                    flow_run=_for_engine(flow_run),
                    parameters=dict(ctx.job.params),
                    return_type="state",
                )
            outcome = await _outcome_of(state)
        except TimeoutError:
            if running is not None:
                return await self._past_deadline(running, ctx.timeout_seconds or 0)
            outcome = faults.interrupted(  # the Prefect API, not the job, used up its time
                prefect_faults.DEPENDENCY,
                f"the Prefect API did not hand over the job's flow run within its "
                f"{ctx.timeout_seconds} s deadline",
            )
        except asyncio.CancelledError:
            if ctx.job.job_id not in self._cancelled:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the cancel was ours and is handled here
            for path in outputs:  # a cancelled job leaves no partial output
                path.unlink(missing_ok=True)
            return Outcome(status=JobRunStatus.CANCELLED, error=CANCELLED_ERROR)
        except Exception as exc:
            if not prefect_faults.is_api_fault(exc):
                raise
            outcome = faults.interrupted(prefect_faults.DEPENDENCY, describe_error(exc))
        if faults.requeues(outcome) and flow_run is not None:
            self.zombies.add(flow_run.id)
        return outcome

    @staticmethod
    async def _attach(ctx: ExecutionContext, flow_run_id: str) -> None:
        if ctx.callbacks is not None and ctx.run.run_id is not None:
            await asyncio.to_thread(ctx.callbacks.attach_flow_run, ctx.run.run_id, flow_run_id)

    async def _claim_flow_run(
        self, job_type: str, flow: Flow[..., Any], ctx: ExecutionContext
    ) -> FlowRun | None:
        """The job's flow run, moved to Pending for this worker; None if a user cancelled
        it in Prefect before it started."""
        job = ctx.job
        external_id = job.external_id
        if external_id is None and self.sync is not None:
            external_id = await self.sync.settled_external_id(job.job_id or 0)
        async with get_client() as client:
            flow_run = await _read_run(client, external_id)
            if flow_run is not None and flow_run.state is not None:
                if flow_run.state.type in (StateType.CANCELLED, StateType.CANCELLING):
                    return None  # cancelled in Prefect just now: the job ends CANCELLED
                if flow_run.state.type != StateType.SCHEDULED:  # a handed-back attempt's
                    await client.set_flow_run_state(flow_run.id, queued_state(), force=True)
                if flow_run.name != flow_run_name(job):  # retried from the UI
                    await client.update_flow_run(
                        flow_run.id, name=flow_run_name(job), tags=flow_run_tags(job)
                    )
                claimed: Any = await client.set_flow_run_state(flow_run.id, Pending())
                if claimed.status != SetStateStatus.ACCEPT:
                    log.warning(  # someone else started it: the job gets a run of its own
                        "action=flow_run_taken job_id=%s flow_run_id=%s", job.job_id, flow_run.id
                    )
                    flow_run = None
            if flow_run is None:
                # Created claimed (Pending): one write less than creating it Queued.
                # Recorded before the turn ends: the sync's `queued` event then names it.
                async with self.sync.writes if self.sync is not None else nullcontext():
                    flow_run = await self.deployments.create_run(client, job, flow, state=Pending())
                    previous = await asyncio.to_thread(_record_external_id, ctx, str(flow_run.id))
                if previous is not None and previous != external_id:
                    # Created for the queue a moment ago, by this process's background
                    # sync: this claimed one replaces it (unless the server lost it in
                    # an outage: then there is nothing to delete).
                    with suppress(ObjectNotFound):
                        await client.delete_flow_run(UUID(previous))
            # The engine reads the run again as it starts: no read of the Pending state here.
        self._recent.append(flow_run.id)  # sync and async flows alike
        if self.sync is not None:
            self.sync.publish(
                events.job_event(
                    "started",
                    job.model_copy(update={"external_id": str(flow_run.id)}),
                    deployment_id=str(flow_run.deployment_id) if flow_run.deployment_id else None,
                )
            )
        return flow_run

    async def _past_deadline(self, flow_run: FlowRun, seconds: float) -> Outcome:
        """The job's deadline passed while its flow ran: its flow run ends Failed."""
        message = deadline_error(seconds)
        try:
            async with get_client() as client:
                await client.set_flow_run_state(flow_run.id, Failed(message=message), force=True)
        except Exception:
            self.zombies.add(flow_run.id)
        return failed(message)

    def available(self) -> bool:
        """The scheduler's probe after a fault: the API answers; then the flow runs the
        outage interrupted are set Crashed."""
        if not prefect_faults.api_answers():
            return False
        if self.zombies:

            async def crash() -> None:
                async with get_client() as client:
                    await self.zombies.crash(client)

            self.run(crash())
        return True

    def _run_sync(
        self, job_type: str, flow: Flow[..., Any], ctx: ExecutionContext, run_logger: RunLog
    ) -> Outcome:
        flow_run = self.run(self._claim_flow_run(job_type, flow, ctx))
        if flow_run is None:
            return Outcome(status=JobRunStatus.CANCELLED, error="its flow run was cancelled")
        if ctx.callbacks is not None and ctx.run.run_id is not None:
            ctx.callbacks.attach_flow_run(ctx.run.run_id, str(flow_run.id))
        run_logger.follow_flow_run(str(flow_run.id))
        _, sync_clients = self.run(self._shared_clients())
        tokens = (
            lease_listener.set(_lease_recorder(ctx)),
            SyncClientContext.__var__.set(sync_clients),
        )
        try:
            state = run_flow_sync(
                self._job_named(flow),
                flow_run=_for_engine(flow_run),
                parameters=dict(ctx.job.params),
                return_type="state",
            )
        finally:
            SyncClientContext.__var__.reset(tokens[1])
            lease_listener.reset(tokens[0])
        return self.run(_outcome_of(state))

    # ------------------------------------------------------------------ shared clients

    async def with_clients(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` with the executor's clients as this task's Prefect client contexts,
        where `get_client()` and the flow engine look before building new clients."""
        try:
            async_clients, sync_clients = await self._shared_clients()
        except BaseException:
            coro.close()
            raise
        # Set in this task's own context copy, so nothing to reset; ContextModel's
        # `with` would refuse the same context object entered by concurrent tasks.
        # Threads started from here (lease renewal) copy the context and share the sync
        # client, as Prefect's own engine shares one with its task-runner threads.
        AsyncClientContext.__var__.set(async_clients)
        SyncClientContext.__var__.set(sync_clients)
        return await coro

    async def _shared_clients(self) -> tuple[AsyncClientContext, SyncClientContext]:
        """The open clients; opened on first use (not at install: commands that never
        run a flow must not need the API) and again after a failed opening."""
        if self._clients is None or (self._clients.done() and self._clients.exception()):
            self._clients = self._loop.create_future()
            self._keeper = asyncio.create_task(self._keep_clients(self._clients))
        return await asyncio.shield(self._clients)

    async def _keep_clients(
        self, ready: asyncio.Future[tuple[AsyncClientContext, SyncClientContext]]
    ) -> None:
        """Hold both client contexts open until close(): entered and exited in this one
        task, as Prefect's context objects require."""
        try:
            async with AsyncClientContext() as async_clients:
                with SyncClientContext() as sync_clients:
                    ready.set_result((async_clients, sync_clients))
                    await self._closing.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("action=close_prefect_clients_failed error=%s", describe_error(exc))

    async def _close_clients(self) -> None:
        self._closing.set()
        if self._keeper is not None:
            await self._keeper


def _for_engine(flow_run: FlowRun) -> FlowRun:
    """The flow run as the engine is given it: without its deployment. For a deployment's
    run the engine starts a thread with its own event loop and a websocket to watch for
    a suspension, and blocks the calling loop until that thread is ready and again
    until it has joined: about 0.3 s per job, on the loop every flow of this worker
    shares. Suspending (pause and exit for a Prefect worker to resume) is no part of a
    scheduler job; the run on the server keeps its deployment."""
    return flow_run.model_copy(update={"deployment_id": None})


async def _read_run(client: PrefectClient, flow_run_id: str | None) -> FlowRun | None:
    if flow_run_id is None:
        return None
    try:
        return await client.read_flow_run(UUID(flow_run_id))
    except ObjectNotFound:  # deleted in Prefect: the job gets a new one
        return None


def _record_external_id(ctx: ExecutionContext, flow_run_id: str) -> str | None:
    """Make `flow_run_id` the job's flow run; the one it had before, if any."""
    if ctx.callbacks is None or ctx.job.job_id is None:
        return None
    return ctx.callbacks.set_external_id(ctx.job.job_id, flow_run_id)


async def _outcome_of(state: Any) -> Outcome:
    if state.is_completed():
        return outcome_from_result(await state.result())
    result = await state.result(raise_on_failure=False)
    if isinstance(result, BaseException) and prefect_faults.is_api_fault(result):
        return faults.interrupted(prefect_faults.DEPENDENCY, describe_error(result))
    if isinstance(result, BaseException):
        return failed(describe_error(result))
    return failed(f"flow run ended {state.type.value}: {state.message or 'no message'}")


def _lease_recorder(ctx: ExecutionContext) -> Any:
    """Keep the run's Prefect concurrency lease in our database while it is held."""
    callbacks, run_id = ctx.callbacks, ctx.run.run_id
    held: list[str] = []

    def on_lease(name: str, lease_id: UUID | None) -> None:
        if callbacks is None or run_id is None:
            return
        if lease_id is not None:
            held.append(str(lease_id))
            callbacks.record_lease(run_id, name=name, lease_id=str(lease_id))
        elif held:
            callbacks.clear_lease(run_id, held.pop())

    return on_lease


def register_flow(
    svc: SchedulerService, job_type: str, flow: Flow[..., Any], *, resource: ResourceRule
) -> JobType:
    """Register a flow as a job type; its signature validates params at enqueue time."""
    return svc.register(job_type, flow, resource=resource, validate=flow.validate_parameters)


def install_prefect(svc: SchedulerService) -> PrefectExecutor:
    """Run this service's jobs as Prefect flow runs, keep Prefect in step (flow runs for
    queued jobs, events), and clean up after crashed ones."""
    from flows.prefect_sync import PrefectSync

    executor = PrefectExecutor()
    svc.executor = executor
    executor.sync = PrefectSync(svc, executor)
    svc.add_plugin(executor.sync)
    svc.add_plugin(CrashCleanup(svc, executor))
    return executor


class CrashCleanup(Plugin):
    """After recovery closed a dead worker's run: release its Prefect concurrency leases
    now (not at their expiry) and mark its flow run Crashed."""

    def __init__(self, svc: SchedulerService, executor: PrefectExecutor) -> None:
        self.svc = svc
        self.executor = executor

    def on_recovered(self, claim: Claim, finish: Finish) -> None:
        self.executor.run(_after_crash(self.svc, claim, finish))


async def _after_crash(svc: SchedulerService, claim: Claim, finish: Finish) -> None:
    run = finish.run
    run_id = claim.run.run_id or 0
    leases = await asyncio.to_thread(svc.runs.leases_of, run_id)
    async with get_client() as client:
        for _name, lease_id in leases:
            try:
                await client.release_concurrency_slots_with_lease(lease_id=UUID(lease_id))
                log.warning("action=release_lease run_id=%s lease_id=%s", run_id, lease_id)
                await asyncio.to_thread(svc.runs.clear_lease, run_id, lease_id)
            except Exception as exc:
                log.warning("action=release_lease_failed lease_id=%s error=%s", lease_id, exc)
        flow_run_id = run.flow_run_id
        if flow_run_id:
            try:
                flow_run = await client.read_flow_run(UUID(flow_run_id))
            except ObjectNotFound:
                return
            if flow_run.state is not None and not flow_run.state.is_final():
                await client.set_flow_run_state(
                    UUID(flow_run_id), Crashed(message=run.error or "worker died"), force=True
                )
                log.warning("action=mark_crashed flow_run_id=%s", flow_run_id)
