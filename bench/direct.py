"""Direct execution: how soon a direct job starts once the running job ends.

A job runs in the worker loop (`start(concurrency=1)`, so there is no free slot); while
it runs, the bench's main thread calls `execute_direct`, which must wait for it and then
start at once. The gap is run1.finished_at -> direct.started_at from the JobRun rows.
"""

from __future__ import annotations

import statistics
import time

from bench.config import Context
from bench.measure import Goal, Result, alternate, compare, wait_until
from scheduler_core import JobStatus


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    with ctx.backend.database() as db:
        svc = db.open_service()
        svc.register("hold", lambda p: time.sleep(p["seconds"]))
        svc.register("noop", lambda p: None)
        svc.start(concurrency=1)

        def gap_ms() -> float:
            job = svc.enqueue_job("hold", {"seconds": s.direct_hold})
            job_id = job.job_id or 0
            wait_until(
                lambda: svc.get_job(job_id).status == JobStatus.RUNNING,
                timeout=30,
                what="the running job",
            )
            direct = svc.execute_direct("noop", reserved_by="bench")
            first = svc.get_job_run_for_job(job_id)
            assert first and first.finished_at and direct.started_at
            return (direct.started_at - first.finished_at).total_seconds() * 1000

        def median_gap() -> float:
            return statistics.median(gap_ms() for _ in range(s.direct_samples))

        (gaps,) = alternate(ctx.rounds, [median_gap])
        svc.stop()
    return [
        compare(
            f"direct execution, running job end -> direct start ({s.direct_samples}/round), ms",
            ctx.backend.name,
            "ms",
            gaps,
            goal=Goal("< 50 ms", 50, at_least=False),
            extra_ok=min(gaps) >= 0,
            note="never before the running job ended" if min(gaps) >= 0 else "PREEMPTED",
        )
    ]
