"""The background loop: start(concurrency) dispatches, stop(timeout) drains, and a
freed slot or new work wakes the dispatcher at once instead of on the next poll."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from scheduler_core import InvalidJobError, InvalidStateError, JobStatus, SchedulerService, pacing
from tests.conftest import wait_for
from tests.scheduler.rules_support import (
    GateHandler,
    run_in_thread,
    run_of,
    status_of,
    wait_status,
)


@pytest.fixture
def looping(
    open_service: Callable[..., SchedulerService], handler: GateHandler
) -> SchedulerService:
    """A service whose fallback poll is slow (5 s): anything faster is event-driven."""
    svc = open_service(poll_interval=5)
    svc.register("job", handler, resource="external")
    return svc


def test_background_loop_runs_queued_jobs_in_order(
    looping: SchedulerService, handler: GateHandler
) -> None:
    created = [looping.enqueue_job("job", {"name": f"j{i}"}, priority=-i) for i in range(4)]
    looping.start(concurrency=1)
    try:
        for job in created:
            wait_status(looping, job, JobStatus.COMPLETED)
    finally:
        assert looping.stop(timeout=10) is True
    assert handler.started == ["j0", "j1", "j2", "j3"]
    assert {run_of(looping, j).worker_id for j in created} == {looping.worker_id}


def test_stop_drains_the_running_job_and_starts_nothing_new(
    looping: SchedulerService, handler: GateHandler
) -> None:
    running = looping.enqueue_job("job", {"name": "running", "block": True})
    queued = looping.enqueue_job("job", {"name": "queued"})
    looping.start(concurrency=1)
    handler.wait_started("running")
    assert looping.running_count == 1
    version = looping.signal.version
    stopper, stopped = run_in_thread(looping.stop, 10)
    # stop() announces the drain on the signal before it waits for running jobs.
    wait_for(lambda: looping.signal.version > version, what="stop() to begin draining")
    assert stopped == []  # still waiting for the running job
    handler.release("running")
    stopper.join(15)
    assert stopped == [True]
    assert status_of(looping, running) == JobStatus.COMPLETED
    assert status_of(looping, queued) == JobStatus.QUEUED
    assert looping.get_job_run_for_job(queued.job_id) is None
    assert handler.started == ["running"]
    assert looping.running_count == 0


def test_stop_reports_false_when_a_job_outlasts_the_timeout(
    looping: SchedulerService, handler: GateHandler
) -> None:
    running = looping.enqueue_job("job", {"name": "long", "block": True})
    looping.start(concurrency=1)
    handler.wait_started("long")
    assert looping.stop(timeout=0.2) is False
    assert status_of(looping, running) == JobStatus.RUNNING
    handler.release("long")
    wait_status(looping, running, JobStatus.COMPLETED)


def test_a_freed_slot_starts_the_next_job_without_waiting_for_a_poll(
    looping: SchedulerService, handler: GateHandler
) -> None:
    first = looping.enqueue_job("job", {"name": "first", "block": True})
    second = looping.enqueue_job("job", {"name": "second", "block": True})
    looping.start(concurrency=1)
    try:
        handler.wait_started("first")
        assert status_of(looping, second) == JobStatus.QUEUED
        handler.release("first")
        # Well inside the 5 s poll however loaded the machine is: a start this soon was
        # woken by the slot's end (its speed is the benchmark's hand-off row).
        wait_for(
            lambda: status_of(looping, second) != JobStatus.QUEUED,
            timeout=4,
            what="the second job to start (poll_interval is 5 s)",
        )
        gap = run_of(looping, second).started_at - run_of(looping, first).finished_at
        assert gap.total_seconds() < 2.5
    finally:
        handler.release_all()
        assert looping.stop(timeout=10)


def test_work_enqueued_while_idle_starts_without_waiting_for_a_poll(
    looping: SchedulerService, handler: GateHandler
) -> None:
    looping.start(concurrency=1)
    try:
        # Let the loop settle into its (5 s) wait with an empty queue.
        wait_for(lambda: looping.list_workers(), what="the worker row")
        job = looping.enqueue_job("job", {"name": "late"})
        # Under the 5 s poll the loop began just now: only a wake-up ends the job sooner
        # (a loaded machine can take over a second to run it).
        wait_status(looping, job, JobStatus.COMPLETED, timeout=4)
    finally:
        assert looping.stop(timeout=10)


def test_start_refuses_a_second_start_and_bad_concurrency(looping: SchedulerService) -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidJobError, match="concurrency"):
            looping.start(concurrency=bad)
    looping.start(concurrency=1)
    try:
        with pytest.raises(InvalidStateError, match="already running"):
            looping.start(concurrency=1)
    finally:
        assert looping.stop(timeout=10)
    assert looping.stop(timeout=1) is True  # stopping a stopped service is harmless


def test_every_slot_fills_while_the_running_jobs_run_long(
    looping: SchedulerService, handler: GateHandler
) -> None:
    jobs = [looping.enqueue_job("job", {"name": f"long{i}", "block": True}) for i in range(3)]
    looping.start(concurrency=3)
    try:
        for i in range(3):  # within the 5 s poll: the dispatcher looks again by itself
            handler.wait_started(f"long{i}", timeout=4)
        assert looping.running_count == 3
    finally:
        handler.release_all()
        assert looping.stop(timeout=10)
    assert all(status_of(looping, job) == JobStatus.COMPLETED for job in jobs)


def test_short_jobs_run_in_a_free_slot_beside_a_long_one(
    looping: SchedulerService, handler: GateHandler
) -> None:
    long = looping.enqueue_job("job", {"name": "long", "block": True}, priority=1)
    short = [looping.enqueue_job("job", {"name": f"short{i}"}) for i in range(30)]
    looping.start(concurrency=2)
    try:
        handler.wait_started("long")
        for job in short:
            wait_status(looping, job, JobStatus.COMPLETED)
        assert status_of(looping, long) == JobStatus.RUNNING
    finally:
        handler.release_all()
        assert looping.stop(timeout=10)


class ThreadsHandler:
    """Records which threads ran jobs, and how many ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.threads: set[int] = set()
        self.running = 0
        self.most = 0
        self.ended = 0

    def __call__(self, params: dict[str, object]) -> None:
        with self._lock:
            self.threads.add(threading.get_ident())
            self.running += 1
            self.most = max(self.most, self.running)
        with self._lock:
            self.running -= 1
            self.ended += 1


