"""The worker process: the scheduler loop with Prefect-run pipelines, until a signal.

SIGTERM or SIGINT stops dispatch and lets running jobs finish for the drain timeout
(a second signal stops waiting); jobs still running then go back to the queue, their
attempt not counted, for another worker. Recovery of crashed workers' jobs runs at
start and periodically.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from prefect.settings import PREFECT_API_URL

from flows.control import PrefectControl
from flows.guard import ensure_ollama_limit
from flows.pipelines import install_pipelines
from scheduler_core.service import SchedulerService

log = logging.getLogger("llmsched.worker")


def run_worker(svc: SchedulerService, *, slots: int, drain_timeout: float) -> int:
    """Serve until SIGTERM/SIGINT; returns 0 after a clean drain, 1 if jobs were cut off."""
    executor = install_pipelines(svc)
    executor.run(ensure_ollama_limit())
    control = PrefectControl(svc, executor, executor.sync)
    svc.add_plugin(control)
    control.first_look()  # a pool paused in Prefect holds claims from the very start
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("action=signal signal=%s draining=true", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info(
            "action=worker_ready worker_id=%s slots=%s prefect_api=%s job_types=%s",
            svc.worker_id,
            slots,
            PREFECT_API_URL.value() or "ephemeral",
            ",".join(svc.registry.names()),
        )
        svc.start(concurrency=slots)
        stop.wait()
        # What outlasts the drain goes back to the queue: stopping is not its failure.
        drained = svc.stop(timeout=drain_timeout, hand_back=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("action=worker_exit drained=%s", drained)
    return 0 if drained else 1
