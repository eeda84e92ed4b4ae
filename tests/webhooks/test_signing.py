"""Signatures as a receiver checks them: the documented `verify` accepts what was sent and
rejects an edited body, an edited or missing event header, another secret, a stale
timestamp; the docs show the real code."""

from __future__ import annotations

import inspect
import re

import pytest

from scheduler_core import SchedulerService
from scheduler_core.webhooks import WebhookDispatcher, add_webhook_endpoint, verify
from scheduler_core.webhooks.signing import signature, signed_headers
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import ROOT, drain

SECRET = "s3cret-of-the-receiver-0123456789"


def test_received_request_verifies_and_tampering_does_not(
    hooked: tuple[SchedulerService, WebhookDispatcher], receiver: ReceiverFactory
) -> None:
    svc, _ = hooked
    rec = receiver()
    endpoint = add_webhook_endpoint(svc, rec.url, secret=SECRET)
    assert endpoint.secret == SECRET
    svc.enqueue_job("e2e", {"name": "signed"})
    drain(svc)
    (request,) = rec.wait_requests(1)
    headers, body = request["headers"], request["body"].encode()
    timestamp = int(headers["X-Webhook-Timestamp"])
    assert headers["X-Webhook-Signature"].startswith("v2=")

    assert verify(SECRET, headers, body)
    assert verify(SECRET, {k.lower(): v for k, v in headers.items()}, body)
    assert not verify(SECRET, headers, body.replace(b"COMPLETED", b"FAILED"))
    assert not verify(SECRET, headers, body + b" ")
    assert not verify("another-secret-of-24-chars-at-least", headers, body)
    assert not verify(SECRET, headers, body, now=timestamp + 301)
    assert verify(SECRET, headers, body, now=timestamp + 299)
    assert not verify(SECRET, {**headers, "X-Webhook-Timestamp": "x"}, body)
    stripped = {k: v for k, v in headers.items() if k != "X-Webhook-Signature"}
    assert not verify(SECRET, stripped, body)
    # During a secret rotation several signatures may be offered; one valid one suffices.
    rotated = {**headers, "X-Webhook-Signature": "v2=00ff " + headers["X-Webhook-Signature"]}
    assert verify(SECRET, rotated, body)


@pytest.mark.parametrize(
    ("header", "forged"),
    [
        ("X-Idempotency-Key", "999"),  # a receiver deduplicating by it would drop real events
        ("X-Idempotency-Key", ""),
        ("X-Webhook-Event", "job.run.failed"),
        ("X-Webhook-Id", "00000000-0000-0000-0000-000000000000"),
        ("X-Webhook-Timestamp", None),  # shifted by one second below
    ],
)
def test_tampering_with_a_signed_header_breaks_verification(
    header: str, forged: str | None
) -> None:
    body = b'{"event":"job.run.completed"}'
    headers = signed_headers(
        SECRET,
        event_id="5a378f8b-49a9-450c-aa8b-4a7b87dd9c0b",
        event_type="job.run.completed",
        idempotency_key="7",
        body=body,
    )
    assert verify(SECRET, headers, body)
    if forged is None:
        forged = str(int(headers[header]) + 1)
    assert forged != headers[header]
    assert not verify(SECRET, {**headers, header: forged}, body)
    missing = {k: v for k, v in headers.items() if k != header}
    assert not verify(SECRET, missing, body)


def test_signed_fields_can_not_be_shifted_between_headers() -> None:
    """Values are joined by newlines, which no header holds: moving a dot-separated part
    of one value into the next can not give the same signature."""
    one = signature(SECRET, 1, "id", "job.run", "x.7", b"{}")
    other = signature(SECRET, 1, "id", "job.run.x", "7", b"{}")
    assert one != other


def test_docs_show_the_verifying_code_verbatim() -> None:
    docs = (ROOT / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, flags=re.S)
    snippet = next(b for b in blocks if "def verify(" in b)
    assert inspect.getsource(signature) in snippet
    assert inspect.getsource(verify) in snippet
    namespace: dict[str, object] = {}
    exec(compile(snippet, "docs/webhooks.md", "exec"), namespace)  # the snippet runs alone
    assert callable(namespace["verify"])
