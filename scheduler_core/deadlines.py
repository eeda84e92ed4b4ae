"""Job execution deadlines: one watchdog thread for the process.

A second after a job's deadline (an executor that cancels its own coroutine at the
deadline goes first) the watchdog raises `DeadlineExceeded` in the thread running it
(delivered at its next Python instruction: it stops Python code, not a thread blocked
inside one C call). If the job has not ended `grace` seconds later, `on_expiry` runs
on the watchdog thread: the service then records the job FAILED, which releases its
slot for every worker; the stuck thread's own end is ignored. Executors that run
coroutines (flows) cancel them at the deadline themselves, which stops them for real.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scheduler_core.errors import SchedulerError
from scheduler_core.threads import started_once

log = logging.getLogger("scheduler_core.deadlines")

GRACE_SECONDS = 5.0
MARGIN_SECONDS = 1.0
"""The watchdog acts this long after the deadline, so that an executor that stops its own
execution at the deadline (a cancelled coroutine, whose flow run then ends Failed) goes
first."""


class DeadlineExceeded(SchedulerError):
    """The job ran past its execution deadline."""


MAX_TIMEOUT_SECONDS = 30 * 24 * 3600.0


def check_timeout(value: object, *, name: str, error: type[Exception]) -> float | None:
    """A deadline in seconds: a positive finite number up to 30 days, or None."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_SECONDS
    ):
        raise error(
            f"{name} must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS:g} "
            f"(30 days), got {value!r}"
        )
    return float(value)


def deadline_error(seconds: float) -> str:
    """The run error of a job stopped at its deadline: the limit, and how to raise it."""
    return (
        f"deadline exceeded: the job ran longer than its {seconds:g} s limit; raise it with "
        "LLMSCHED_JOB_TIMEOUT_SECONDS (every job), register(..., timeout_seconds=) (a job "
        "type) or enqueue_job(..., timeout_seconds=) / --timeout (one job)"
    )


@dataclass(order=True)
class _Watch:
    due: float
    seq: int
    thread_id: int = field(compare=False)
    seconds: float = field(compare=False)
    on_expiry: Callable[[], None] | None = field(compare=False)
    state: str = field(default="armed", compare=False)  # armed, fired, expired, done
    # Made when the watch expires (rare): an Event per job would cost more than the watch.
    settled: threading.Event | None = field(default=None, compare=False)


class Watchdog:
    def __init__(self, *, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self._heap: list[_Watch] = []
        self._ended = 0  # entries of jobs that ended, still in the heap
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the watching thread now (the worker loop's start), not in a job's time."""
        with self._cond:
            self._thread = started_once(self._thread, self._run, "llmsched-deadlines")

    def watch(self, seconds: float, *, on_expiry: Callable[[], None]) -> _Watch:
        """Arm a deadline `seconds` from now for the calling thread."""
        item = _Watch(
            due=time.monotonic() + seconds + MARGIN_SECONDS,
            seq=next(self._seq),
            thread_id=threading.get_ident(),
            seconds=seconds,
            on_expiry=on_expiry,
        )
        with self._cond:
            heapq.heappush(self._heap, item)
            self._thread = started_once(self._thread, self._run, "llmsched-deadlines")
            if self._heap[0] is item:  # else the thread's wait ends before this deadline
                self._cond.notify()
        return item

    def done(self, item: _Watch) -> str:
        """The job ended (called from its own thread): "armed" if in time, "fired" if its
        deadline passed, "expired" if `on_expiry` ran for it (this waits for that to end).

        Clears a `DeadlineExceeded` still pending for this thread, so it can never be
        raised after the job's end.
        """
        with self._cond:
            state = item.state
            item.state = "done"
            if state == "armed":
                item.on_expiry = None  # the job's values are not kept until the deadline
                self._ended += 1
                if self._ended > 64 and self._ended * 2 > len(self._heap):
                    self._heap = [w for w in self._heap if w.state != "done"]
                    heapq.heapify(self._heap)
                    self._ended = 0
        if state != "armed":
            raise_in(item.thread_id, None)
        if state == "expired" and item.settled is not None:
            item.settled.wait()
        return state

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0].due > time.monotonic():
                    timeout = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                item = heapq.heappop(self._heap)
                if item.state == "done":
                    self._ended = max(0, self._ended - 1)
                    continue
                if item.state == "armed":
                    item.state = "fired"
                    raise_in(item.thread_id, DeadlineExceeded)
                    item.due += self.grace
                    heapq.heappush(self._heap, item)
                    continue
                if item.state != "fired":
                    continue
                item.state = "expired"
                item.settled = threading.Event()
            try:
                if item.on_expiry is not None:
                    item.on_expiry()
            except Exception:
                log.exception("action=deadline_expiry_failed")
            finally:
                item.settled.set()


def raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in another thread at its next instruction (None: cancel a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )
