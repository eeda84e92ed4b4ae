"""When to try a delivery again: exponential backoff with jitter, or the receiver's Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from scheduler_core.webhooks.models import DeliveryStatus
from scheduler_core.webhooks.settings import WebhookSettings

RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one HTTP attempt ended: a status code, or None when no response came.

    `refused`: the HTTP client refused the request itself (e.g. its URL), so sending it
    again can not succeed.
    """

    status_code: int | None
    error: str | None = None
    retry_after: float | None = None
    refused: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def permanent(self) -> bool:
        """A refused request, or a redirect or client error other than 408/429, will not
        change on retry."""
        if self.refused:
            return True
        code = self.status_code
        return code is not None and 300 <= code < 500 and code not in RETRYABLE_4XX


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def backoff_delay(
    retry_number: int, settings: WebhookSettings, *, rng: Callable[[], float] = random.random
) -> float:
    """Delay before retry `retry_number` (1-based); jitter spreads receivers' recovery load."""
    base = settings.backoff_seconds * settings.backoff_factor ** (retry_number - 1)
    base = min(base, settings.backoff_max_seconds)
    return base * (1 + settings.jitter * rng())


def next_state(
    result: AttemptResult, *, attempts: int, settings: WebhookSettings, now: datetime
) -> tuple[DeliveryStatus, datetime | None]:
    """The delivery's status after an attempt, and when to try again if it stays PENDING."""
    if result.delivered:
        return DeliveryStatus.DELIVERED, None
    if result.permanent or attempts >= settings.max_attempts:
        return DeliveryStatus.FAILED, None
    delay = backoff_delay(attempts, settings)
    if result.retry_after is not None:
        delay = max(delay, min(result.retry_after, settings.retry_after_max_seconds))
    return DeliveryStatus.PENDING, now + timedelta(seconds=delay)
