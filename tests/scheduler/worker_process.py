"""A real worker process for crash tests: `python -m tests.scheduler.worker_process URL RECORD`.

It registers the E2E handler as job type "e2e", optionally recovers at start, then
dispatches until the queue is empty (or forever with --serve). A test SIGKILLs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from scheduler_core import SchedulerService
from tests.scheduler.handlers import E2EJobHandler, register_e2e


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("record", type=Path)
    parser.add_argument("--recover", action="store_true")
    parser.add_argument("--serve", action="store_true", help="keep dispatching until killed")
    parser.add_argument("--heartbeat-timeout", type=float, default=60.0)
    parser.add_argument("--executor", choices=["callable", "prefect"], default="callable")
    args = parser.parse_args()
    svc = SchedulerService.open(
        args.url,
        retry_backoff_seconds=0,
        heartbeat_interval=0.2,
        heartbeat_timeout=args.heartbeat_timeout,
    )
    register_e2e(svc, E2EJobHandler(args.record), executor=args.executor)
    if args.recover:
        report = svc.recover()
        summary = {"recovered": report.running_jobs_recovered, "retries": report.retries_created}
        print(json.dumps(summary), flush=True)
    if args.serve:
        svc.start(concurrency=1)
        threading.Event().wait()  # until the test kills this process
    while svc.dispatch_one() is not None:
        pass
    svc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
