"""The Prefect executor: every job execution is one Prefect flow run.

The flow run is created first (named after the job, tagged with its ids), its id is
stored on the JobRun, then the flow runs on this executor's event loop. Async flows
take the engine's async path; a synchronous flow call costs about a second more per
job (it joins a heartbeat thread), so pipelines here are `async def`.

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
from collections.abc import Coroutine
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import FlowRunCreate, GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.exceptions import ObjectNotFound
from prefect.flow_engine import run_flow_async, run_flow_sync
from prefect.states import Crashed, Failed, Pending, to_state_create

from flows import prefect_faults
from flows.guard import OLLAMA_LIMIT, lease_listener
from scheduler_core.deadlines import deadline_error
from scheduler_core.errors import ConfigurationError, JobInterrupted
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
from scheduler_core.values import Claim, Finish, Outcome

log = logging.getLogger("flows.executor")
T = TypeVar("T")

PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
SIGNAL_CHECK_SECONDS = 0.25


def flow_run_name(ctx: ExecutionContext) -> str:
    return f"{ctx.job.job_type}-job-{ctx.job.job_id}-attempt-{ctx.job.attempt}"


def flow_run_tags(ctx: ExecutionContext) -> list[str]:
    """Tags that let the Prefect UI filter runs by job, type, attempt, chain and group."""
    job = ctx.job
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
        tags.append(f"group:{job.group_id}")
    return tags


class PrefectExecutor:
    """Runs Prefect flows registered as job handlers; plain callables run as before."""

    def __init__(self) -> None:
        self._fallback = CallableExecutor()
        self.zombies = prefect_faults.Zombies()
        self._lock = threading.Lock()
        self._in_flight: set[concurrent.futures.Future[Any]] = set()
        self._interrupting = False
        self._named: dict[int, Flow[..., Any]] = {}
        self._flow_ids: dict[str, UUID] = {}  # by flow name, as the server keys flows
        self._loop = asyncio.new_event_loop()
        self._clients: asyncio.Future[tuple[AsyncClientContext, SyncClientContext]] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="llmsched-prefect-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the executor's loop from any thread and wait for it; Prefect
        calls made in it use the executor's clients. If the waiting thread is interrupted
        (Ctrl-C, a deadline), the coroutine is cancelled too: it never runs on unseen."""
        future = asyncio.run_coroutine_threadsafe(self._with_clients(coro), self._loop)
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
            if self._interrupting:
                raise JobInterrupted("the executor was interrupted") from None
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            with self._lock:
                self._in_flight.discard(future)

    def interrupt(self) -> None:
        """The worker is stopping before its jobs ended: cancel every running flow (its
        job is handed back to the queue)."""
        self._interrupting = True
        with self._lock:
            running = list(self._in_flight)
        for future in running:
            future.cancel()

    def close(self) -> None:
        """Close the clients on the loop that opened them, then stop the loop."""
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_clients(), self._loop).result(timeout=30)
        except Exception as exc:
            log.warning("action=close_prefect_clients_failed error=%s", describe_error(exc))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def execute(self, job_type: JobType, ctx: ExecutionContext) -> Outcome:
        if not isinstance(job_type.handler, Flow):
            return self._fallback.execute(job_type, ctx)
        flow: Flow[..., Any] = job_type.handler
        with run_log(ctx, loggers=PREFECT_RUN_LOGGERS) as run_logger:
            try:
                if asyncio.iscoroutinefunction(flow.fn):
                    outcome = self.run(self._run_async(flow, ctx, run_logger))
                else:
                    outcome = self._run_sync(flow, ctx, run_logger)
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
        self, flow: Flow[..., Any], ctx: ExecutionContext, run_logger: RunLog
    ) -> Outcome:
        """Create, record and run the flow run in one visit to the loop (each visit from
        the worker thread is a cross-thread hand-off)."""
        flow_run = await self._create_flow_run(flow, ctx)
        if ctx.callbacks is not None and ctx.run.run_id is not None:
            await asyncio.to_thread(ctx.callbacks.attach_flow_run, ctx.run.run_id, str(flow_run.id))
        run_logger.follow_flow_run(str(flow_run.id))
        lease_listener.set(_lease_recorder(ctx))  # this task's own context: no reset needed
        try:
            async with asyncio.timeout(ctx.timeout_seconds):
                state = await run_flow_async(
                    self._job_named(flow),
                    flow_run=flow_run,
                    parameters=dict(ctx.job.params),
                    return_type="state",
                )
            outcome = await _outcome_of(state)
        except TimeoutError:
            return await self._past_deadline(flow_run.id, ctx.timeout_seconds or 0)
        except Exception as exc:
            if not prefect_faults.is_api_fault(exc):
                raise
            outcome = faults.interrupted(prefect_faults.DEPENDENCY, describe_error(exc))
        if faults.requeues(outcome):
            self.zombies.add(flow_run.id)
        return outcome

    async def _past_deadline(self, flow_run_id: UUID, seconds: float) -> Outcome:
        """The flow was cancelled at the job's deadline: its flow run ends Failed."""
        message = deadline_error(seconds)
        try:
            async with get_client() as client:
                await client.set_flow_run_state(flow_run_id, Failed(message=message), force=True)
        except Exception:
            self.zombies.add(flow_run_id)
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

    def _run_sync(self, flow: Flow[..., Any], ctx: ExecutionContext, run_logger: RunLog) -> Outcome:
        flow_run = self.run(self._create_flow_run(flow, ctx))
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
                flow_run=flow_run,
                parameters=dict(ctx.job.params),
                return_type="state",
            )
        finally:
            SyncClientContext.__var__.reset(tokens[1])
            lease_listener.reset(tokens[0])
        return self.run(_outcome_of(state))

    async def _create_flow_run(self, flow: Flow[..., Any], ctx: ExecutionContext) -> FlowRun:
        """Create the job's flow run: one API call once the flow's id is known (Prefect's
        `create_flow_run` upserts the flow first, one more server write per run)."""
        name, tags = flow_run_name(ctx), flow_run_tags(ctx)
        parameters = flow.serialize_parameters(dict(ctx.job.params))
        async with get_client() as client:
            flow_id = self._flow_ids.get(flow.name)
            if flow_id is not None:
                try:
                    return await _create_run_of_flow(
                        client, flow_id, flow, name=name, parameters=parameters, tags=tags
                    )
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code not in (404, 409):
                        raise
                    del self._flow_ids[flow.name]  # deleted on the server: upsert it again
            flow_run = await client.create_flow_run(
                flow, name=name, parameters=parameters, tags=tags
            )
        self._flow_ids[flow.name] = flow_run.flow_id
        return flow_run

    # ------------------------------------------------------------------ shared clients

    async def _with_clients(self, coro: Coroutine[Any, Any, T]) -> T:
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


