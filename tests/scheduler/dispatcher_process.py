"""A dispatcher process for race tests: drains the queue, recording every job it ran.

`python -m tests.scheduler.dispatcher_process URL OUT GO_FILE [--slots N]`
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from scheduler_core import ExecutionContext, JobStatus, SchedulerService


def ready_file(out: Path) -> Path:
    """Where a process says it is open and registered, before it waits at the start line."""
    return out.with_name(out.name + ".ready")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("go", type=Path)
    parser.add_argument("--slots", type=int, default=0, help="0: dispatch_one loop")
    args = parser.parse_args()
    ran: list[int] = []

    def record(params: dict[str, Any], ctx: ExecutionContext) -> None:
        ran.append(ctx.job.job_id or 0)

    svc = SchedulerService.open(args.url, retry_backoff_seconds=0, poll_interval=0.05)
    svc.register("noop", record)
    ready_file(args.out).touch()  # the parent starts the race once both are here
    deadline = time.monotonic() + 30
    while not args.go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)  # start line: both processes begin together
    if args.slots:
        svc.start(concurrency=args.slots)
        while svc.list_jobs(JobStatus.QUEUED, limit=1) or svc.running_count:
            svc.signal.wait(svc.signal.version, 0.1)
        svc.stop(timeout=30)
    else:
        while svc.dispatch_one() is not None:
            pass
    svc.close()
    args.out.write_text("\n".join(map(str, ran)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
