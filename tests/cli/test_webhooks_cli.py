"""webhook add / list / remove / enable / disable / deliveries / redeliver."""

from __future__ import annotations

import sqlalchemy as sa

from scheduler_core import SchedulerService
from scheduler_core.webhooks import DeliveryStatus, list_webhook_deliveries
from tests.cli.conftest import CLI, drain

ENDPOINT_KEYS = {"endpoint_id", "url", "events", "enabled", "created_at"}
DELIVERY_KEYS = {
    "delivery_id",
    "event_id",
    "event_type",
    "idempotency_key",
    "endpoint_id",
    "url",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "created_at",
    "updated_at",
    "delivered_at",
}


def test_webhook_endpoints(cli: CLI, setup_svc: SchedulerService) -> None:
    added, as_json = cli.many(
        [
            ["webhook", "add", "https://example.com/hooks"],
            [
                "webhook",
                "add",
                "http://127.0.0.1:9/failures",
                "--secret",
                "s3cret",
                "--event",
                "job.run.failed",
                "--event",
                "job.group.*",
                "--json",
            ],
        ]
    )
    assert added.code == 0, added
    lines = added.stdout.splitlines()
    assert lines[0].startswith("added webhook endpoint ") and "(all events)" in lines[0]
    assert lines[1].startswith("secret: ") and len(lines[1]) > len("secret: ") + 16
    second = as_json.json()
    assert set(second) == ENDPOINT_KEYS | {"secret"}
    assert second["secret"] == "s3cret"
    assert second["events"] == ["job.run.failed", "job.group.*"]

    listed, table, bad_url, bad_event = cli.many(
        [
            ["webhook", "list", "--json"],
            ["webhook", "list"],
            ["webhook", "add", "ftp://example.com"],
            ["webhook", "add", "https://example.com", "--event", "job.exploded"],
        ]
    )
    endpoints = listed.json()
    assert all(set(e) == ENDPOINT_KEYS for e in endpoints)  # no secrets in listings
    assert {e["url"] for e in endpoints} == {"https://example.com/hooks", second["url"]}
    (first,) = (e for e in endpoints if e["endpoint_id"] != second["endpoint_id"])
    assert "s3cret" not in table.stdout and "https://example.com/hooks" in table.stdout
    assert bad_url.code == 2 and "not an absolute http:// or https:// URL" in bad_url.error
    assert bad_event.code == 2 and "matches no event" in bad_event.error

    eid = str(second["endpoint_id"])
    disabled, enabled, removed = (
        cli("webhook", "disable", eid),
        cli("webhook", "enable", eid),
        cli("webhook", "remove", eid),
    )
    assert disabled.stdout == f"disabled webhook endpoint {eid}\n"
    assert enabled.stdout == f"enabled webhook endpoint {eid}\n"
    assert removed.stdout == f"removed webhook endpoint {eid}\n"
    gone, listed_again = cli.many([["webhook", "remove", eid], ["webhook", "list", "--json"]])
    assert gone.code == 2 and gone.error == f"error: webhook endpoint {eid} does not exist"
    assert [e["endpoint_id"] for e in listed_again.json()] == [first["endpoint_id"]]


def test_webhook_deliveries_and_redelivery(
    cli: CLI, setup_svc: SchedulerService, db_url: str
) -> None:
    assert cli("webhook", "add", "http://127.0.0.1:9/hook", "--secret", "k").code == 0
    setup_svc.enqueue_job("story", {"theme": "ok"})
    setup_svc.enqueue_job("story", {"theme": "no", "fail": "x"}, max_retries=0)
    drain(setup_svc)  # two terminal runs: two events, one delivery each (nothing sends)
    views = list_webhook_deliveries(setup_svc)
    assert len(views) == 2
    failed_id = views[1].delivery_id
    setup_svc.db.write(
        lambda c: c.execute(
            sa.text(
                "UPDATE webhook_delivery SET status = 'FAILED', attempts = 5, "
                "last_error = 'connection refused' WHERE delivery_id = :d"
            ),
            {"d": failed_id},
        )
    )
    everything, failed, table, bad_status = cli.many(
        [
            ["webhook", "deliveries", "--json"],
            ["webhook", "deliveries", "--status", "failed", "--json"],
            ["webhook", "deliveries"],
            ["webhook", "deliveries", "--status", "lost"],
        ]
    )
    listed = everything.json()
    assert all(set(d) == DELIVERY_KEYS for d in listed)
    assert [d["event_type"] for d in listed] == ["job.run.completed", "job.run.failed"]
    assert [d["status"] for d in listed] == ["PENDING", "FAILED"]
    (only,) = failed.json()
    assert only["delivery_id"] == failed_id and only["last_error"] == "connection refused"
    assert "connection refused" in table.stdout and "job.run.failed" in table.stdout
    assert bad_status.code == 2 and "unknown delivery status 'lost'" in bad_status.error

    one = cli("webhook", "redeliver", str(failed_id), "--json").json()
    assert set(one) == DELIVERY_KEYS and (one["status"], one["attempts"]) == ("PENDING", 0)
    setup_svc.db.write(
        lambda c: c.execute(sa.text("UPDATE webhook_delivery SET status = 'FAILED'"))
    )
    everyone, neither, both, unknown = cli.many(
        [
            ["webhook", "redeliver", "--all-failed"],
            ["webhook", "redeliver"],
            ["webhook", "redeliver", "1", "--all-failed"],
            ["webhook", "redeliver", "999"],
        ]
    )
    assert everyone.stdout == "2 failed deliveries queued again\n"
    assert {v.status for v in list_webhook_deliveries(setup_svc)} == {DeliveryStatus.PENDING}
    for refused in (neither, both):
        assert refused.code == 2 and "either a DELIVERY_ID or --all-failed" in refused.error
    assert unknown.code == 2 and unknown.error == "error: webhook delivery 999 does not exist"
