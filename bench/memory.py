"""Worker memory: RSS after many no-op jobs through the worker loop against after a few.

Each round is a fresh process (so nothing the bench itself loaded counts) on a fresh
database: it runs jobs through `start(concurrency=2)` and reads its RSS at each
checkpoint (e.g. after 100, 1,000, 5,000 and 10,000 jobs in all). The row compares
the last checkpoint with the first; flat means a ratio at or below 1.10. The middle
checkpoints tell warm-up (growth that stops) from a leak (growth that goes on).

Child: `python -m bench.memory URL HOME OUT CHECKPOINT...`
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import psutil

from bench.backends import fill
from bench.config import Context
from bench.measure import Goal, Result, compare, spawn
from scheduler_core import JobStatus, SchedulerService

MB = 1024 * 1024


def child(url: str, home: Path, out: Path, checkpoints: list[int]) -> None:
    svc = SchedulerService.open(url, home=home, retry_backoff_seconds=0)
    svc.register("noop", lambda params: None)
    svc.start(concurrency=2)
    rss, done = [], 0
    for checkpoint in checkpoints:
        fill(svc, checkpoint - done)
        done = checkpoint
        while svc.list_jobs(JobStatus.QUEUED, limit=1) or svc.running_count:
            svc.signal.wait(svc.signal.version, 0.1)
        rss.append(psutil.Process().memory_info().rss / MB)
    svc.stop()
    svc.close()
    out.write_text(json.dumps(rss))


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    checkpoints = sorted({s.memory_small, s.memory_big // 10, s.memory_big // 2, s.memory_big})
    checkpoints = [c for c in checkpoints if c >= s.memory_small]

    def one_process() -> list[float]:
        with ctx.backend.database() as db:
            out = db.home / "rss.json"
            if spawn("bench.memory", db.url, db.home, out, *checkpoints).wait():
                raise RuntimeError("the memory worker process failed")
            rss: list[float] = json.loads(out.read_text())
        return rss

    rounds = [one_process() for _ in range(ctx.rounds)]
    medians = [statistics.median(r[i] for r in rounds) for i in range(len(checkpoints))]
    curve = ", ".join(f"{c:,}: {m:.1f}" for c, m in zip(checkpoints, medians, strict=True))
    return [
        compare(
            f"worker RSS after {s.memory_big:,} no-op jobs, MB",
            ctx.backend.name,
            "MB",
            [r[-1] for r in rounds],
            [r[0] for r in rounds],
            baseline_label=f"after {s.memory_small:,} jobs",
            goal=Goal("flat: <= 1.10x", 1.10, at_least=False, on_ratio=True),
            note=f"median RSS by jobs done: {curve} MB",
            details={"checkpoints": checkpoints, "rss_mb": rounds},
        )
    ]


if __name__ == "__main__":
    child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), [int(a) for a in sys.argv[4:]])
