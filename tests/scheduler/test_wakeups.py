"""A worker process learns of work queued, and of a slot freed, by another process at
once: its poll here is an hour, so only a wake-up (PostgreSQL LISTEN/NOTIFY, SQLite's
data_version) can start these jobs within the deadline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scheduler_core import JobStatus, SchedulerService
from tests.conftest import wait_for
from tests.scheduler.handlers import E2EJobHandler, register_e2e
from tests.support import kill, start_module


def test_a_worker_wakes_for_work_and_slots_of_other_processes(
    db_url: str, tmp_path: Path, open_service: Callable[..., SchedulerService]
) -> None:
    svc = open_service()
    register_e2e(svc, E2EJobHandler(tmp_path / "here.jsonl"), executor="callable")
    svc.set_resource_limit("external", 1)
    svc.enqueue_job("e2e", {"name": "held here"})
    held = svc.claim_next()  # this process holds the class's one slot
    assert held is not None
    worker = start_module(
        "tests.scheduler.worker_process",
        db_url,
        str(tmp_path / "worker.jsonl"),
        "--serve",
        env={"LLMSCHED_POLL_INTERVAL": "3600"},
    )
    try:
        wait_for(
            lambda: any(w.worker_id != svc.worker_id and w.slots for w in svc.list_workers()),
            timeout=60,
            what="the worker process to start its loop",
        )
        waiting = svc.enqueue_job("e2e", {"name": "waits for the slot"})
        assert svc.get_job(waiting.job_id or 0).status == JobStatus.QUEUED
        svc.execute_claim(held)  # the slot is freed in this process
        wait_for(
            lambda: svc.get_job(waiting.job_id or 0).status == JobStatus.COMPLETED,
            timeout=30,
            what="the worker to take the freed slot",
        )
        queued = svc.enqueue_job("e2e", {"name": "queued here"})
        wait_for(
            lambda: svc.get_job(queued.job_id or 0).status == JobStatus.COMPLETED,
            timeout=30,
            what="the worker to take new work",
        )
    finally:
        kill(worker)
