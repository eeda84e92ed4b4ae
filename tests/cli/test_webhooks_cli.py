"""webhook add / list / remove / enable / disable / deliveries / redeliver."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from scheduler_core import SchedulerService
from scheduler_core.webhooks import DeliveryStatus, list_webhook_deliveries
from scheduler_core.webhooks.models import ENDPOINTS
from tests.cli.conftest import CLI, ROOT, cli_env, drain

# The receivers of these tests are on 127.0.0.1, refused by default: opted in explicitly.
LOCAL = {"LLMSCHED_WEBHOOK_ALLOW_PRIVATE": "1"}
SECRET = "a-cli-secret-of-32-characters-00"


def stored(svc: SchedulerService) -> list[tuple[str, str]]:
    query = sa.select(ENDPOINTS.c.url, ENDPOINTS.c.secret).order_by(ENDPOINTS.c.endpoint_id)
    return [tuple(r) for r in svc.db.read(lambda c: c.execute(query).all())]


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
                "--secret-env",
                "HOOK_SECRET",
                "--event",
                "job.run.failed",
                "--event",
                "job.group.*",
                "--json",
            ],
        ],
        env={**LOCAL, "HOOK_SECRET": SECRET},
    )
    assert added.code == 0, added
    lines = added.stdout.splitlines()
    assert lines[0].startswith("added webhook endpoint ") and "(all events)" in lines[0]
    assert lines[1].startswith("secret: ") and len(lines[1]) > len("secret: ") + 16
    second = as_json.json()
    assert set(second) == ENDPOINT_KEYS  # a secret the user gave is not printed back
    assert SECRET not in as_json.stdout
    assert dict(stored(setup_svc))["http://127.0.0.1:9/failures"] == SECRET
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
    assert SECRET not in table.stdout and "https://example.com/hooks" in table.stdout
    assert lines[1].removeprefix("secret: ") not in listed.stdout + table.stdout
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
    added = cli("webhook", "add", "http://127.0.0.1:9/hook", "--secret", SECRET, env=LOCAL)
    assert added.code == 0, added
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


@pytest.mark.sqlite_only  # how the CLI reads a secret; nothing of the backend
def test_secret_sources(cli: CLI, setup_svc: SchedulerService, tmp_path: Path) -> None:
    """--secret-file, --secret-env and --secret - (stdin) store the secret as given,
    without printing it; --secret VALUE still works."""
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text("file-secret-of-at-least-24-chars\n")
    from_file, from_env, on_argv = cli.many(
        [
            ["webhook", "add", "https://example.com/f", "--secret-file", str(secret_file)],
            ["webhook", "add", "https://example.com/e", "--secret-env", "HOOK_SECRET"],
            ["webhook", "add", "https://example.com/a", "--secret", "argv-secret-of-24-chars-00"],
        ],
        env={"HOOK_SECRET": "env-secret-of-at-least-24-chars"},
    )
    piped = subprocess.run(
        cli.command(["webhook", "add", "https://example.com/s", "--secret", "-"], db=True),
        cwd=ROOT,
        env=cli_env(),
        input="stdin-secret-of-at-least-24-chars\nsecond line is not read\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    for result in (from_file, from_env, on_argv):
        assert result.code == 0, result
        assert "secret" not in result.stdout
    assert piped.returncode == 0, piped
    assert "secret" not in piped.stdout
    assert {url: secret for url, secret in stored(setup_svc)} == {
        "https://example.com/f": "file-secret-of-at-least-24-chars",
        "https://example.com/e": "env-secret-of-at-least-24-chars",
        "https://example.com/a": "argv-secret-of-24-chars-00",
        "https://example.com/s": "stdin-secret-of-at-least-24-chars",
    }


@pytest.mark.sqlite_only  # refused before the database is opened
def test_refused_input_writes_nothing(
    cli: CLI, setup_svc: SchedulerService, tmp_path: Path
) -> None:
    two_lines = tmp_path / "two-lines"
    two_lines.write_text("first-line-of-a-long-secret\nsecond-line\n")
    empty = tmp_path / "empty"
    empty.write_text("")
    add = ["webhook", "add", "https://example.com/h"]
    cases = [
        ([*add, "--secret", "x"], "webhook secret is too short (1 characters)"),
        ([*add, "--secret", "23-characters-long-abcd"], "use at least 24 random characters"),
        ([*add, "--secret-file", str(tmp_path / "missing")], "cannot read --secret-file"),
        ([*add, "--secret-file", str(empty)], "no secret in --secret-file"),
        ([*add, "--secret-file", str(two_lines)], "must be one line"),
        ([*add, "--secret-env", "NO_SUCH_HOOK_VAR"], "'NO_SUCH_HOOK_VAR': the environment"),
        ([*add, "--secret", "-"], "no secret in standard input"),  # stdin is /dev/null
        ([*add, "--secret", SECRET, "--secret-env", "X"], "one way only, not --secret and"),
        (["webhook", "add", "https://al:pw-hunter2@example.com/h"], "contains credentials"),
        (["webhook", "add", "https://example.com/h\r\nX-Bad: 1"], "control character"),
        (["webhook", "add", "https://exa mple.com/h"], "invalid host name"),
        (["webhook", "add", "https://example.com:0/h"], "port 0, not in 1-65535"),
        (["webhook", "add", "http://127.0.0.1:9/h"], "'127.0.0.1' is a loopback address"),
        (["webhook", "add", "http://169.254.169.254/h"], "is a link-local address"),
    ]
    results = cli.many([args for args, _ in cases])
    for (args, expected), result in zip(cases, results, strict=True):
        assert result.code == 2, result
        assert expected in result.error, (args, result.error)
        assert result.stdout == ""
    assert "pw-hunter2" not in results[8].stderr
    assert "LLMSCHED_WEBHOOK_ALLOW_PRIVATE=1" in results[12].error
    assert stored(setup_svc) == []
    allowed = cli("webhook", "add", "http://127.0.0.1:9/h", env=LOCAL)
    assert allowed.code == 0, allowed


def test_list_hides_secrets_and_url_credentials_and_key_encrypts(
    cli: CLI, setup_svc: SchedulerService
) -> None:
    key = Fernet.generate_key().decode()
    added = cli(
        "webhook", "add", "https://example.com/k", "--json", env={"LLMSCHED_SECRET_KEY": key}
    )
    generated = added.json()["secret"]
    assert generated.startswith("whsec_")
    ((_, secret),) = stored(setup_svc)
    assert secret.startswith("fernet:") and generated not in secret
    assert key not in added.stdout + added.stderr
    setup_svc.db.write(  # a row from before credentials in URLs were refused
        lambda c: c.execute(
            sa.text("UPDATE webhook_endpoint SET url = 'https://bob:pa55word@example.com/k'")
        )
    )
    as_json, table = cli.many([["webhook", "list", "--json"], ["webhook", "list"]])
    (endpoint,) = as_json.json()
    assert set(endpoint) == ENDPOINT_KEYS
    assert endpoint["url"] == "https://***@example.com/k"
    for output in (as_json.stdout, table.stdout):
        assert "pa55word" not in output and "bob" not in output
        assert generated not in output and "fernet:" not in output
    assert "https://***@example.com/k" in table.stdout
