"""A worker process for the fault tests: `python -m tests.faults.fault_worker URL LOG`.

Its job type "work" appends one line per execution to LOG when it starts and one when
it completes (`start|done <job_id> <attempt> <resource> <t0> [<t1>]`), so the test
can count executions and overlaps; params: {"fail": n (fail the first n attempts;
-1 always), "sleep": seconds, "res": "ollama" | "external"}. SIGTERM drains and exits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from scheduler_core import ExecutionContext, SchedulerService


def main() -> int:
    url, log_path = sys.argv[1], sys.argv[2]
    slots = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    svc = SchedulerService.open(url, retry_backoff_seconds=0.05, heartbeat_interval=1.0)
    lock = threading.Lock()
    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115

    def write(line: str) -> None:
        with lock:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())

    def work(params: dict[str, Any], ctx: ExecutionContext) -> list[str]:
        job = ctx.job
        t0 = time.time()
        write(f"start {job.job_id} {job.attempt} {job.resource} {t0:.6f}")
        time.sleep(float(params.get("sleep", 0.005)))
        fail = int(params.get("fail", 0))
        if fail < 0 or job.attempt <= fail:
            raise RuntimeError(f"injected failure on attempt {job.attempt}")
        write(f"done {job.job_id} {job.attempt} {job.resource} {t0:.6f} {time.time():.6f}")
        return []

    svc.register("work", work, resource=lambda p: str(p.get("res", "external")))
    svc.set_resource_limit("ollama", 1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    svc.start(concurrency=slots)
    print(f"ready {svc.worker_id}", flush=True)
    stop.wait()
    svc.stop(timeout=float(os.environ.get("FAULT_WORKER_DRAIN", "60")), hand_back=True)
    svc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
