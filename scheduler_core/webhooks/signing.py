"""Signatures: HMAC-SHA256 over `"{timestamp}.{body}"`, so a replayed or edited request fails.

`signature` and `verify` use only the standard library: receivers copy them verbatim
(docs/webhooks.md shows them, and a test keeps the two in step).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping


def generate_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(
    secret: str, *, event_id: str, event_type: str, idempotency_key: str, body: bytes
) -> dict[str, str]:
    """Headers of one attempt; the timestamp is the send time, so retries stay fresh."""
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "X-Webhook-Id": event_id,
        "X-Webhook-Event": event_type,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": signature(secret, timestamp, body),
        "X-Idempotency-Key": idempotency_key,
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> bool:
    """True if `body` was signed with `secret` less than `tolerance` seconds ago."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lower["x-webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    # Several signatures may be sent, space-separated, while a secret is rotated.
    offered = lower.get("x-webhook-signature", "").split()
    return any(hmac.compare_digest(expected, sig) for sig in offered)
