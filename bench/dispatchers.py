"""Several dispatcher processes draining one database: throughput and zero double runs.

Every process runs a `dispatch_one()` loop whose handler records the job ids it ran;
all start on one start line (a file) once imported and connected, and the round's
throughput is jobs / (last process done - start line). Any id recorded twice, or a
queued id nobody ran, fails the row.

Child: `python -m bench.dispatchers URL HOME READY GO OUT`
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.backends import Db, fill
from bench.config import Context
from bench.measure import Goal, Result, compare, spawn, wait_until
from scheduler_core import ExecutionContext, SchedulerService


def child(url: str, home: Path, ready: Path, go: Path, out: Path) -> None:
    ran: list[int] = []

    def record(params: dict[str, Any], ctx: ExecutionContext) -> None:
        ran.append(ctx.job.job_id or 0)

    svc = SchedulerService.open(url, home=home, retry_backoff_seconds=0)
    svc.register("noop", record)
    ready.touch()
    wait_until(go.exists, timeout=120, what="the start line")
    while svc.dispatch_one() is not None:
        pass
    done = time.time()
    svc.close()
    out.write_text(json.dumps({"ran": ran, "done": done}))


def drain_with(
    db: Db, svc: SchedulerService, processes: int, jobs: int, tag: str
) -> dict[str, Any]:
    """Queue `jobs`, drain them with `processes` dispatcher processes; jobs/s and run counts."""
    fill(svc, jobs)
    queued = {job.job_id for job in svc.list_jobs("QUEUED")}
    work = db.home / tag
    work.mkdir()
    go = work / "go"
    files = [(work / f"ready-{i}", work / f"out-{i}.json") for i in range(processes)]
    procs = [spawn("bench.dispatchers", db.url, db.home, ready, go, out) for ready, out in files]
    try:
        wait_until(
            lambda: all(r.exists() for r, _ in files), timeout=120, what="dispatchers to start"
        )
        start = time.time()
        go.touch()
        for proc in procs:
            if proc.wait(timeout=600) != 0:
                raise RuntimeError(f"a dispatcher process exited with {proc.returncode}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    outs = [json.loads(out.read_text()) for _, out in files]
    counts = Counter(job_id for o in outs for job_id in o["ran"])
    return {
        "rate": jobs / (max(o["done"] for o in outs) - start),
        "double_runs": sum(n - 1 for n in counts.values() if n > 1),
        "never_ran": len(queued - set(counts)),
    }


def run(ctx: Context) -> list[Result]:
    s, name = ctx.sizes, ctx.backend.name
    counts = (1, *s.processes)
    rates: dict[int, list[float]] = {n: [] for n in counts}
    doubles = never = 0
    with ctx.backend.database() as db:
        svc = db.open_service()
        svc.register("noop", lambda params: None)
        for round_ in range(ctx.rounds):
            for n in counts:
                ctx.say(f"round {round_ + 1}: {n} dispatcher process(es)")
                figures = drain_with(db, svc, n, s.dispatch_jobs, f"r{round_}-p{n}")
                rates[n].append(figures["rate"])
                doubles += figures["double_runs"]
                never += figures["never_ran"]
    checked = s.dispatch_jobs * len(counts) * ctx.rounds
    note = f"{doubles} double runs, {never} never ran, of {checked:,} jobs"
    return [
        compare(
            f"{n} dispatcher processes, {s.dispatch_jobs:,} jobs, jobs/s",
            name,
            "jobs/s",
            rates[n],
            rates[1],
            baseline_label="1 dispatcher process",
            goal=Goal("> 1x, 0 double runs", 1.0, at_least=True, on_ratio=True),
            extra_ok=doubles == 0 and never == 0,
            note=note,
            details={"double_runs": doubles, "never_ran": never},
        )
        for n in s.processes
    ]


if __name__ == "__main__":
    child(sys.argv[1], Path(sys.argv[2]), *map(Path, sys.argv[3:6]))
