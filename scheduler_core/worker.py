"""The background loop: N slots, claims when a slot frees (event-driven), drains on stop."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from scheduler_core.database import is_transient
from scheduler_core.deadlines import raise_in
from scheduler_core.errors import InfrastructureError, JobInterrupted
from scheduler_core.pacing import Pacing, Slot
from scheduler_core.wakeups import Wakeups

if TYPE_CHECKING:
    from scheduler_core.dispatching import Dispatching
    from scheduler_core.values import Claim

log = logging.getLogger("scheduler_core.worker")

CANCEL_SECONDS = 3.0
"""How long cancelled executions and abandoned records get to end before their threads
are interrupted."""
INTERRUPT_SECONDS = 10.0
"""How long interrupted jobs get to hand themselves back after a drain timed out."""


class WorkerLoop:
    """Owns threads only; every state change goes through the service (one code path)."""

    def __init__(self, service: Dispatching, *, slots: int) -> None:
        self.service = service
        self.slots = slots
        self.running = 0
        self._lock = threading.Lock()
        self._draining = threading.Event()
        # Set when stop() gives up waiting: job threads stop retrying unwritten records.
        self._abandon = threading.Event()
        self._job_threads: set[int] = set()  # idents of the threads running a job
        self._idle = threading.Condition(self._lock)
        self._pacing = Pacing(serial_writes=service.db.is_sqlite)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="llmsched-job")
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="llmsched-dispatcher", daemon=True
        )
        self._recovery = threading.Thread(
            target=self._recovery_loop, name="llmsched-recovery", daemon=True
        )
        # Work queued or slots freed by other processes wake the dispatcher at once.
        self._wakeups = Wakeups(
            service.db.engine.url, service.signal.notify, wanted=self._would_fill
        )

    def start(self) -> None:
        log.info("action=worker_start worker_id=%s slots=%s", self.service.worker_id, self.slots)
        self._run_recovery()
        # Before the first job: started by it, they made it look long (pacing.py).
        self.service.deadlines.start()
        self.service.cancellations.start()
        self._dispatcher.start()
        self._recovery.start()
        self._wakeups.start()

    def stop(self, timeout: float) -> bool:
        """No new dispatch; running jobs finish. True if they all did within `timeout`."""
        self._draining.set()
        self._wakeups.stop()
        self.service.signal.notify()
        with self._idle:
            drained = self._idle.wait_for(lambda: self.running == 0, timeout=timeout)
        self._dispatcher.join(timeout=5)
        self._pool.shutdown(wait=drained)
        log.info(
            "action=worker_stop worker_id=%s drained=%s still_running=%s",
            self.service.worker_id,
            drained,
            self.running,
        )
        return drained

    def interrupt_running(self) -> None:
        """The drain timed out: stop what still runs, so each job thread hands its job back
        to the queue (a shutdown is not the job's failure) and the process can exit."""
        self._abandon.set()  # records still waiting for the database are kept on disk
        interrupt = getattr(self.service.executor, "interrupt", None)
        if interrupt is not None:
            interrupt()  # an executor that runs coroutines cancels them
        with self._idle:
            self._idle.wait_for(lambda: self.running == 0, timeout=CANCEL_SECONDS)
        with self._lock:
            threads = list(self._job_threads)
        for thread_id in threads:
            raise_in(thread_id, JobInterrupted)  # Python code stops at its next instruction
        with self._idle:
            self._idle.wait_for(lambda: self.running == 0, timeout=INTERRUPT_SECONDS)

    def _free(self) -> int:
        with self._lock:
            return self.slots - self.running

    def _would_fill(self) -> bool:
        """Would the dispatcher fill a slot now (so a wake-up is worth sending)?"""
        return self._free() > 0 and not self._pacing.advancing()

    def _dispatch_loop(self) -> None:
        """Claim while slots are free; pause while a dependency is down. Never dies: every
        error is logged and waited out."""
        service = self.service
        signal = service.signal
        poll = service.settings.poll_interval
        reconciled = time.monotonic()
        while not self._draining.is_set():
            try:
                if service.availability.paused:
                    if not service.availability.wait_until_available(self._draining):
                        break
                    service.reconcile()
                    reconciled = time.monotonic()
                if time.monotonic() - reconciled > service.settings.recovery_interval:
                    service.reconcile()
                    reconciled = time.monotonic()
                seen = signal.version
                wait = poll
                while self._free() > 0 and not self._draining.is_set():
                    look = self._pacing.wait_to_fill()
                    if look:  # the running slots take the queued jobs themselves
                        wait = min(look, poll)
                        break
                    if not self._start_next():
                        break
                signal.wait(seen, wait)
            except Exception as exc:
                self._dispatch_error(exc)

    def _dispatch_error(self, exc: Exception) -> None:
        if _is_fault(exc):
            self.service.availability.fault("database", f"{type(exc).__name__}: {exc}")
        else:  # a bug or an unknown failure: logged, then tried again after a pause
            log.exception("action=dispatch_error worker_id=%s", self.service.worker_id)
            self._draining.wait(1.0)

    def _start_next(self) -> bool:
        # Its own frame: the loop must not keep the last claim alive while it waits.
        if self.service.availability.paused:
            return False
        claim = self.service.claim_next(look_first=True)
        if claim is None:
            return False
        slot = self._pacing.slot()
        slot.handed()  # seen as advancing until its thread picks the job up
        with self._lock:
            self.running += 1
        self._pool.submit(self._execute, claim, slot)
        return True

    def _may_claim(self, slot: Slot) -> bool:
        """May a slot that just ended a job claim the next one itself?"""
        return (
            not self._draining.is_set()
            and not self.service.availability.paused
            and self._pacing.may_chain(slot)
        )

    def _execute(self, claim: Claim, slot: Slot) -> None:
        with self._lock:
            self._job_threads.add(threading.get_ident())
        try:
            self.service.run_claims(
                claim, until=self._abandon, more=lambda: self._may_claim(slot), slot=slot
            )
        except JobInterrupted:
            pass  # handed back to the queue by execute_claim
        finally:
            self._pacing.drop(slot)
            with self._idle:
                self._job_threads.discard(threading.get_ident())
                self.running -= 1
                self._idle.notify_all()
            self.service.signal.notify()
            self._wakeups.slot_freed()

    def _recovery_loop(self) -> None:
        interval = self.service.settings.recovery_interval
        while not self._draining.wait(interval):
            self._run_recovery()

    def _run_recovery(self) -> None:
        try:
            report = self.service.recover()
            if report.running_jobs_recovered or report.workers_marked_dead:
                log.warning("action=recovery report=%s", report)
        except Exception as exc:
            if _is_fault(exc):
                self.service.availability.fault("database", f"{type(exc).__name__}: {exc}")
            else:
                log.exception("action=recovery_failed worker_id=%s", self.service.worker_id)


def _is_fault(exc: BaseException) -> bool:
    """A dependency's fault (database down, locked or restarting), not a bug."""
    return isinstance(exc, InfrastructureError) or is_transient(exc)
