"""One HTTP attempt, bounded: a wall-clock deadline over the whole exchange and at most
`max_response_bytes` of the answer read.

httpx's timeouts apply to each socket operation, so a receiver that sends one byte at a
time (of its status line, its headers or its body) never trips them. The attempt runs
on an asyncio loop instead, under `asyncio.timeout`: at the deadline the request is
cancelled wherever it is (connecting, sending, waiting for or reading the answer) and
its connection closed. The body of the answer is streamed and only its first bytes
kept, so a huge or endless answer costs one network chunk of memory, not its size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from scheduler_core.values import utcnow
from scheduler_core.webhooks.backoff import AttemptResult, parse_retry_after
from scheduler_core.webhooks.deliveries import Claimed
from scheduler_core.webhooks.errors import WebhookSecretKeyError, WebhookTargetRefusedError
from scheduler_core.webhooks.sealing import unseal
from scheduler_core.webhooks.settings import WebhookSettings
from scheduler_core.webhooks.signing import signed_headers
from scheduler_core.webhooks.targets import GuardedTransport

USER_AGENT = "prefect-llm-scheduler-webhooks/1"

# Errors of the request itself: sending it again can not succeed.
REFUSED = (httpx.InvalidURL, httpx.UnsupportedProtocol)

# Control characters (NUL can not be stored in PostgreSQL text) become U+FFFD.
_CONTROLS = {c: "\ufffd" for c in [*range(0x20), 0x7F] if chr(c) not in "\t\n\r"}


def new_client(allow_private: Callable[[], bool] = lambda: False) -> httpx.AsyncClient:
    """A sender thread's client. Redirects are not followed (a 3xx fails the delivery),
    bodies are asked for unencoded (a compressed answer is never inflated), and it
    connects only to global addresses unless `allow_private()` says otherwise."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )


def url_refusal(url: str) -> str | None:
    """Why the HTTP client can not send to `url` (as the error it would raise), or None."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if parsed.scheme not in ("http", "https"):
        return f"UnsupportedProtocol: the scheme must be http or https, not {parsed.scheme!r}"
    if not parsed.host:
        return "InvalidURL: the URL has no host"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"InvalidURL: port {parsed.port} is not in 1-65535"
    return None


def bounded(text: str, limit: int) -> str:
    """`text` fit for `last_error` and a log line: no control characters, at most `limit`."""
    clean = text.translate(_CONTROLS)
    if len(clean) <= limit:
        return clean
    marker = " [cut]"
    return clean[: max(0, limit - len(marker))] + marker


@dataclass(slots=True)
class _Answer:
    """What arrived before the attempt ended: enough to judge it at the deadline too."""

    status_code: int | None = None
    retry_after: str | None = None
    body: bytearray = field(default_factory=bytearray)
    body_cut: bool = False  # more body came than max_response_bytes


async def attempt(
    client: httpx.AsyncClient,
    claimed: Claimed,
    *,
    settings: WebhookSettings,
    budget: float,
) -> AttemptResult:
    """POST `claimed` once, ending within `budget` seconds whatever the receiver does.

    Never raises: every failure is an AttemptResult. A URL the client refuses is a
    permanent failure; anything else without an answer is retried.
    """
    limit = settings.max_error_chars
    refusal = url_refusal(claimed.url)
    if refusal is not None:
        return AttemptResult(None, error=bounded(f"URL refused: {refusal}", limit), refused=True)
    if budget <= 0:
        return AttemptResult(None, error="not sent: the lease was nearly over once claimed")
    try:
        secret = unseal(claimed.secret, endpoint_id=claimed.endpoint_id)
    except WebhookSecretKeyError as exc:  # retried: another process may hold the key
        return AttemptResult(None, error=bounded(f"not sent: {exc}", limit))
    body = claimed.body.encode()
    headers = signed_headers(
        secret,
        event_id=claimed.event_id,
        event_type=claimed.event_type,
        idempotency_key=claimed.idempotency_key,
        body=body,
    )
    answer = _Answer()
    deadline = asyncio.timeout(budget)
    try:
        async with deadline:
            await _exchange(client, claimed.url, body, headers, answer, settings)
    except (TimeoutError, asyncio.CancelledError) as exc:
        # The deadline's cancellation comes out as TimeoutError (or, should a library
        # under the client swallow the cancel count, as CancelledError).
        if not deadline.expired():
            if isinstance(exc, asyncio.CancelledError):
                raise
            return AttemptResult(None, error=bounded(f"{type(exc).__name__}: {exc}", limit))
        if answer.status_code is None:
            return AttemptResult(
                None,
                error=(
                    "AttemptDeadlineExceeded: no complete answer within the attempt "
                    f"deadline of {round(budget, 2):g} s"
                ),
            )
        return _answered(answer, settings, note="body cut at the attempt deadline")
    except REFUSED as exc:
        error = bounded(f"URL refused: {type(exc).__name__}: {exc}", limit)
        return AttemptResult(None, error=error, refused=True)
    except WebhookTargetRefusedError as exc:  # nothing was sent
        return AttemptResult(None, error=bounded(f"target refused: {exc}", limit), refused=True)
    except httpx.HTTPError as exc:
        if answer.status_code is None:
            return AttemptResult(None, error=bounded(f"{type(exc).__name__}: {exc}", limit))
        return _answered(answer, settings, note=f"body read failed: {type(exc).__name__}")
    except Exception as exc:  # a client bug or an odd network error: retried, not fatal
        return AttemptResult(None, error=bounded(f"{type(exc).__name__}: {exc}", limit))
    return _answered(answer, settings)


async def _exchange(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    answer: _Answer,
    settings: WebhookSettings,
) -> None:
    """Send, then read the status, headers and at most `max_response_bytes` of body.

    A 2xx body is read only when it is declared small (to keep the connection for the
    next delivery): the status is the answer, so an accepted event never waits on it.
    Leaving the `stream` block early closes the connection without draining it.
    """
    limit = settings.max_response_bytes
    async with client.stream(
        "POST", url, content=body, headers=headers, timeout=settings.timeout
    ) as response:
        answer.status_code = response.status_code
        answer.retry_after = response.headers.get("retry-after")
        if 200 <= response.status_code < 300 and not _declared_within(response, limit):
            return
        async for chunk in response.aiter_raw():
            room = limit - len(answer.body)
            answer.body += chunk[:room]
            if len(chunk) > room:
                answer.body_cut = True
                return


def _declared_within(response: httpx.Response, limit: int) -> bool:
    length = response.headers.get("content-length", "")
    return length.isdigit() and int(length) <= limit


def _answered(answer: _Answer, settings: WebhookSettings, *, note: str = "") -> AttemptResult:
    code = answer.status_code
    assert code is not None
    if 200 <= code < 300:
        return AttemptResult(status_code=code)
    text = answer.body.decode("utf-8", errors="replace")
    notes = [note] if note else []
    if answer.body_cut:
        notes.append(f"body cut at {len(answer.body)} bytes")
    suffix = f" [{'; '.join(notes)}]" if notes else ""
    return AttemptResult(
        status_code=code,
        error=bounded(f"HTTP {code}: {text}{suffix}", settings.max_error_chars),
        retry_after=parse_retry_after(answer.retry_after, now=utcnow()),
    )
