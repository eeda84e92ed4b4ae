"""A worker process learns of work queued, and of a slot freed, by another process at
once: its poll here is an hour, so only a wake-up (PostgreSQL LISTEN/NOTIFY, SQLite's
data_version) can start these jobs within the deadline."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from scheduler_core import JobStatus, SchedulerService, wakeups
from scheduler_core.wakeups import FileWrites, Wakeups
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


def test_a_commit_by_another_process_ends_a_file_wait_at_once(tmp_path: Path) -> None:
    """Linux: the wait returns at the commit (True), not at its hour-long timeout."""
    database = tmp_path / "jobs.db"
    writer = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    writes = FileWrites.open(str(database))
    assert writes is not None, "inotify is available on Linux"
    try:
        while writes.wait(0.001):  # what creating the table wrote
            pass
        timer = threading.Timer(0.2, lambda: writer.execute("INSERT INTO t VALUES (1)"))
        timer.start()
        assert writes.wait(3600)
        timer.join()
    finally:
        writes.close()
        writer.close()


def test_a_watcher_that_stopped_while_slots_were_busy_looks_again_when_one_frees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While every slot is busy the watcher does not look; a freed slot makes it look at
    once (its timer here is an hour), so a commit made meanwhile elsewhere is seen."""
    monkeypatch.setattr(wakeups, "SQLITE_IDLE_INTERVAL", 3600.0)
    monkeypatch.setattr(wakeups, "SQLITE_INTERVAL", 3600.0)
    database = tmp_path / "jobs.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    free, looked, woken = threading.Event(), threading.Event(), threading.Event()

    def wanted() -> bool:  # first asked once the watcher has read where the file is
        looked.set()
        return free.is_set()

    watcher = Wakeups(sa.make_url(f"sqlite:///{database}"), woken.set, wanted=wanted)
    watcher.start()
    try:
        assert looked.wait(30)
        writer.execute("INSERT INTO t VALUES (1)")  # another process commits; all busy
        free.set()
        watcher.slot_freed()
        assert woken.wait(30), "the freed slot's watcher did not see the commit"
    finally:
        watcher.stop()
        writer.close()
