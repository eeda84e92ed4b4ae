"""A worker process with webhooks: `python -m tests.webhooks.worker_process URL [options]`.

It dispatches "noop" jobs (params: {"sleep": seconds}) with the outbox hooks installed,
sending events only with --deliver; it prints "drained" once the queue is empty, and
with --serve keeps going until the test SIGKILLs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from scheduler_core import SchedulerService
from scheduler_core.webhooks import install_webhooks
from tests.webhooks.support import FAST, LOCAL_RECEIVERS


def noop(params: dict[str, Any]) -> list[str]:
    time.sleep(float(params.get("sleep", 0)))
    return []


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--deliver", action="store_true", help="start the webhook sender")
    parser.add_argument("--serve", action="store_true", help="dispatch until killed")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--webhook-settings", default="{}", help="JSON WebhookSettings overrides")
    args = parser.parse_args()
    svc = SchedulerService.open(args.url, retry_backoff_seconds=0, heartbeat_interval=0.2)
    svc.register("noop", noop, resource="external")
    dispatcher = install_webhooks(
        svc, **{**FAST, **LOCAL_RECEIVERS, **json.loads(args.webhook_settings)}
    )
    if args.deliver:
        dispatcher.start()
    if args.serve:
        svc.start(concurrency=args.slots)
        threading.Event().wait()  # until the test kills this process
    while svc.dispatch_one() is not None:
        pass
    print("drained", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
