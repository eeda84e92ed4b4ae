"""Stopping running jobs a user cancelled (rules/cancel.py): while this process runs
jobs it asks the database, every `cancel_check_interval`, whether any of them got a
cancel request (from `cancel_job`, a group cancel, or a Prefect run cancelled by a
user), stops those, and their end is recorded CANCELLED: no retry, no requeue.

An executor with a `cancel(job_id) -> bool` method stops its own execution when it can
(the Prefect executor cancels a flow's coroutine, which abandons the model call). When
it cannot, or has no such method, `JobCancelled` is raised in the job's thread at its
next Python instruction, as a deadline does (deadlines.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from scheduler_core.deadlines import raise_in
from scheduler_core.errors import JobCancelled
from scheduler_core.statuses import JobRunStatus
from scheduler_core.threads import started_once
from scheduler_core.values import Outcome

log = logging.getLogger("scheduler_core.cancellation")

CANCELLED_ERROR = "cancelled by a user while it ran"

Reader = Callable[[Sequence[int]], list[int]]


class Cancellations:
    """The jobs this process runs, and which of them a user cancelled."""

    def __init__(
        self, read_requested: Reader, *, interval: float, executor: Callable[[], object]
    ) -> None:
        self._read = read_requested
        self._executor = executor
        self._interval = interval
        self._lock = threading.Lock()
        self._running: dict[int, int] = {}  # job id -> the thread executing it
        self._requested: set[int] = set()
        self._raised: set[int] = set()  # jobs whose thread got JobCancelled raised in it
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the watching thread now (the worker loop's start), not in a job's time."""
        with self._lock:
            self._thread = started_once(self._thread, self._watch, "llmsched-cancels")

    def begin(self, job_id: int) -> None:
        """The calling thread starts executing `job_id`."""
        with self._lock:
            self._running[job_id] = threading.get_ident()
            self._thread = started_once(self._thread, self._watch, "llmsched-cancels")

    def end(self, job_id: int) -> bool:
        """The execution of `job_id` ended (called from its thread): True if it was
        cancelled. A `JobCancelled` still pending for this thread is cleared."""
        with self._lock:
            self._running.pop(job_id, None)
            cancelled = job_id in self._requested
            self._requested.discard(job_id)
            raised = job_id in self._raised
            self._raised.discard(job_id)
        if raised:
            raise_in(threading.get_ident(), None)
        return cancelled

    def settle(self, outcome: Outcome, *, cancelled: bool) -> Outcome:
        """A cancelled job ends CANCELLED whatever its execution returned (a flow run
        cancelled in Prefect cannot complete either)."""
        if not cancelled:
            return outcome
        return Outcome(status=JobRunStatus.CANCELLED, error=CANCELLED_ERROR, exit_code=130)

    def check(self) -> None:
        """Stop the running jobs that got a cancel request since the last check."""
        with self._lock:
            ids = [j for j in self._running if j not in self._requested]
        if not ids:
            return
        try:
            found = self._read(ids)
        except Exception as exc:  # the database is down: the next check asks again
            log.debug("action=cancel_check_failed error=%s", exc)
            return
        for job_id in found:
            self._stop(job_id)

    def _stop(self, job_id: int) -> None:
        with self._lock:
            thread_id = self._running.get(job_id)
            if thread_id is None or job_id in self._requested:
                return
            self._requested.add(job_id)
        log.warning("action=cancel_running job_id=%s", job_id)
        stopper: Callable[[int], bool] | None = getattr(self._executor(), "cancel", None)
        if stopper is not None and stopper(job_id):
            return
        with self._lock:
            if job_id not in self._running:
                return  # it ended meanwhile: nothing to stop
            self._raised.add(job_id)
            raise_in(thread_id, JobCancelled)

    def close(self) -> None:
        self._stopping.set()

    def _watch(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.check()
            except Exception:  # never let the watcher die
                log.exception("action=cancel_watch_failed")
