"""An in-process wake-up: a freed slot or new work wakes waiters at once, not on a poll."""

from __future__ import annotations

import threading


class Signal:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    def notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait until something changed since `seen` (or timeout); True if it did."""
        with self._cond:
            return self._cond.wait_for(lambda: self._version != seen, timeout=timeout)
