"""The worker loop keeps nothing per job: once warm, running more jobs adds no Python
memory, no objects and no threads. RSS is too noisy for a test (allocator
fragmentation, see docs/benchmarks.md); Python's own accounting is exact."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from bench.memory import Handled
from scheduler_core import JobStatus, SchedulerService

WARM_UP = 200
MEASURED = 3000
SLOTS = 2


def _run(svc: SchedulerService, handler: Handled, n: int) -> None:
    """Queue n jobs (batches of 100, the same before and after the snapshot) and drain."""
    target = handler.count + n
    for _ in range(n // 100):
        svc.enqueue_jobs([{"job_type": "noop"}] * 100)
    while True:
        seen = svc.signal.version
        if handler.count >= target and not svc.running_count:
            return
        assert svc.signal.wait(seen, 30), f"{handler.count} of {target} jobs ran"


# What each job creates; none of it may outlive its job. (Counting every object would
# also count bounded churn, e.g. sqlite3 keeps up to 200 dead cursor weakrefs per
# connection before it prunes them.) Threads count when they are ours: other libraries'
# background workers (Prefect's, from earlier tests in the session) come and go. A
# kept Future would show in the traced bytes.
PER_JOB = {
    "Job",
    "JobRun",
    "Claim",
    "Finish",
    "Outcome",
    "ExecutionContext",
    "RunLog",
    "LogRecord",
    "TextIOWrapper",
    "Thread",
}


def _ours(thread: threading.Thread) -> bool:
    return thread.name.startswith("llmsched")


def _objects() -> Counter[str]:
    return Counter(
        name
        for o in gc.get_objects()
        if (name := type(o).__name__) in PER_JOB
        and (not isinstance(o, threading.Thread) or _ours(o))
    )


def _traced_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> list[Any]:
    # pathlib interns each new path on Python 3.11; the interned-string table that holds
    # them resizes once (about 1 MB), which is not per-job state. psycopg keeps bounded
    # caches of query texts and prepared statements per connection, and the pool's
    # connections warm up at different times.
    ignore = [
        tracemalloc.Filter(False, "*/pathlib.py"),
        tracemalloc.Filter(False, "*/psycopg/*"),
        tracemalloc.Filter(False, __file__),
    ]
    return after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")


@pytest.mark.slow
@pytest.mark.serial  # counts this process's memory: alone, not beside other tests
def test_worker_loop_keeps_no_state_per_job(open_service: Callable[..., SchedulerService]) -> None:
    # Frequent recovery passes (and heartbeats, see TEST_SETTINGS): their periodic
    # paths run many times inside the measured window too.
    svc = open_service(recovery_interval=0.1)
    handler = Handled()
    svc.register("noop", handler)
    svc.start(concurrency=SLOTS)
    tracemalloc.start()
    try:
        # Warm: every statement compiled, every thread started, every connection open.
        _run(svc, handler, WARM_UP)
        gc.collect()
        # Objects are counted before a snapshot exists: a snapshot is made of objects.
        objects, threads = _objects(), set(filter(_ours, threading.enumerate()))
        before = tracemalloc.take_snapshot()
        _run(svc, handler, MEASURED)
        gc.collect()
        new_objects = _objects()
        new_objects.subtract(objects)
        after = tracemalloc.take_snapshot()
        grown = _traced_growth(before, after)
        assert set(filter(_ours, threading.enumerate())) == threads
    finally:
        tracemalloc.stop()
        svc.stop(timeout=10)
    # A leak keeps one per job (thousands); what a thread still holds from its last job
    # until its next pass (a slot's claim, a cancel check's job) is at most one per slot.
    kept = +new_objects
    assert all(n <= SLOTS for n in kept.values()), f"objects kept after {MEASURED} jobs: {kept}"
    total = sum(s.size_diff for s in grown)
    top = "\n".join(str(s) for s in grown[:5])
    # Under 50 bytes a job. What remains is bounded churn: sqlite3 prunes its list of
    # dead cursor weakrefs only every 200 cursors per connection (up to ~16 KB each).
    assert total < 50 * MEASURED, f"{total / 1024:.0f} KiB more after {MEASURED} jobs:\n{top}"
    assert not svc.list_jobs(JobStatus.QUEUED, limit=1)
