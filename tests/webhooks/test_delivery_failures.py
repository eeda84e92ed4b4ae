"""Receivers that are down, refuse, throttle or hang: retries, final failure, redelivery,
Retry-After, and dispatch that never waits for a receiver."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from scheduler_core import SchedulerService
from scheduler_core.webhooks import (
    DeliveryStatus,
    WebhookDispatcher,
    add_webhook_endpoint,
    install_webhooks,
    list_webhook_deliveries,
    redeliver,
    redeliver_failed,
)
from scheduler_core.webhooks.backoff import parse_retry_after
from tests.conftest import wait_for
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import FAST, LOCAL_RECEIVERS, drain, free_port, payload, wait_deliveries

Hooked = tuple[SchedulerService, WebhookDispatcher]


def test_receiver_down_longer_than_retries_then_redelivered(
    hooked: Hooked, receiver: ReceiverFactory
) -> None:
    svc, _ = hooked
    # A refused connection fails at once: a deadline that a starved machine can pass
    # must not turn it into a timeout.
    slow_ok = {"timeout": 60, "attempt_deadline": 60, "lease_seconds": 65}
    install_webhooks(svc, **{**FAST, **slow_ok}, **LOCAL_RECEIVERS)
    port = free_port()
    rec = receiver(port=port, start=False)
    add_webhook_endpoint(svc, rec.url)
    for name in ("a", "b", "c"):
        svc.enqueue_job("e2e", {"name": name})
    drain(svc)
    failed = wait_deliveries(svc, DeliveryStatus.FAILED, 3)
    assert all(d.attempts == 4 for d in failed)  # the first attempt and 3 retries
    assert all("ConnectError" in (d.last_error or "") for d in failed)
    assert all(d.last_status_code is None for d in failed)

    rec.start()
    again = redeliver(svc, failed[0].delivery_id or 0)
    assert again.status == DeliveryStatus.PENDING and again.attempts == 0
    (request,) = rec.wait_requests(1)
    assert request["headers"]["X-Webhook-Id"] == failed[0].event_id
    wait_for(
        lambda: list_webhook_deliveries(svc, DeliveryStatus.DELIVERED),
        what="the redelivered delivery to be DELIVERED",
    )
    assert redeliver_failed(svc) == 2
    wait_deliveries(svc, DeliveryStatus.DELIVERED, 3)
    assert sorted(r["headers"]["X-Webhook-Id"] for r in rec.requests()) == sorted(
        d.event_id for d in failed
    )


def test_client_error_is_not_retried(hooked: Hooked, receiver: ReceiverFactory) -> None:
    svc, _ = hooked
    rec = receiver("--status", "400")
    add_webhook_endpoint(svc, rec.url)
    svc.enqueue_job("e2e", {"name": "rejected"})
    drain(svc)
    (delivery,) = wait_deliveries(svc, DeliveryStatus.FAILED, 1)
    assert delivery.attempts == 1 and delivery.last_status_code == 400
    assert "HTTP 400" in (delivery.last_error or "")
    assert len(rec.requests()) == 1


def test_429_retry_after_is_honoured(hooked: Hooked, receiver: ReceiverFactory) -> None:
    svc, _ = hooked
    rec = receiver("--fail-first", "1", "--status", "429", "--retry-after", "1")
    add_webhook_endpoint(svc, rec.url)
    svc.enqueue_job("e2e", {"name": "throttled"})
    drain(svc)
    (delivery,) = wait_deliveries(svc, DeliveryStatus.DELIVERED, 1)
    first, second = rec.requests()
    assert (first["answer"], second["answer"]) == ("429", "200")
    # Backoff alone would retry after ~0.05 s; the receiver asked for 1 s.
    assert second["t"] - first["t"] >= 0.95
    assert delivery.attempts == 2


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    )
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    )
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None


def test_hanging_receiver_does_not_delay_dispatch(
    open_service: Callable[..., SchedulerService], receiver: ReceiverFactory
) -> None:
    svc = open_service()
    svc.register("noop", lambda params: [])
    dispatcher = install_webhooks(svc, **{**FAST, **LOCAL_RECEIVERS, "timeout": 3.0, "senders": 1})
    rec = receiver("--hang")
    add_webhook_endpoint(svc, rec.url)
    dispatcher.start()
    try:
        svc.enqueue_job("noop")
        drain(svc)
        rec.wait_requests(1)  # the sender is now stuck waiting for an answer
        durations = []
        for _ in range(5):
            svc.enqueue_job("noop")
            started = time.perf_counter()
            assert svc.dispatch_one() is not None
            durations.append(time.perf_counter() - started)
        stuck = list_webhook_deliveries(svc)
        assert stuck[0].attempts == 1 and stuck[0].status == DeliveryStatus.PENDING
        assert len(rec.requests()) == 1  # still the first attempt: the sender is blocked
        print(f"dispatch_one while the sender hangs: max {max(durations) * 1000:.1f} ms")
        assert max(durations) < 1.5  # not held by the sender's 3 s wait, however loaded
        # The attempt times out after 3 s and the delivery is retried, not lost.
        wait_for(lambda: len(rec.requests()) >= 2, timeout=10, what="a retry after the timeout")
    finally:
        dispatcher.stop(timeout=3)
    assert {payload(r)["event"] for r in rec.requests()} == {"job.run.completed"}
