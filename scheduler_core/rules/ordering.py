"""The dispatch order (INV-004): priority first, then first come, first served.

`DISPATCH_ORDER` is the one statement of the order: the store's claim statements and
the dispatch index are built from it, and `dispatch_key` sorts values by it.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

DISPATCH_ORDER: tuple[tuple[str, bool], ...] = (
    ("priority", True),  # higher priority first
    ("position", False),  # then FIFO inside a priority
    ("job_id", False),  # then creation order, for equal positions
)
"""(field, descending) pairs, most significant first."""


class Ordered(Protocol):
    @property
    def priority(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def job_id(self) -> int | None: ...


def dispatch_key(job: Ordered) -> tuple[int, int, int]:
    """Sorts jobs (or rows with the same fields) in dispatch order."""
    return (-job.priority, job.position, job.job_id or 0)


class PositionClock:
    """Positions are microseconds since the epoch, strictly increasing in this process.

    FIFO inside a priority across processes follows the wall clock; a retry keeps its
    original's position (rules/retry.py) so it does not lose its place.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> int:
        """The first of `n` consecutive fresh positions."""
        with self._lock:
            first = max(time.time_ns() // 1000, self._last + 1)
            self._last = first + n - 1
            return first
