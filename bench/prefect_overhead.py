"""Per-job overhead of running jobs as Prefect flow runs, against a bare flow call.

Both sides run the same no-op async flow against the bench's Prefect server, in one
process, alternating: the bare side awaits the flow directly; our side queues jobs
and runs each with `dispatch_one()` through the PrefectExecutor (flow run created
with the job's name and tags, its id stored on the JobRun, outcome recorded).
"""

from __future__ import annotations

from prefect import flow

from bench.config import Context
from bench.measure import Goal, Result, alternate, compare, per_call_ms
from flows.executor import install_prefect, register_flow


@flow(name="bench-noop", persist_result=False)
async def noop(i: int = 0) -> list[str]:
    return []


def run(ctx: Context) -> list[Result]:
    n = ctx.sizes.prefect_jobs
    ctx.prefect.url()
    with ctx.backend.database() as db:
        svc = db.open_service()
        executor = install_prefect(svc)
        register_flow(svc, "noop", noop, resource="local")

        async def bare_calls() -> None:
            for i in range(n):
                await noop(i)

        def dispatch_all(jobs: int = n) -> None:
            for _ in range(jobs):
                if svc.dispatch_one() is None:
                    raise AssertionError("dispatch_one found no queued job")

        def ours() -> float:
            svc.enqueue_jobs([{"job_type": "noop", "params": {"i": i}} for i in range(n)])
            return per_call_ms(n, dispatch_all)

        executor.run(noop())  # warm-up of both sides: connections, flow registration
        svc.enqueue_job("noop")
        dispatch_all(1)
        bare, scheduled = alternate(
            ctx.rounds, [lambda: per_call_ms(n, lambda: executor.run(bare_calls())), ours]
        )
    return [
        compare(
            "Prefect executor, no-op async flow, ms/job",
            ctx.backend.name,
            "ms",
            scheduled,
            bare,
            baseline_label="bare async flow call, same server and process",
            goal=Goal("<= 1.2x", 1.2, at_least=False, on_ratio=True),
        )
    ]
