"""A direct-execution caller that reserves the next slot and then vanishes when killed.

`python -m tests.scheduler.reservation_holder URL --ttl SECONDS` opens the service,
reserves, prints `{"reservation_id": ..., "worker_id": ...}` and waits until a test
SIGKILLs it. While it lives, its heartbeat keeps extending the reservation.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from scheduler_core import SchedulerService


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--ttl", type=float, default=1.0)
    args = parser.parse_args()
    svc = SchedulerService.open(
        args.url,
        reservation_ttl=args.ttl,
        heartbeat_interval=min(0.2, args.ttl / 4),
        db_retry_seconds=10,
    )
    reservation = svc.reserve_next_slot("reservation_holder")
    print(
        json.dumps({"reservation_id": reservation.reservation_id, "worker_id": svc.worker_id}),
        flush=True,
    )
    threading.Event().wait()  # until the test kills this process
    return 0


if __name__ == "__main__":
    sys.exit(main())
