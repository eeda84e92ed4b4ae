"""Worker memory: RSS after many no-op jobs through the worker loop against after a few.

Each round is a fresh process (so nothing the bench itself loaded counts) on a fresh
database: it runs jobs through `start(concurrency=2)` and reads its RSS at each
checkpoint (e.g. after 100, 1,000, 5,000 and 10,000 jobs in all). The row compares
the last checkpoint with the first; flat means a ratio at or below 1.10. The middle
checkpoints tell warm-up (growth that stops) from a leak (growth that goes on).

Only the number of jobs run may differ between checkpoints, so the process does the
same things before the first one as before the last:

- jobs are queued with `enqueue_jobs` in batches as big as the first checkpoint. A
  5,000-job call peaks at about 18 MB (specs, rows and the 5,000 `Job`s it returns);
  once freed it still leaves 6-8 MB of allocator fragmentation (more on PostgreSQL),
  which a first checkpoint of one 100-job call never had. That depends on the batch
  size, not on the jobs run, so it is kept out of this row.
- the main thread learns that a checkpoint's jobs are done from a counter the handler
  bumps, not from queue reads: a worker process does no such reads of its own.

Child: `python -m bench.memory URL HOME OUT CHECKPOINT...`
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

import psutil

from bench.backends import fill
from bench.config import Context
from bench.measure import Goal, Result, compare, spawn
from scheduler_core import JobStatus, SchedulerService

MB = 1024 * 1024


class Handled:
    """A no-op handler that counts its calls, so waiting for a batch reads no database."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any]) -> None:
        with self._lock:
            self.count += 1


def child(url: str, home: Path, out: Path, checkpoints: list[int]) -> None:
    svc = SchedulerService.open(url, home=home, retry_backoff_seconds=0)
    handled = Handled()
    svc.register("noop", handled)
    svc.start(concurrency=2)
    me = psutil.Process()
    rss: list[float] = []
    threads: list[int] = []
    done = 0
    for checkpoint in checkpoints:
        fill(svc, checkpoint - done, batch=checkpoints[0])
        done = checkpoint
        # A job's slot is given back after its finish is committed, then the signal fires.
        while True:
            seen = svc.signal.version
            if handled.count >= done and not svc.running_count:
                break
            svc.signal.wait(seen, 0.1)
        rss.append(me.memory_info().rss / MB)
        threads.append(me.num_threads())
    if svc.list_jobs(JobStatus.QUEUED, limit=1) or handled.count != done:
        raise RuntimeError(f"{handled.count} jobs ran of {done} queued")
    svc.stop()
    svc.close()
    out.write_text(json.dumps({"rss": rss, "threads": threads}))


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    checkpoints = sorted({s.memory_small, s.memory_big // 10, s.memory_big // 2, s.memory_big})
    checkpoints = [c for c in checkpoints if c >= s.memory_small]

    def one_process() -> dict[str, Any]:
        with ctx.backend.database() as db:
            out = db.home / "rss.json"
            if spawn("bench.memory", db.url, db.home, out, *checkpoints).wait():
                raise RuntimeError("the memory worker process failed")
            figures: dict[str, Any] = json.loads(out.read_text())
        return figures

    rounds = [one_process() for _ in range(ctx.rounds)]
    rss: list[list[float]] = [r["rss"] for r in rounds]
    medians = [statistics.median(r[i] for r in rss) for i in range(len(checkpoints))]
    curve = ", ".join(f"{c:,}: {m:.1f}" for c, m in zip(checkpoints, medians, strict=True))
    threads = sorted({n for r in rounds for n in r["threads"]})
    return [
        compare(
            f"worker RSS after {s.memory_big:,} no-op jobs, MB",
            ctx.backend.name,
            "MB",
            [r[-1] for r in rss],
            [r[0] for r in rss],
            baseline_label=f"after {s.memory_small:,} jobs",
            goal=Goal("flat: <= 1.10x", 1.10, at_least=False, on_ratio=True),
            note=f"median RSS by jobs done: {curve} MB; threads: {threads}",
            details={
                "checkpoints": checkpoints,
                "rss_mb": rss,
                "threads": [r["threads"] for r in rounds],
            },
        )
    ]


if __name__ == "__main__":
    child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), [int(a) for a in sys.argv[4:]])
