"""DBOS's side: a worker process that launches DBOS and runs the queued workflows.

    python -m bench.peers_dbos SYSTEM_DB_URL SLOTS   (SLOTS 0: create the queues and exit)

Every job is a workflow enqueued by a `DBOSClient` in the parent. The worker registers
(and overwrites) both queues at launch: `bench` with `worker_concurrency=SLOTS`, and
`exclusive` with `global_concurrency=1`, DBOS's limit across every process. Both poll
every 10 ms instead of the default 1 s, since a slot is only filled when its queue is
polled.
"""

from __future__ import annotations

import signal
import sys
import threading

from dbos import DBOS

from bench.peers_common import EXCLUSIVE, recorder

QUEUE = "bench"
POLL = 0.01


@DBOS.workflow(name="noop")
def noop(n: int) -> None:
    recorder().run(n)


@DBOS.workflow(name=EXCLUSIVE)
def exclusive(n: int, seconds: float) -> None:
    recorder().run(n, seconds)


def config(url: str) -> dict[str, object]:
    return {"name": "bench", "system_database_url": url, "run_admin_server": False}


def main(url: str, slots: int) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    DBOS(config=config(url))  # type: ignore[arg-type]
    DBOS.launch()
    DBOS.register_queue(
        QUEUE, worker_concurrency=slots or 1, polling_interval_sec=POLL, on_conflict="always_update"
    )
    DBOS.register_queue(
        EXCLUSIVE,
        global_concurrency=1,
        polling_interval_sec=POLL,
        on_conflict="always_update",
    )
    if slots:
        stop.wait()
    DBOS.destroy(workflow_completion_timeout_sec=10)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
