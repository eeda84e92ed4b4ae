"""The test plan's webhook scenarios (E2E-WEBHOOK-01..04) against a real receiver process."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler_core import JobRunStatus, SchedulerService
from scheduler_core.webhooks import (
    DeliveryStatus,
    WebhookDispatcher,
    add_webhook_endpoint,
    verify,
)
from tests.support import RUN_KEYS
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import drain, payload, run_for, wait_deliveries

Hooked = tuple[SchedulerService, WebhookDispatcher]


def parse_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    offset = value.utcoffset()
    assert offset is not None and offset.total_seconds() == 0, text
    return value.astimezone(UTC)


def events_by_type(requests: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for body in map(payload, requests):
        out.setdefault(body["event"], []).append(body)
    return out


def test_E2E_WEBHOOK_01_completed_run_schema(hooked: Hooked, receiver: ReceiverFactory) -> None:
    svc, _ = hooked
    rec = receiver()
    endpoint = add_webhook_endpoint(svc, rec.url)
    job = svc.enqueue_job("e2e", {"name": "one"}, priority=4)
    assert drain(svc) == 1
    (request,) = rec.wait_requests(1)
    run = run_for(svc, job)

    body = payload(request)
    assert set(body) == {"event", "event_id", "timestamp", "run"}
    assert body["event"] == "job.run.completed"
    parse_utc(body["timestamp"])
    assert set(body["run"]) == RUN_KEYS
    r = body["run"]
    assert (r["run_id"], r["job_id"], r["status"]) == (run.run_id, job.job_id, "COMPLETED")
    assert (r["job_type"], r["attempt"], r["priority"], r["resource"]) == ("e2e", 1, 4, "external")
    assert r["artifacts"] == ["artifacts/one-1.txt"]
    assert r["exit_code"] == 0 and r["error"] is None and r["retry_of"] is None
    assert parse_utc(r["finished_at"]) >= parse_utc(r["started_at"])
    assert r["duration_seconds"] == run.duration_seconds

    headers = request["headers"]
    assert headers["X-Webhook-Event"] == "job.run.completed"
    assert headers["X-Webhook-Id"] == body["event_id"]
    assert headers["X-Idempotency-Key"] == str(run.run_id)
    assert headers["X-Webhook-Signature"].startswith("v1=")
    assert verify(endpoint.secret, headers, request["body"].encode())
    wait_deliveries(svc, DeliveryStatus.DELIVERED, 1)


def test_E2E_WEBHOOK_02_failed_run_carries_error(hooked: Hooked, receiver: ReceiverFactory) -> None:
    svc, _ = hooked
    rec = receiver()
    add_webhook_endpoint(svc, rec.url)
    job = svc.enqueue_job("e2e", {"name": "bad", "fail_times": -1}, max_retries=0)
    drain(svc)
    (request,) = rec.wait_requests(1)
    body = payload(request)
    assert body["event"] == "job.run.failed"
    assert body["run"]["job_id"] == job.job_id
    assert body["run"]["status"] == "FAILED"
    assert "injected failure of bad" in body["run"]["error"]


def test_E2E_WEBHOOK_03_skipped_group_member(hooked: Hooked, receiver: ReceiverFactory) -> None:
    svc, _ = hooked
    rec = receiver()
    add_webhook_endpoint(svc, rec.url)
    group, (first, second, third) = svc.create_job_group(
        [
            {"job_type": "e2e", "params": {"name": "m1"}},
            {"job_type": "e2e", "params": {"name": "m2", "fail_times": -1}, "max_retries": 0},
            {"job_type": "e2e", "params": {"name": "m3"}},
        ],
        name="stop-on-failure",
    )
    drain(svc)
    events = events_by_type(rec.wait_requests(4))
    assert [e["run"]["job_id"] for e in events["job.run.completed"]] == [first.job_id]
    assert [e["run"]["job_id"] for e in events["job.run.failed"]] == [second.job_id]
    (skipped,) = events["job.run.skipped"]
    assert skipped["run"]["job_id"] == third.job_id
    assert skipped["run"]["status"] == JobRunStatus.SKIPPED.value
    assert skipped["run"]["group_id"] == group.group_id and skipped["run"]["sequence"] == 2
    assert "predecessor" in skipped["run"]["error"]
    (partial,) = events["job.group.partial"]
    assert partial["group"]["group_id"] == group.group_id
    assert partial["group"]["status"] == "PARTIAL"


def test_E2E_WEBHOOK_04_at_least_once_with_run_id_key(
    hooked: Hooked, receiver: ReceiverFactory
) -> None:
    svc, _ = hooked
    rec = receiver("--fail-first", "2", "--status", "500")
    add_webhook_endpoint(svc, rec.url)
    job = svc.enqueue_job("e2e", {"name": "flaky-receiver"})
    drain(svc)
    (delivery,) = wait_deliveries(svc, DeliveryStatus.DELIVERED, 1)
    requests = rec.requests()
    assert [r["answer"] for r in requests] == ["500", "500", "200"]
    run = run_for(svc, job)
    assert {r["headers"]["X-Webhook-Id"] for r in requests} == {delivery.event_id}
    assert {r["headers"]["X-Idempotency-Key"] for r in requests} == {str(run.run_id)}
    assert {payload(r)["run"]["run_id"] for r in requests} == {run.run_id}
    assert len({r["body"] for r in requests}) == 1  # identical bytes on every attempt
    assert delivery.attempts == 3 and delivery.last_status_code == 200
