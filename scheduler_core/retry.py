"""The automatic retry policy: a pure decision, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: `backoff_seconds * factor ** (attempt - 1)`, capped.

    A failed job with ``attempt <= max_retries`` gets a retry, so a job runs at most
    ``1 + max_retries`` times.
    """

    backoff_seconds: float = 10.0
    factor: float = 2.0
    max_backoff_seconds: float = 600.0

    def next_run_at(self, *, attempt: int, max_retries: int, now: datetime) -> datetime | None:
        """When the retry of a job that failed on `attempt` may run, or None for no retry."""
        if attempt > max_retries:
            return None
        delay = min(self.backoff_seconds * self.factor ** (attempt - 1), self.max_backoff_seconds)
        return now + timedelta(seconds=delay)
