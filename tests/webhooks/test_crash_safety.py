"""Crash safety with real worker processes that are SIGKILLed: an event written with its
run is sent by whichever process runs next; an in-flight attempt whose sender died is
taken over when its lease runs out; across 200 jobs and a flaky receiver none is lost."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import sqlalchemy as sa

from scheduler_core import JobRunStatus, JobStatus, SchedulerService
from scheduler_core.webhooks import (
    DeliveryStatus,
    add_webhook_endpoint,
    install_webhooks,
    list_webhook_deliveries,
)
from tests.conftest import wait_for
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import (
    FAST,
    LOCAL_RECEIVERS,
    delivered_payloads,
    kill,
    payload,
    run_for,
    start_worker,
    wait_deliveries,
)


def test_killed_before_sending_then_sent_by_next_process(
    open_service: Callable[..., SchedulerService], db_url: str, receiver: ReceiverFactory
) -> None:
    svc = open_service()
    dispatcher = install_webhooks(svc, **FAST, **LOCAL_RECEIVERS)
    rec = receiver()
    add_webhook_endpoint(svc, rec.url)
    svc.register("noop", lambda params: [])
    jobs = [svc.enqueue_job("noop", {"i": i}) for i in range(3)]
    worker = start_worker(db_url)  # outbox hooks installed, sender never started
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "drained"
    finally:
        kill(worker)
    runs = [run_for(svc, j) for j in jobs]
    assert all(r.status == JobRunStatus.COMPLETED for r in runs)
    pending = list_webhook_deliveries(svc)
    assert [d.status for d in pending] == [DeliveryStatus.PENDING] * 3
    assert rec.requests() == []

    dispatcher.start()  # this process is "the next one"
    try:
        wait_deliveries(svc, DeliveryStatus.DELIVERED, 3)
    finally:
        dispatcher.stop(timeout=5)
    assert sorted(p["run"]["run_id"] for p in delivered_payloads(rec)) == sorted(
        r.run_id or 0 for r in runs
    )


def test_in_flight_delivery_of_killed_sender_is_taken_over(
    open_service: Callable[..., SchedulerService], db_url: str, receiver: ReceiverFactory
) -> None:
    lease = 2.0
    svc = open_service()
    bounds = {"timeout": 1.0, "attempt_deadline": 1.0, "lease_seconds": lease}
    dispatcher = install_webhooks(svc, **{**FAST, **LOCAL_RECEIVERS, **bounds})
    rec = receiver("--hang", "--fail-first", "1")  # the first request never gets an answer
    add_webhook_endpoint(svc, rec.url)
    svc.register("noop", lambda params: [])
    svc.enqueue_job("noop")
    settings = json.dumps(bounds)
    worker = start_worker(db_url, "--deliver", "--webhook-settings", settings)
    try:
        (first,) = rec.wait_requests(1)  # the worker's sender is in flight, holding the lease
    finally:
        kill(worker)
    (in_flight,) = list_webhook_deliveries(svc)
    assert in_flight.status == DeliveryStatus.PENDING and in_flight.attempts == 1
    assert in_flight.locked_until is not None

    dispatcher.start()
    try:
        (delivery,) = wait_deliveries(svc, DeliveryStatus.DELIVERED, 1, timeout=10)
    finally:
        dispatcher.stop(timeout=5)
    first, second = rec.requests()
    assert second["headers"]["X-Webhook-Id"] == first["headers"]["X-Webhook-Id"]
    assert second["t"] - first["t"] >= lease - 0.5  # not before the dead sender's lease ended
    assert delivery.attempts == 2


def test_no_event_lost_across_200_jobs_a_crash_and_a_flaky_receiver(
    open_service: Callable[..., SchedulerService], db_url: str, receiver: ReceiverFactory
) -> None:
    total = 200
    svc = open_service()
    # Creates the outbox tables; this process sends nothing.
    install_webhooks(svc, **FAST, **LOCAL_RECEIVERS)
    # Every 3rd request is refused, each event at most twice: within the 3 retries.
    rec = receiver("--fail-every", "3", "--status", "503", "--max-refusals", "2")
    add_webhook_endpoint(svc, rec.url)
    svc.register("noop", lambda params: [])
    svc.enqueue_jobs([{"job_type": "noop", "params": {"sleep": 0.02}} for _ in range(total)])

    args = ("--deliver", "--serve", "--slots", "2")
    first = start_worker(db_url, *args)
    try:
        rec.wait_requests(60, timeout=30)
    finally:
        kill(first)  # mid-run: jobs RUNNING, deliveries pending and in flight
    killed_at = time.monotonic()
    assert svc.list_jobs([JobStatus.QUEUED, JobStatus.RUNNING]), "the crash came too late"
    second = start_worker(db_url, *args)
    try:

        def settled() -> bool:
            if svc.list_jobs([JobStatus.QUEUED, JobStatus.RUNNING], limit=1):
                return False
            views = list_webhook_deliveries(svc)
            return bool(views) and all(d.status == DeliveryStatus.DELIVERED for d in views)

        wait_for(settled, timeout=40, what="every job ended and every event delivered")
    finally:
        kill(second)
    print(f"after the crash: settled in {time.monotonic() - killed_at:.1f}s")

    def completed_run_ids(conn: sa.Connection) -> set[int]:
        rows = conn.execute(sa.text("SELECT run_id FROM job_run WHERE status = 'COMPLETED'"))
        return {r.run_id for r in rows}

    completed_in_db = svc.db.read(completed_run_ids)
    accepted = delivered_payloads(rec)
    completed_events = {p["run"]["run_id"] for p in accepted if p["event"] == "job.run.completed"}
    assert len(completed_in_db) == total
    assert completed_events == completed_in_db
    assert len(completed_events) == total
    all_runs = {p["run"]["run_id"] for p in map(payload, rec.requests())}
    assert {p["run"]["run_id"] for p in accepted} == all_runs  # every event got through
    failures = [r for r in rec.requests() if r["answer"] != "200"]
    print(f"requests={len(rec.requests())} refused={len(failures)} runs={len(all_runs)}")
