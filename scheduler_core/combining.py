"""Combined writes: the slots that end their jobs at the same moment share one transaction.

SQLite has one writer and Python one interpreter lock, so slots that each wait for their
own write transaction spend more time handing the lock over than writing: more slots
made a worker slower. Here the first slot to arrive writes the ends of every slot
waiting behind it in one transaction (and their next claims); the others sleep until it
is done. On SQLite only: PostgreSQL runs the slots' transactions side by side, each
waiting on its own round trips, and putting them in line behind one was slower there.
A batch that fails is not retried as a batch: every slot then writes its own end
alone, the way it would without combining, so a fault (a stale claim, the database
going away) is met by the code that knows that job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 32
"""A bound on one transaction's work, so that no slot waits behind an endless batch."""


@dataclass(slots=True)
class _Request(Generic[T, R]):
    item: T
    done: threading.Event | None = None  # set when a leader wrote it (a follower's only)
    lead: bool = False  # this request's thread writes the next batch
    result: R | None = None
    alone: bool = False  # the batch failed: write this one alone


class Combiner(Generic[T, R]):
    def __init__(
        self, batch: Callable[[Sequence[T]], Sequence[R]], single: Callable[[T], R]
    ) -> None:
        self._batch = batch
        self._single = single
        self._lock = threading.Lock()
        self._pending: list[_Request[T, R]] = []
        self._busy = False

    def submit(self, item: T) -> R:
        """`item` written, in a batch or alone; returns its result or raises its error."""
        request: _Request[T, R] = _Request(item)
        with self._lock:
            self._pending.append(request)
            request.lead = not self._busy
            if not request.lead:
                request.done = threading.Event()
            self._busy = True
        if request.done is not None:
            request.done.wait()  # set by a leader, whose transaction has its own deadline
        if request.lead:
            self._write_batch()
        if request.alone:
            return self._single(item)
        return request.result  # type: ignore[return-value]

    def _write_batch(self) -> None:
        """Write what is pending (this thread's request first), then hand the lead to the
        first request that arrived meanwhile, or give it up."""
        with self._lock:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        written = False
        try:
            results = self._batch([r.item for r in batch])
            for request, result in zip(batch, results, strict=True):
                request.result = result
            written = True
        except Exception:
            pass  # every request of the batch is written alone, by its own thread
        finally:
            following = None
            with self._lock:
                if self._pending:
                    following = self._pending[0]
                    following.lead = True
                else:
                    self._busy = False
            for request in batch:
                request.alone = not written
                if request.done is not None:
                    request.done.set()
            if following is not None and following.done is not None:
                following.done.set()
