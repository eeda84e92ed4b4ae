"""Receivers that drip their answer, answer a huge body, or can not be sent to: an
attempt ends at its deadline before its lease (no duplicate POST), a slow endpoint holds
one sender while the others serve the healthy ones, only a few KB of an answer is read,
and a URL the HTTP client refuses fails the delivery at once."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

import psutil
import pytest
import sqlalchemy as sa

from scheduler_core import SchedulerService
from scheduler_core.webhooks import (
    DeliveryStatus,
    WebhookDeliveryView,
    WebhookSettings,
    add_webhook_endpoint,
    install_webhooks,
    list_webhook_deliveries,
)
from scheduler_core.webhooks.models import ENDPOINTS
from tests.conftest import wait_for
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import (
    FAST,
    HOSTILE,
    LOCAL_RECEIVERS,
    Receiver,
    drain,
    payload,
    wait_deliveries,
)

MB = 1024 * 1024
DEADLINE = 1.5
# The per-read timeout is far above the drip interval: only the deadline can end a drip.
BOUNDED: dict[str, Any] = {
    **FAST,
    **LOCAL_RECEIVERS,
    "timeout": 30.0,
    "attempt_deadline": DEADLINE,
    "lease_seconds": DEADLINE + 1.5,
    "senders": 2,
}


def _kind(rec: Receiver, kind: str) -> list[dict[str, Any]]:
    return [r for r in rec.requests() if r["kind"] == kind]


def _attempts_at(rec: Receiver) -> list[tuple[str, float, float]]:
    """(event id, arrival, end) of each request the hostile receiver has finished."""
    ends = {e["n"]: e for e in _kind(rec, "end")}
    return [
        (r["headers"]["X-Webhook-Id"], r["t"], ends[r["n"]]["t"])
        for r in _kind(rec, "request")
        if r["n"] in ends
    ]


def _events_of_job(rec: Receiver, job_id: int | None) -> list[dict[str, Any]]:
    return [r for r in rec.requests() if payload(r)["run"]["job_id"] == job_id]


def _by_endpoint(svc: SchedulerService, url: str) -> list[WebhookDeliveryView]:
    return [d for d in list_webhook_deliveries(svc) if d.url == url]


@pytest.mark.parametrize("mode", ["drip-head", "drip-body"])
def test_drip_feeding_receiver_holds_one_sender_until_the_deadline_only(
    open_service: Callable[..., SchedulerService],
    receiver: ReceiverFactory,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    svc = open_service()
    svc.register("noop", lambda params: [])
    dispatcher = install_webhooks(svc, **BOUNDED)
    drip = receiver("--mode", mode, "--status", "503", "--interval", "0.2", module=HOSTILE)
    healthy = receiver()
    add_webhook_endpoint(svc, drip.url)  # first: its deliveries are the older ones
    add_webhook_endpoint(svc, healthy.url)
    caplog.set_level(logging.INFO, logger="scheduler_core.webhooks")
    events = 4
    latencies: list[float] = []
    dispatcher.start()
    try:
        svc.enqueue_job("noop", {"i": 0})
        drain(svc)
        wait_for(lambda: _kind(drip, "request"), what="the first POST to the drip receiver")
        # One sender is now stuck on the drip receiver, which has a delivery due for
        # every further event too: the other sender serves the healthy receiver.
        for i in range(1, events):
            job_id = svc.enqueue_job("noop", {"i": i}).job_id
            drain(svc)
            (got,) = wait_for(
                partial(_events_of_job, healthy, job_id), what=f"event {i} at the healthy receiver"
            )
            finished = datetime.fromisoformat(payload(got)["timestamp"]).timestamp()
            latencies.append(got["t"] - finished)
        assert len(healthy.requests()) == events
        first_event = _kind(drip, "request")[0]["headers"]["X-Webhook-Id"]
        # Every drip delivery is tried in turn, each attempt cut at the deadline, then the
        # first one again.
        wait_for(
            lambda: sum(a[0] == first_event for a in _attempts_at(drip)) >= 2,
            timeout=events * DEADLINE + 10,
            what="a second attempt of the first event at the drip receiver",
        )
    finally:
        assert dispatcher.stop(timeout=DEADLINE + 5)
    print(
        f"{mode}: healthy endpoint latency while the drip receiver holds a sender: "
        f"max {max(latencies) * 1000:.0f} ms, all {[round(x * 1000) for x in latencies]} ms"
    )
    assert max(latencies) < DEADLINE / 2

    # Each attempt ended at its deadline (the receiver saw the sender close), well
    # before its lease ran out: one POST per attempt, never two of one event at once.
    wait_for(
        lambda: len(_attempts_at(drip)) == len(_kind(drip, "request")),
        what="the drip receiver to see every attempt's connection closed",
    )
    attempts = _attempts_at(drip)
    durations = [end - start for _, start, end in attempts]
    print(f"{mode}: drip attempts lasted {[round(d, 2) for d in durations]} s")
    assert all(DEADLINE - 0.3 < d < DEADLINE + 0.5 for d in durations), durations
    assert all(e["how"] == "client closed" for e in _kind(drip, "end"))
    for event_id in {a[0] for a in attempts}:
        spans = sorted((s, e) for ev, s, e in attempts if ev == event_id)
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    views = _by_endpoint(svc, drip.url)
    assert len(views) == events
    posts = {d.event_id: sum(a[0] == d.event_id for a in attempts) for d in views}
    assert {d.event_id: d.attempts for d in views} == posts  # one POST per attempt
    expected = "AttemptDeadlineExceeded" if mode == "drip-head" else "HTTP 503: slow"
    for view in views:
        assert view.status == DeliveryStatus.PENDING and view.locked_until is None
        if view.attempts:
            assert expected in (view.last_error or ""), view.last_error
    if mode == "drip-body":
        assert all(
            "[body cut at the attempt deadline]" in (v.last_error or "")
            for v in views
            if v.attempts
        )
    lines = [r.getMessage() for r in caplog.records if "action=deliver" in r.getMessage()]
    assert lines and not [line for line in lines if "lease_lost" in line]
    assert all(d.status == DeliveryStatus.DELIVERED for d in _by_endpoint(svc, healthy.url))


@contextmanager
def _peak_rss() -> Iterator[dict[str, int]]:
    """This process's resident memory before, and its peak while the block runs."""
    proc = psutil.Process()
    seen = {"before": proc.memory_info().rss, "peak": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen["peak"] = max(seen["peak"], proc.memory_info().rss)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()


@pytest.mark.parametrize(
    ("status", "size"),
    [(500, 300 * MB), (500, 0), (200, 300 * MB)],
    ids=["500-300MB", "500-endless", "200-300MB"],
)
def test_huge_answer_is_read_only_a_few_kb(
    open_service: Callable[..., SchedulerService],
    receiver: ReceiverFactory,
    status: int,
    size: int,
) -> None:
    svc = open_service()
    svc.register("noop", lambda params: [])
    dispatcher = install_webhooks(svc, **{**FAST, **LOCAL_RECEIVERS, "senders": 1})
    settings = dispatcher.settings
    rec = receiver("--mode", "huge", "--status", str(status), "--size", str(size), module=HOSTILE)
    add_webhook_endpoint(svc, rec.url)
    dispatcher.start()
    try:
        with _peak_rss() as rss:
            svc.enqueue_job("noop")
            drain(svc)
            final = DeliveryStatus.DELIVERED if status == 200 else DeliveryStatus.FAILED
            (delivery,) = wait_deliveries(svc, final, 1, timeout=30)
    finally:
        dispatcher.stop(timeout=5)
    growth = (rss["peak"] - rss["before"]) / MB
    body = f"a {size // MB} MB" if size else "an endless"
    print(f"{status} with {body} body: RSS growth {growth:.1f} MB")
    assert growth < 50
    wait_for(
        lambda: len(_kind(rec, "end")) == len(_kind(rec, "request")),
        what="the receiver to see every attempt's connection closed",
    )
    sent = [e["sent"] for e in _kind(rec, "end")]
    print(f"bytes the receiver got out per attempt: {sent}")
    assert all(e["how"] == "client closed" for e in _kind(rec, "end"))
    assert max(sent) < 64 * MB  # the body was not drained: the sender closed early
    if status == 200:
        assert delivery.attempts == 1 and delivery.last_error is None
        return
    assert delivery.attempts == settings.max_attempts == len(_kind(rec, "request"))
    error = delivery.last_error or ""
    assert error.startswith(f"HTTP {status}: spam") and "eggs" in error
    assert error.endswith(f"[body cut at {settings.max_response_bytes} bytes]")
    assert len(error) <= settings.max_error_chars
    assert "\x00" not in error  # NUL bytes of the body are stored as U+FFFD


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:notaport/hooks",
        "http://127.0.0.1:99999/hooks",
        "ftp://127.0.0.1/hooks",
        "http://exa\u00e4mple..com/hooks",
    ],
)
def test_url_the_http_client_refuses_fails_the_delivery_at_once(
    open_service: Callable[..., SchedulerService], receiver: ReceiverFactory, url: str
) -> None:
    svc = open_service()
    svc.register("noop", lambda params: [])
    dispatcher = install_webhooks(svc, **FAST, **LOCAL_RECEIVERS)
    rec = receiver()
    endpoint = add_webhook_endpoint(svc, rec.url)
    # A URL stored before the API checked it the way the HTTP client does.
    svc.db.write(
        lambda c: c.execute(
            sa.update(ENDPOINTS)
            .where(ENDPOINTS.c.endpoint_id == endpoint.endpoint_id)
            .values(url=url)
        )
    )
    dispatcher.start()
    try:
        svc.enqueue_job("noop")
        drain(svc)
        (delivery,) = wait_deliveries(svc, DeliveryStatus.FAILED, 1)
    finally:
        dispatcher.stop(timeout=5)
    assert delivery.attempts == 1 and delivery.last_status_code is None
    error = delivery.last_error or ""
    assert error.startswith("URL refused: ") and (
        "InvalidURL" in error or "UnsupportedProtocol" in error
    ), error
    assert rec.requests() == []


def test_settings_refuse_a_lease_the_attempt_could_outlast() -> None:
    defaults = WebhookSettings()
    assert (defaults.attempt_deadline, defaults.max_response_bytes) == (10.0, 4096)
    assert defaults.lease_seconds == 60.0
    with pytest.raises(ValueError, match=r"lease_seconds \(10\.5\) must be at least"):
        WebhookSettings(attempt_deadline=10, lease_seconds=10.5)
    assert WebhookSettings(attempt_deadline=10, lease_seconds=11).lease_seconds == 11
    with pytest.raises(ValueError, match="attempt_deadline"):
        WebhookSettings(lease_seconds=5)  # the default deadline of 10 s does not fit
