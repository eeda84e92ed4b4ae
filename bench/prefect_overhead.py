"""Per-job overhead of the Prefect executor against a bare async Prefect flow call.

    python -m bench.prefect_overhead [--jobs 30] [--repeat 3]

Both sides run the same no-op async flow against the same Prefect API (the one in
PREFECT_API_URL, or a temporary local server), alternating, in one process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from prefect import flow

from flows.executor import install_prefect, register_flow
from scheduler_core import SchedulerService


@flow(name="bench-noop", persist_result=False)
async def noop(i: int = 0) -> list[str]:
    return []


def bare_calls(executor_run, jobs: int) -> float:  # type: ignore[no-untyped-def]
    async def calls() -> None:
        for i in range(jobs):
            await noop(i)

    start = time.perf_counter()
    executor_run(calls())
    return (time.perf_counter() - start) / jobs


def scheduled_jobs(svc: SchedulerService, jobs: int) -> float:
    svc.enqueue_jobs([{"job_type": "noop", "params": {"i": i}} for i in range(jobs)])
    start = time.perf_counter()
    for _ in range(jobs):
        assert svc.dispatch_one() is not None
    return (time.perf_counter() - start) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        svc = SchedulerService.open(f"sqlite:///{Path(tmp) / 'jobs.db'}", home=Path(tmp))
        executor = install_prefect(svc)
        register_flow(svc, "noop", noop, resource="local")
        executor.run(noop())  # warm up: server, flow registration
        bare, ours = [], []
        for _ in range(args.repeat):
            bare.append(bare_calls(executor.run, args.jobs))
            ours.append(scheduled_jobs(svc, args.jobs))
        svc.close()
    b, o = statistics.median(bare), statistics.median(ours)
    print(
        f"bare async flow call : {b * 1000:7.1f} ms/job  (runs: {[round(x * 1000) for x in bare]})"
    )
    print(
        f"through the scheduler: {o * 1000:7.1f} ms/job  (runs: {[round(x * 1000) for x in ours]})"
    )
    print(f"ratio                : {o / b:7.2f}x")


if __name__ == "__main__":
    main()
