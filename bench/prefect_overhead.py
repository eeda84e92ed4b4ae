"""Per-job overhead of running jobs as Prefect flow runs, against a bare flow call.

All sides run the same no-op async flow against the bench's Prefect server, in one
process, alternating: the bare side awaits the flow directly on an event loop of its
own, as a user's script would (Prefect then builds its HTTP clients per flow run);
our side queues jobs and runs each with `dispatch_one()` through the PrefectExecutor
(flow run created with the job's name and tags, its id stored on the JobRun, outcome
recorded), whose loop keeps one client for all runs. A third side, informational,
awaits the bare flow inside one long-lived client context too: against it, our
figure is the scheduler's own per-job cost, without the client reuse it gains.
"""

from __future__ import annotations

import asyncio
import time

from prefect import flow
from prefect.context import AsyncClientContext, SyncClientContext

from bench.config import Context
from bench.measure import Goal, Result, alternate, compare, per_call_ms
from flows.executor import install_prefect, register_flow


@flow(name="bench-noop", persist_result=False)
async def noop(i: int = 0) -> list[str]:
    return []


def run(ctx: Context) -> list[Result]:
    n = ctx.sizes.prefect_jobs
    ctx.prefect.url()
    bare_loop = asyncio.new_event_loop()  # not the executor's: its clients are ours
    with ctx.backend.database() as db:
        svc = db.open_service()
        install_prefect(svc)
        register_flow(svc, "noop", noop, resource="local")

        async def bare_calls() -> None:
            for i in range(n):
                await noop(i)

        async def bare_calls_one_client() -> float:
            """ms per call; opening the clients is not timed (ours opens at warm-up)."""
            async with AsyncClientContext():
                with SyncClientContext():
                    start = time.perf_counter()
                    await bare_calls()
                    return (time.perf_counter() - start) * 1000 / n

        def dispatch_all(jobs: int = n) -> None:
            for _ in range(jobs):
                if svc.dispatch_one() is None:
                    raise AssertionError("dispatch_one found no queued job")

        def bare() -> float:
            return per_call_ms(n, lambda: bare_loop.run_until_complete(bare_calls()))

        def bare_one_client() -> float:
            return bare_loop.run_until_complete(bare_calls_one_client())

        def ours() -> float:
            svc.enqueue_jobs([{"job_type": "noop", "params": {"i": i}} for i in range(n)])
            return per_call_ms(n, dispatch_all)

        # Warm-up of every side: connections, flow registration, the executor's clients.
        bare_loop.run_until_complete(noop())
        svc.enqueue_job("noop")
        dispatch_all(1)
        try:
            plain, shared, scheduled = alternate(ctx.rounds, [bare, bare_one_client, ours])
        finally:
            bare_loop.close()
    return [
        compare(
            "Prefect executor, no-op async flow, ms/job",
            ctx.backend.name,
            "ms",
            scheduled,
            plain,
            baseline_label="bare async flow call, same server and process",
            goal=Goal("<= 1.2x", 1.2, at_least=False, on_ratio=True),
        ),
        compare(
            "Prefect executor against a bare flow sharing one client (informational), ms/job",
            ctx.backend.name,
            "ms",
            scheduled,
            shared,
            baseline_label="bare async flow calls inside one Async+SyncClientContext",
            note="the scheduler's own cost per job (claim, flow run creation, JobRun link, "
            "finish) once both sides reuse one Prefect client",
        ),
    ]