async def _create_run_of_flow(
    client: PrefectClient,
    flow_id: UUID,
    flow: Flow[..., Any],
    *,
    name: str,
    parameters: dict[str, Any],
    tags: list[str],
) -> FlowRun:
    """What `PrefectClient.create_flow_run` sends after its flow upsert, for a known flow."""
    create = FlowRunCreate(
        flow_id=flow_id,
        flow_version=flow.version,
        name=name,
        parameters=parameters,
        context={},
        tags=tags,
        state=to_state_create(Pending()),
        empirical_policy=FlowRunPolicy(
            retries=flow.retries, retry_delay=int(flow.retry_delay_seconds or 0)
        ),
    )
    response = await client.request(
        "POST", "/flow_runs/", json=create.model_dump(mode="json", exclude_unset=True)
    )
    flow_run = FlowRun.model_validate(response.json())
    flow_run.parameters = parameters
    return flow_run


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

    def on_lease(lease_id: UUID | None) -> None:
        if callbacks is None or run_id is None:
            return
        if lease_id is not None:
            held.append(str(lease_id))
            callbacks.record_lease(run_id, name=OLLAMA_LIMIT, lease_id=str(lease_id))
        elif held:
            callbacks.clear_lease(run_id, held.pop())

    return on_lease


def register_flow(
    svc: SchedulerService, job_type: str, flow: Flow[..., Any], *, resource: ResourceRule
) -> JobType:
    """Register a flow as a job type; its signature validates params at enqueue time."""
    return svc.register(job_type, flow, resource=resource, validate=flow.validate_parameters)


def install_prefect(svc: SchedulerService) -> PrefectExecutor:
    """Run this service's jobs as Prefect flow runs, and clean up after crashed ones."""
    executor = PrefectExecutor()
    svc.executor = executor
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


async def ensure_ollama_limit() -> None:
    """Create the `ollama` global concurrency limit (1) or check that it is 1 and active."""
    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(OLLAMA_LIMIT)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=OLLAMA_LIMIT, limit=1)
            )
            log.info("action=create_limit name=%s limit=1", OLLAMA_LIMIT)
            return
    if limit.limit != 1 or not limit.active:
        raise ConfigurationError(
            f"the Prefect concurrency limit {OLLAMA_LIMIT!r} has limit {limit.limit} "
            f"(active={limit.active}); only one local Ollama workload may run: "
            f"`prefect gcl update {OLLAMA_LIMIT} --limit 1 --enable`"
        )
