"""A worker process running "llm" jobs whose resource follows the model:
`python -m tests.scheduler.llm_worker_process URL [--concurrency N]`.

A job with `"hold_until": PATH` in its params runs until that file exists, so a test
decides when it ends from outside the process. Runs until killed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scheduler_core import SchedulerService
from tests.scheduler.rules_support import register_llm


def hold(params: dict[str, Any]) -> list[str]:
    gate = params.get("hold_until")
    if gate:
        deadline = time.monotonic() + 60
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{gate} never appeared")
            time.sleep(0.01)
    return []


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    svc = SchedulerService.open(args.url, retry_backoff_seconds=0, heartbeat_interval=0.2)
    register_llm(svc, hold)
    svc.start(concurrency=args.concurrency)
    print("ready", flush=True)
    threading.Event().wait()  # until the test kills this process
    return 0


if __name__ == "__main__":
    sys.exit(main())
