"""Signatures: HMAC-SHA256 over the timestamp, the event headers and the body.

Every header the docs tell receivers to rely on is signed (X-Webhook-Id,
X-Webhook-Event, X-Idempotency-Key, X-Webhook-Timestamp), so a replayed request, an
edited body or a swapped header all fail. The signed values are joined by newlines,
which no header value can contain, so no two sets of values sign the same bytes.

`signature` and `verify` use only the standard library: receivers copy them verbatim
(docs/webhooks.md shows them, and a test keeps the two in step).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

# Long enough that a secret can not be guessed (24 random characters: over 128 bits),
# short enough to type; generated secrets are longer.
MIN_SECRET_LENGTH = 24
MAX_SECRET_LENGTH = 256


def generate_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(
    secret: str, timestamp: int, event_id: str, event: str, idempotency_key: str, body: bytes
) -> str:
    signed = f"{timestamp}\n{event_id}\n{event}\n{idempotency_key}\n".encode() + body
    mac = hmac.new(secret.encode(), signed, hashlib.sha256)
    return "v2=" + mac.hexdigest()


def signed_headers(
    secret: str, *, event_id: str, event_type: str, idempotency_key: str, body: bytes
) -> dict[str, str]:
    """Headers of one attempt; the timestamp is the send time, so retries stay fresh."""
    timestamp = int(time.time())
    mac = signature(secret, timestamp, event_id, event_type, idempotency_key, body)
    return {
        "Content-Type": "application/json",
        "X-Webhook-Id": event_id,
        "X-Webhook-Event": event_type,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": mac,
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
    """True if `body` and the event headers were signed with `secret` less than
    `tolerance` seconds ago."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lower["x-webhook-timestamp"])
        event_id = lower["x-webhook-id"]
        event = lower["x-webhook-event"]
        idempotency_key = lower["x-idempotency-key"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, event_id, event, idempotency_key, body)
    # Several signatures may be sent, space-separated, while a secret is rotated.
    offered = lower.get("x-webhook-signature", "").split()
    return any(hmac.compare_digest(expected, sig) for sig in offered)
