"""Crash recovery: `recover()` with a full queue and orphaned RUNNING jobs.

The orphans are real: a worker process (`start(concurrency=orphans)`, handlers that
never return) claims them, then gets SIGKILLed, leaving RUNNING jobs of a worker row
whose pid is dead. The timed call is a fresh service's `recover()`, which fails them
and queues their retries.

Child: `python -m bench.recovery URL HOME READY SLOTS`
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from bench.backends import fill
from bench.config import Context
from bench.measure import Goal, Result, alternate, compare, spawn, wait_until
from scheduler_core import JobStatus, SchedulerService


def child(url: str, home: Path, ready: Path, slots: int) -> None:
    never = threading.Event()

    def hang(params: dict[str, object]) -> None:
        never.wait()

    svc = SchedulerService.open(url, home=home, retry_backoff_seconds=0)
    svc.register("noop", hang)
    svc.start(concurrency=slots)
    wait_until(lambda: svc.running_count == slots, timeout=120, what="the jobs to start")
    ready.touch()
    never.wait()  # until SIGKILL


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    with ctx.backend.database() as db:
        svc = db.open_service()
        svc.register("noop", lambda params: None)
        round_ = 0

        def recover_seconds() -> float:
            nonlocal round_
            round_ += 1
            queued = len(svc.list_jobs(JobStatus.QUEUED))
            fill(svc, s.recovery_queued + s.orphans - queued)
            ready = db.home / f"ready-{round_}"
            worker = spawn("bench.recovery", db.url, db.home, ready, s.orphans)
            try:
                wait_until(ready.exists, timeout=120, what="the doomed worker to claim its jobs")
            finally:
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait()
            start = time.perf_counter()
            report = svc.recover()
            elapsed = time.perf_counter() - start
            if report.running_jobs_recovered != s.orphans:
                raise AssertionError(f"recovered {report.running_jobs_recovered} of {s.orphans}")
            return elapsed

        ctx.say(f"filling {s.recovery_queued:,} queued jobs")
        (seconds,) = alternate(ctx.rounds, [recover_seconds])
    return [
        compare(
            f"crash recovery, {s.recovery_queued:,} queued + {s.orphans} orphaned RUNNING, s",
            ctx.backend.name,
            "s",
            seconds,
            goal=Goal("< 1 s", 1.0, at_least=False),
            note="worker SIGKILLed; every orphan failed and retried",
        )
    ]


if __name__ == "__main__":
    child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
