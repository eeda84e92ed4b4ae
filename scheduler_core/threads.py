"""The scheduler's helper threads that start on first need: daemons (a process never
waits for them to exit), named `llmsched-*` for thread dumps and profiles."""

from __future__ import annotations

import threading
from collections.abc import Callable


def started_once(
    thread: threading.Thread | None, target: Callable[[], None], name: str
) -> threading.Thread:
    """`thread` if it was made already, else a daemon thread of `target`, started now.
    The caller holds its own lock, so that two first needs make one thread. Starting a
    thread waits until it runs: start one before the work it must not delay."""
    if thread is None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    return thread
