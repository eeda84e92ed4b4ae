"""The Ollama handoff: idle time between one Ollama job ending and the next one starting.

Ours runs through the real worker loop (`start(concurrency=2)`), so the free second
slot must not let a second `ollama` job start; the gap is measured for:
- plain jobs: JobRun finished_at -> next JobRun started_at;
- Prefect flow jobs through the PrefectExecutor, each a flow holding `ollama_slot()`:
  the same JobRun gap (the next job's start is when its flow run gets created), and,
  informational, the end of one flow's `ollama_slot()` body -> the start of the next
  one's, which adds the next flow run's start-up (the "Prefect executor" row's cost).
The baseline is Prefect alone: several flows waiting on `concurrency("ollama")` at once,
end of one holder's body -> start of the next holder's body.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from contextlib import AbstractAsyncContextManager

from prefect import flow
from prefect.concurrency.asyncio import concurrency

from bench.config import Context
from bench.measure import Goal, Result, alternate, compare, gaps_ms, wait_until
from flows.executor import install_prefect, register_flow
from flows.guard import ensure_ollama_limit, ollama_slot
from flows.ollama_servers import ollama_slot_name
from flows.resources import declare_resources
from scheduler_core import JobStatus, SchedulerService

# (body start, body end) of every slot holder, per side; flows append, rounds clear.
SPANS: dict[str, list[tuple[float, float]]] = {"prefect": [], "guard": []}


async def _hold(slot: AbstractAsyncContextManager[object], side: str, seconds: float) -> None:
    async with slot:
        entered = time.time()
        await asyncio.sleep(seconds)
        SPANS[side].append((entered, time.time()))


@flow(name="bench-prefect-gcl-holder", persist_result=False)
async def prefect_holder(seconds: float) -> None:
    await _hold(concurrency(ollama_slot_name(), occupy=1, strict=True), "prefect", seconds)


@flow(name="bench-ollama-job", persist_result=False)
async def ollama_job(seconds: float) -> None:
    await _hold(ollama_slot(), "guard", seconds)


def _drain(svc: SchedulerService, job_ids: list[int]) -> None:
    def done() -> bool:
        return all(
            svc.get_job(j).status not in (JobStatus.QUEUED, JobStatus.RUNNING) for j in job_ids
        )

    wait_until(done, timeout=300, what="the Ollama jobs")
    failed = [j for j in job_ids if svc.get_job(j).status != JobStatus.COMPLETED]
    if failed:
        raise RuntimeError(f"Ollama jobs {failed} did not complete")


def run(ctx: Context) -> list[Result]:
    n, hold = ctx.sizes.handoff_jobs, ctx.sizes.handoff_hold
    ctx.prefect.url()
    worst: dict[str, float] = {}

    def median_gap(side: str, spans: list[tuple[float, float]]) -> float:
        gaps = gaps_ms(spans)
        worst[side] = max([worst.get(side, 0.0), *gaps])
        return statistics.median(gaps)

    # Prefect alone runs as a user's script would, on a loop of its own: the executor's
    # loop would lend it the executor's long-lived clients.
    alone_loop = asyncio.new_event_loop()
    with ctx.backend.database() as db:
        svc = db.open_service()
        executor = install_prefect(svc)
        declare_resources(svc)  # the app's cap: one `ollama` job at a time per server
        svc.bind_resource("ollama", ollama_slot_name())  # as a worker does
        executor.run(ensure_ollama_limit())
        svc.register("ollama-sleep", lambda p: time.sleep(p["seconds"]), resource="ollama")
        register_flow(svc, "ollama-flow", ollama_job, resource="ollama")
        svc.start(concurrency=2)

        def queued(job_type: str) -> list[int]:
            jobs = [{"job_type": job_type, "params": {"seconds": hold}}] * n
            return [job.job_id or 0 for job in svc.enqueue_jobs(jobs)]

        def prefect_alone() -> float:
            async def several() -> None:
                await asyncio.gather(*(prefect_holder(hold) for _ in range(n)))

            SPANS["prefect"].clear()
            alone_loop.run_until_complete(several())
            return median_gap("prefect", SPANS["prefect"])

        def job_spans(ids: list[int]) -> list[tuple[float, float]]:
            runs = [svc.get_job_run_for_job(j) for j in ids]
            return [
                (r.started_at.timestamp(), r.finished_at.timestamp())
                for r in runs
                if r and r.started_at and r.finished_at
            ]

        def plain_jobs() -> float:
            ids = queued("ollama-sleep")
            _drain(svc, ids)
            return median_gap("jobs", job_spans(ids))

        slot_gaps: list[float] = []  # the flow rounds' second figure

        def flow_jobs() -> float:
            SPANS["guard"].clear()
            ids = queued("ollama-flow")
            _drain(svc, ids)
            slot_gaps.append(median_gap("slots", SPANS["guard"]))
            return median_gap("flows", job_spans(ids))

        try:
            baseline, jobs, flows = alternate(ctx.rounds, [prefect_alone, plain_jobs, flow_jobs])
        finally:
            alone_loop.close()
        svc.stop()
    label = f"Prefect concurrency('{ollama_slot_name()}'), {n} flows waiting"
    goal = Goal("< 50 ms", 50, at_least=False)

    def worst_note(side: str) -> str:
        return f"worst gap {worst[side]:.1f} ms (Prefect alone {worst['prefect']:.0f} ms)"

    return [
        *(
            compare(
                f"Ollama handoff, {what} ({n}/round), ms",
                ctx.backend.name,
                "ms",
                ours,
                baseline,
                baseline_label=label,
                goal=goal,
                note=worst_note(side),
            )
            for ours, side, what in (
                (jobs, "jobs", "worker loop, JobRun end -> next start"),
                (flows, "flows", "flow jobs, JobRun end -> next start"),
            )
        ),
        compare(
            f"Ollama handoff, flow jobs, ollama_slot() body end -> next body start "
            f"(informational, {n}/round), ms",
            ctx.backend.name,
            "ms",
            slot_gaps,
            baseline,
            baseline_label=label,
            note=f"{worst_note('slots')}; includes the lease release, the flow run's end, "
            "and the next flow run's creation, start-up and lease acquisition: the "
            "per-job cost the 'Prefect executor' row measures",
        ),
    ]
