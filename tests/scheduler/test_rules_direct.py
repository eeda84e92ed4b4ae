"""DEC-004: a direct execution reserves the next slot, pauses the queue, never preempts.

A reservation whose holder vanished expires (TTL) and is released by recovery.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scheduler_core import (
    JobOrigin,
    JobRunStatus,
    JobStatus,
    ReservationTimeoutError,
    SchedulerError,
    SchedulerService,
)
from scheduler_core.store.hot import DISPATCH_LOCK_KEY
from tests.conftest import POSTGRES_URL, TEST_SETTINGS, fresh_database, wait_for
from tests.scheduler.rules_support import (
    GateHandler,
    count_rows,
    drain,
    kill,
    register_llm,
    run_in_thread,
    run_of,
    start_module,
    status_of,
    wait_status,
)


def test_reservation_pauses_dispatch_for_every_worker(
    open_service: Callable[..., SchedulerService], handler: GateHandler
) -> None:
    holder = open_service()
    other = open_service()
    for s in (holder, other):
        s.register("job", handler, resource="external")
    holder.enqueue_job("job", {"name": "queued"})
    reservation = holder.reserve_next_slot("client")
    assert holder.has_active_reservation() and other.has_active_reservation()
    assert holder.dispatch_one() is None
    assert other.dispatch_one() is None
    assert handler.started == []
    assert holder.release_reservation(reservation.reservation_id) is True
    assert not other.has_active_reservation()
    assert other.dispatch_one() is not None
    assert handler.started == ["queued"]


def test_releasing_a_reservation_resumes_the_background_loop(
    open_service: Callable[..., SchedulerService], handler: GateHandler
) -> None:
    svc = open_service(poll_interval=5)
    svc.register("job", handler, resource="external")
    reservation = svc.reserve_next_slot("client")
    job = svc.enqueue_job("job", {"name": "waits"})
    svc.start(concurrency=1)
    try:
        assert svc.dispatch_one() is None  # the pause holds for every dispatcher
        assert status_of(svc, job) == JobStatus.QUEUED
        svc.release_reservation(reservation.reservation_id)
        # The release wakes the loop at once: no 5 s poll needed.
        wait_status(svc, job, JobStatus.COMPLETED, timeout=2)
    finally:
        svc.stop(timeout=10)
    assert handler.started == ["waits"]


def test_releasing_twice_reports_the_reservation_had_ended(jobs: SchedulerService) -> None:
    reservation = jobs.reserve_next_slot("client")
    assert jobs.release_reservation(reservation.reservation_id) is True
    assert jobs.release_reservation(reservation.reservation_id) is False


def test_direct_execution_runs_before_the_queue_and_records_a_run(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    jobs.enqueue_job("job", {"name": "queued"}, priority=100)
    run = jobs.execute_direct("job", {"name": "direct"}, reserved_by="cli", timeout=10)
    assert run.status == JobRunStatus.COMPLETED
    assert jobs.get_job(run.job_id).origin == JobOrigin.DIRECT
    assert not jobs.has_active_reservation()
    drain(jobs)
    assert handler.started == ["direct", "queued"]


def test_reservation_of_a_killed_holder_expires_after_its_ttl(
    jobs: SchedulerService, db_url: str, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "after-expiry"})
    holder = start_module("tests.scheduler.reservation_holder", db_url, "--ttl", "1")
    try:
        wait_for(jobs.has_active_reservation, timeout=30, what="the holder's reservation")
        assert holder.stdout is not None
        info = json.loads(holder.stdout.readline())
        (active,) = jobs.active_reservations()
        assert active.reservation_id == info["reservation_id"]
        # While the holder lives, its heartbeat keeps the reservation beyond the TTL.
        first_expiry = active.expires_at
        wait_for(
            lambda: jobs.active_reservations()[0].expires_at > first_expiry,
            timeout=5,
            what="the holder to extend its reservation",
        )
        assert jobs.dispatch_one() is None
    finally:
        kill(holder)
    wait_for(lambda: not jobs.has_active_reservation(), timeout=5, what="the TTL to expire")
    assert jobs.dispatch_one() is not None
    assert handler.started == ["after-expiry"]
    assert status_of(jobs, job) == JobStatus.COMPLETED


def test_recovery_releases_a_dead_holders_reservation_at_once(
    jobs: SchedulerService, db_url: str, handler: GateHandler
) -> None:
    jobs.enqueue_job("job", {"name": "after-recovery"})
    holder = start_module("tests.scheduler.reservation_holder", db_url, "--ttl", "600")
    try:
        wait_for(jobs.has_active_reservation, timeout=30, what="the holder's reservation")
        assert holder.stdout is not None
        info = json.loads(holder.stdout.readline())
    finally:
        kill(holder)
    # The TTL is far away, so only recovery can free the queue now.
    assert jobs.has_active_reservation()
    report = jobs.recover()
    assert report.reservations_released == 1
    assert report.workers_marked_dead == 1
    assert not jobs.has_active_reservation()
    (worker,) = [w for w in jobs.list_workers() if w.worker_id == info["worker_id"]]
    assert worker.status == "DEAD"
    assert jobs.dispatch_one() is not None
    assert handler.started == ["after-recovery"]


def test_direct_execution_that_times_out_leaves_no_reservation_and_no_job(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    running = jobs.enqueue_job("job", {"name": "busy", "block": True})
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("busy")
        before = count_rows(jobs)
        with pytest.raises(ReservationTimeoutError) as info:
            jobs.execute_direct("job", {"name": "direct"}, reserved_by="cli", timeout=0.3)
        assert isinstance(info.value, SchedulerError)
        assert "preempt" in str(info.value)
        assert not jobs.has_active_reservation()
        after = count_rows(jobs)
        assert after["job"] == before["job"]
        assert after["job_run"] == before["job_run"]
        # The running job was never disturbed.
        assert status_of(jobs, running) == JobStatus.RUNNING
    finally:
        handler.release("busy")
        thread.join(10)
    assert status_of(jobs, running) == JobStatus.COMPLETED
    assert handler.started == ["busy"]


def test_direct_execution_waits_for_the_running_job_without_preempting_it(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    running = jobs.enqueue_job("job", {"name": "busy", "block": True})
    jobs.enqueue_job("job", {"name": "queued"})
    worker, _ = run_in_thread(jobs.dispatch_one)
    handler.wait_started("busy")
    caller, direct = run_in_thread(
        jobs.execute_direct, "job", {"name": "direct"}, reserved_by="cli", timeout=30
    )
    try:
        wait_for(jobs.has_active_reservation, what="the direct reservation")
        assert status_of(jobs, running) == JobStatus.RUNNING
        assert handler.started == ["busy"]
    finally:
        handler.release("busy")
        worker.join(10)
        caller.join(30)
    run = direct[0]
    assert run.status == JobRunStatus.COMPLETED
    assert run.started_at >= run_of(jobs, running).finished_at
    assert drain(jobs) == 1
    assert handler.started == ["busy", "direct", "queued"]


def test_direct_ollama_work_waits_while_an_ollama_job_runs(
    open_service: Callable[..., SchedulerService],
) -> None:
    handler = GateHandler()
    worker = open_service()
    caller = open_service()
    for s in (worker, caller):
        register_llm(s, handler)
    ollama_job = worker.enqueue_job(
        "llm", {"name": "o-job", "model": "ollama/llama3", "block": True}
    )
    worker.start(concurrency=2)
    try:
        handler.wait_started("o-job")
        # A slot is free (2 slots, 1 running): external direct work runs at once ...
        ext = caller.execute_direct(
            "llm", {"name": "ext-direct", "model": "openai/gpt-4o"}, timeout=10
        )
        assert ext.status == JobRunStatus.COMPLETED
        # ... but ollama direct work waits for the ollama slot.
        before = count_rows(caller)
        with pytest.raises(ReservationTimeoutError):
            caller.execute_direct(
                "llm", {"name": "o-direct-early", "model": "ollama/llama3"}, timeout=0.3
            )
        assert count_rows(caller)["job"] == before["job"]
        thread, direct = run_in_thread(
            caller.execute_direct,
            "llm",
            {"name": "o-direct", "model": "ollama/llama3"},
            timeout=30,
        )
        wait_for(caller.has_active_reservation, what="the direct reservation")
        assert status_of(caller, ollama_job) == JobStatus.RUNNING
        handler.release("o-job")
        thread.join(30)
    finally:
        handler.release_all()
        worker.stop(timeout=10)
    run = direct[0]
    assert run.status == JobRunStatus.COMPLETED
    assert caller.get_job(run.job_id).resource == "ollama"
    assert run.started_at >= run_of(caller, ollama_job).finished_at
    assert handler.started == ["o-job", "ext-direct", "o-direct"]


@pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL's dispatch lock")
def test_a_slots_next_claim_holds_the_dispatch_lock_from_its_jobs_end_on(
    tmp_path: Path,
) -> None:
    """PostgreSQL: a slot's next claim runs in its job's end transaction, and the end's
    statement takes the shared dispatch lock that orders claims against reservations. A
    reservation made between the end and the claim would otherwise not wait for the
    claim, and the claim, in a snapshot taken before the reservation committed, would
    start a job under it. Watched here where the claim is Python's (a spy between the
    end and the claim); the cycle function runs the same end statement before its heads
    (test_cycle_function.py)."""
    # Advisory locks are per database, and other tests' schedulers share this one: the
    # lock is looked for as held by the claiming session itself.
    held = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
        "AND objid = %s AND objsubid = 1 AND mode = 'ShareLock' AND granted AND pid = %s"
    )
    with fresh_database("postgres", tmp_path) as url:
        svc = SchedulerService.open(url, **TEST_SETTINGS)
        other = psycopg.connect(url, autocommit=True)
        held_at_claims: list[bool] = []
        sessions: set[int] = set()
        claim_many = svc.store.claim_many

        def spy(conn: Any, count: int, **kw: Any) -> Any:
            if kw.get("after_end"):
                pid = conn.connection.dbapi_connection.info.backend_pid
                sessions.add(pid)
                (found,) = other.execute(held, (DISPATCH_LOCK_KEY, pid)).fetchone() or (0,)
                held_at_claims.append(found == 1)
            return claim_many(conn, count, **kw)

        svc.store.claim_many = spy  # type: ignore[method-assign]
        svc.store.end_then_claim = lambda *a, **k: None  # type: ignore[method-assign]
        svc.register("job", lambda params: None)
        jobs = [svc.enqueue_job("job", {"n": n}) for n in range(3)]
        svc.start(concurrency=1)
        try:
            for job in jobs:
                wait_status(svc, job, JobStatus.COMPLETED, timeout=30)
        finally:
            svc.stop(timeout=10)
            svc.close()
        left = [other.execute(held, (DISPATCH_LOCK_KEY, pid)).fetchone() for pid in sessions]
        other.close()
    assert held_at_claims, "no claim followed an end"
    assert all(held_at_claims), held_at_claims
    assert left == [(0,)] * len(sessions), "the lock is released with each transaction"