def test_on_sqlite_short_jobs_take_one_slot_and_on_postgresql_every_slot(
    open_service: Callable[..., SchedulerService], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite has one writer: slots of jobs that end at once only take turns (pacing.py).
    Here every job counts as short, however loaded the machine."""
    monkeypatch.setattr(pacing, "SHORT_JOB_SECONDS", 60.0)
    svc = open_service(poll_interval=5)
    handler = ThreadsHandler()
    svc.register("job", handler, resource="external")
    svc.enqueue_jobs([{"job_type": "job", "params": {"n": i}} for i in range(60)])
    svc.start(concurrency=4)
    try:
        wait_for(lambda: handler.ended == 60, what="the 60 jobs to end")
    finally:
        assert svc.stop(timeout=10)
    if backend == "sqlite":
        assert (len(handler.threads), handler.most) == (1, 1)
    else:  # each slot waits on its own round trips: all four were filled at once
        assert len(handler.threads) == 4


def test_the_worker_starts_its_deadline_and_cancel_watchers_before_any_job(
    open_service: Callable[..., SchedulerService],
) -> None:
    """Started by the first job instead, each thread's start (it waits for the thread to
    run) made that job look long to the slot pacing, which then filled a second slot
    among short jobs."""
    svc = open_service()
    svc.register("job", lambda params: None)
    svc.start(concurrency=2)
    try:
        watchers = [svc.deadlines._thread, svc.cancellations._thread]
        assert all(t is not None and t.is_alive() for t in watchers)
        job = svc.enqueue_job("job", {})
        wait_status(svc, job, JobStatus.COMPLETED, timeout=30)
        # The jobs use the same two threads: none is started per job.
        assert [svc.deadlines._thread, svc.cancellations._thread] == watchers
    finally:
        assert svc.stop(timeout=10)
