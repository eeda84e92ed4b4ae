"""Signatures as a receiver checks them: the documented `verify` accepts what was sent and
rejects an edited body, another secret, a stale timestamp; the docs show the real code."""

from __future__ import annotations

import inspect
import re

from scheduler_core import SchedulerService
from scheduler_core.webhooks import WebhookDispatcher, add_webhook_endpoint, verify
from scheduler_core.webhooks.signing import signature
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import ROOT, drain


def test_received_request_verifies_and_tampering_does_not(
    hooked: tuple[SchedulerService, WebhookDispatcher], receiver: ReceiverFactory
) -> None:
    svc, _ = hooked
    rec = receiver()
    endpoint = add_webhook_endpoint(svc, rec.url, secret="s3cret-of-the-receiver")
    assert endpoint.secret == "s3cret-of-the-receiver"
    svc.enqueue_job("e2e", {"name": "signed"})
    drain(svc)
    (request,) = rec.wait_requests(1)
    headers, body = request["headers"], request["body"].encode()
    timestamp = int(headers["X-Webhook-Timestamp"])

    assert verify(endpoint.secret, headers, body)
    assert verify(endpoint.secret, {k.lower(): v for k, v in headers.items()}, body)
    assert not verify(endpoint.secret, headers, body.replace(b"COMPLETED", b"FAILED"))
    assert not verify(endpoint.secret, headers, body + b" ")
    assert not verify("another-secret", headers, body)
    assert not verify(endpoint.secret, headers, body, now=timestamp + 301)
    assert verify(endpoint.secret, headers, body, now=timestamp + 299)
    assert not verify(endpoint.secret, {**headers, "X-Webhook-Timestamp": "x"}, body)
    stripped = {k: v for k, v in headers.items() if k != "X-Webhook-Signature"}
    assert not verify(endpoint.secret, stripped, body)
    # During a secret rotation several signatures may be offered; one valid one suffices.
    rotated = {**headers, "X-Webhook-Signature": "v1=00ff " + headers["X-Webhook-Signature"]}
    assert verify(endpoint.secret, rotated, body)


def test_docs_show_the_verifying_code_verbatim() -> None:
    docs = (ROOT / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, flags=re.S)
    snippet = next(b for b in blocks if "def verify(" in b)
    assert inspect.getsource(signature) in snippet
    assert inspect.getsource(verify) in snippet
    namespace: dict[str, object] = {}
    exec(compile(snippet, "docs/webhooks.md", "exec"), namespace)  # the snippet runs alone
    assert callable(namespace["verify"])
