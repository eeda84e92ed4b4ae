"""The endpoint API and event routing: URLs and filters are checked before anything is
written; filters, disabling and removal decide who receives what; group events."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from scheduler_core import SchedulerError, SchedulerService
from scheduler_core.webhooks import (
    DeliveryStatus,
    InvalidWebhookUrlError,
    UnknownWebhookEventError,
    WebhookDeliveryNotFoundError,
    WebhookDispatcher,
    WebhookEndpointNotFoundError,
    add_webhook_endpoint,
    install_webhooks,
    list_webhook_deliveries,
    list_webhook_endpoints,
    redeliver,
    remove_webhook_endpoint,
    set_webhook_endpoint_enabled,
)
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import LOCAL_RECEIVERS, delivered_payloads, drain, wait_deliveries

Hooked = tuple[SchedulerService, WebhookDispatcher]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "example.com/hook",
        "http://",
        "file:///etc/passwd",
        "",
        "http://example.com:notaport/x",  # the HTTP client can not send to these
        "http://example.com:99999/x",
        "http://[::1/x",
    ],
)
def test_non_http_url_is_refused(hooked: Hooked, url: str) -> None:
    svc, _ = hooked
    with pytest.raises(InvalidWebhookUrlError) as info:
        add_webhook_endpoint(svc, url)
    assert isinstance(info.value, SchedulerError)
    assert list_webhook_endpoints(svc) == []


def test_unknown_event_filter_is_refused(hooked: Hooked) -> None:
    svc, _ = hooked
    with pytest.raises(UnknownWebhookEventError, match=r"job\.run\.completed"):
        add_webhook_endpoint(svc, "https://example.com/h", events=["job.run.finished"])
    assert list_webhook_endpoints(svc) == []


def test_secret_is_generated_and_endpoints_are_listed_and_removed(hooked: Hooked) -> None:
    svc, _ = hooked
    first = add_webhook_endpoint(svc, "https://example.com/a", events=["job.group.*"])
    second = add_webhook_endpoint(svc, "https://example.com/b")
    assert first.secret.startswith("whsec_") and len(first.secret) > 40
    assert first.secret != second.secret
    assert [e.url for e in list_webhook_endpoints(svc)] == [first.url, second.url]
    assert list_webhook_endpoints(svc)[0].events == ["job.group.*"]
    remove_webhook_endpoint(svc, first.endpoint_id or 0)
    assert [e.endpoint_id for e in list_webhook_endpoints(svc)] == [second.endpoint_id]
    with pytest.raises(WebhookEndpointNotFoundError):
        remove_webhook_endpoint(svc, first.endpoint_id or 0)
    with pytest.raises(WebhookDeliveryNotFoundError):
        redeliver(svc, 999)


def test_no_endpoint_means_no_outbox_rows(hooked: Hooked) -> None:
    svc, _ = hooked
    svc.enqueue_job("e2e", {"name": "unobserved"})
    drain(svc)

    def count(conn: sa.Connection) -> int:
        return conn.execute(sa.text("SELECT COUNT(*) FROM webhook_event")).scalar_one()

    assert svc.db.read(count) == 0


def test_an_endpoint_added_elsewhere_gets_the_next_runs_event(
    hooked: Hooked, open_service: Callable[..., SchedulerService], receiver: ReceiverFactory
) -> None:
    """The endpoints are read once per transaction, never kept from one to the next."""
    svc, _ = hooked
    svc.enqueue_job("e2e", {"name": "before"})
    drain(svc)  # its end read "no endpoints" on this worker's connection
    elsewhere = open_service()  # as another process would
    install_webhooks(elsewhere, **LOCAL_RECEIVERS)
    add_webhook_endpoint(elsewhere, receiver().url)
    svc.enqueue_job("e2e", {"name": "after"})
    drain(svc)

    def events(conn: sa.Connection) -> list[str]:
        return [e for (e,) in conn.execute(sa.text("SELECT event_type FROM webhook_event"))]

    assert svc.db.read(events) == ["job.run.completed"]


def test_filters_and_disabled_endpoints_route_events(
    hooked: Hooked, receiver: ReceiverFactory
) -> None:
    svc, _ = hooked
    everything, failures, disabled = receiver(), receiver(), receiver()
    add_webhook_endpoint(svc, everything.url)
    add_webhook_endpoint(svc, failures.url, events=["job.run.failed"])
    off = add_webhook_endpoint(svc, disabled.url)
    set_webhook_endpoint_enabled(svc, off.endpoint_id or 0, False)
    svc.enqueue_job("e2e", {"name": "good"})
    svc.enqueue_job("e2e", {"name": "bad", "fail_times": -1}, max_retries=0)
    drain(svc)
    wait_deliveries(svc, DeliveryStatus.DELIVERED, 3)
    assert sorted(p["event"] for p in delivered_payloads(everything)) == [
        "job.run.completed",
        "job.run.failed",
    ]
    assert [p["event"] for p in delivered_payloads(failures)] == ["job.run.failed"]
    assert disabled.requests() == []


def test_group_events_carry_the_group(hooked: Hooked, receiver: ReceiverFactory) -> None:
    svc, _ = hooked
    rec = receiver()
    add_webhook_endpoint(svc, rec.url, events=["job.group.*"])
    done, _ = svc.create_job_group(
        [{"job_type": "e2e", "params": {"name": f"g{i}"}} for i in range(2)], name="done"
    )
    drain(svc)
    cancelled, _ = svc.create_job_group([{"job_type": "e2e", "params": {"name": "c"}}])
    svc.cancel_job_group(cancelled.group_id or 0)
    (first, second) = wait_deliveries(svc, DeliveryStatus.DELIVERED, 2)
    by_event = {p["event"]: p for p in delivered_payloads(rec)}
    assert set(by_event) == {"job.group.completed", "job.group.cancelled"}
    group = by_event["job.group.completed"]["group"]
    assert (group["group_id"], group["name"], group["size"]) == (done.group_id, "done", 2)
    assert group["status"] == "COMPLETED" and group["finished_at"] is not None
    assert by_event["job.group.cancelled"]["group"]["group_id"] == cancelled.group_id
    assert {d.idempotency_key for d in (first, second)} == {
        f"group-{done.group_id}",
        f"group-{cancelled.group_id}",
    }
    assert list_webhook_deliveries(svc, "delivered") == [first, second]
