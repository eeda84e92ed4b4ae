"""Dispatching: claim the next eligible job, run it through the executor, record its
end; the background loop and crash recovery passes are driven from here."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from scheduler_core import references
from scheduler_core.combining import Combiner
from scheduler_core.deadlines import DeadlineExceeded, Watchdog, deadline_error
from scheduler_core.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    InvalidJobError,
    InvalidStateError,
    JobInterrupted,
    StaleStateError,
)
from scheduler_core.executor import ExecutionContext
from scheduler_core.recovery import RecoveryReport, recover
from scheduler_core.redaction import redact
from scheduler_core.rules import faults
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Claim, Claims, Finish, Job, JobRun, Outcome, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from scheduler_core.availability import Availability
    from scheduler_core.cancellation import Cancellations
    from scheduler_core.database import Database
    from scheduler_core.executor import Executor
    from scheduler_core.holdings import Holdings
    from scheduler_core.membership import Membership
    from scheduler_core.pacing import Slot
    from scheduler_core.plugins import Plugins
    from scheduler_core.registry import JobType, Registry
    from scheduler_core.run_records import RunRecords
    from scheduler_core.settings import SchedulerSettings
    from scheduler_core.signal import Signal
    from scheduler_core.spool import Spool
    from scheduler_core.store import Store

log = logging.getLogger("scheduler_core")
LOCKED_HEAD_SECONDS = 2.0
"""PostgreSQL: how long a claim keeps trying for a claimable job another transaction
has locked (a claim elsewhere, which then starts it, or a short write)."""
LOCKED_HEAD_RETRY_SECONDS = 0.005
LOCKED_HEAD_MAX_PAUSE = 0.1
"""The pause doubles up to this: a lock held long is not read 200 times a second."""
LOGGED_ERROR_CHARS = 300  # of a run's error (redacted when written) on its finish line


class Dispatching:
    """The dispatching part of SchedulerService."""

    if TYPE_CHECKING:  # set by SchedulerService
        db: Database
        settings: SchedulerSettings
        store: Store
        registry: Registry
        executor: Executor
        runs: RunRecords
        plugins: Plugins
        signal: Signal
        membership: Membership
        worker_id: str
        availability: Availability
        spool: Spool
        deadlines: Watchdog
        holdings: Holdings
        cancellations: Cancellations
        _loop: Any

    def dispatch_one(self) -> tuple[Job, JobRun] | None:
        """Claim the next eligible job and run it to its end in this thread."""
        self.membership.register(slots=max(1, self.membership.slots or 0))
        claim = self.claim_next()
        if claim is None:
            return None
        finish = self.execute_claim(claim)
        return finish.job, finish.run

    def claim_next(self, *, look_first: bool = False) -> Claim | None:
        """Claim the next eligible job for this worker (the loop's and dispatch_one's step).

        `look_first` (an idle slot's try): on SQLite, look for a job in a read
        transaction before taking the write lock, so that workers with nothing to do
        do not hold the lock in turn while another process waits to write (SQLite's
        busy handler sleeps for milliseconds between its tries)."""
        if self.membership.slots is None:
            self.membership.register(slots=1)
        if look_first and self.db.is_sqlite and not self.db.read(self._claimable):
            return None
        # PostgreSQL claims skip the rows other transactions hold (SKIP LOCKED), so that
        # workers never queue behind each other's claims. Other short writes lock a job
        # too (its flow run's id, a new priority): while a claim passes over a job it
        # could have claimed but for a lock, look again until the lock is gone, within
        # a deadline.
        claims = self._claimed(self._claim_in)
        deadline = time.monotonic() + LOCKED_HEAD_SECONDS
        pause = LOCKED_HEAD_RETRY_SECONDS
        while not claims and claims.passed_over and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, LOCKED_HEAD_MAX_PAUSE)
            claims = self._claimed(self._claim_in)
        return claims.first

    def _claimable(self, conn: Connection) -> bool:
        return self.store.has_claimable(
            conn, job_types=self.registry.names(), now=utcnow(), bindings=self.registry.bindings
        )

    def _claim_in(self, conn: Connection, count: int = 1, *, after_end: bool = False) -> Claims:
        return self.store.claim_many(
            conn,
            count,
            worker_id=self.worker_id,
            job_types=self.registry.names(),
            now=utcnow(),
            bindings=self.registry.bindings,
            after_end=after_end,
        )

    def _claimed(self, claim: Callable[[Connection], Claims]) -> Claims:
        """Run a claim's transaction and hold what it claimed (holdings.py)."""
        with self.holdings.claiming():
            claimed = self.db.write(claim)
            for one in claimed:
                self.holdings.hold(one)
        return claimed

    def execute_claim(self, claim: Claim, *, until: threading.Event | None = None) -> Finish:
        """Run a claimed job through the executor and record its end in one transaction.

        With `until` (the worker loop's), a record that cannot be written because the
        database is down is retried until it is written or `until` is set: the result
        is in memory, so it is neither lost nor run again.
        """
        return self._execute_claim(claim, until=until, more=None)[0]

    def run_claims(
        self, claim: Claim, *, until: threading.Event, more: Callable[[], bool], slot: Slot
    ) -> None:
        """Run `claim`, then, while `more()`, the next job claimed in the transaction that
        records the previous one's end: one write per job and no hand-off between
        threads while work is queued (the worker loop's slots; `slot` follows their
        phases, pacing.py)."""
        current: Claim | None = claim
        while current is not None:
            running = current
            try:
                current = self._execute_claim(running, until=until, more=more, slot=slot)[1]
            except Exception:  # a bug: logged with the job it hit; the slot goes idle
                log.exception(
                    "action=execute_failed job_id=%s run_id=%s",
                    running.job.job_id,
                    running.run.run_id,
                )
                return

    def _execute_claim(
        self,
        claim: Claim,
        *,
        until: threading.Event | None,
        more: Callable[[], bool] | None,
        slot: Slot | None = None,
    ) -> tuple[Finish, Claim | None]:
        try:
            try:
                if slot is not None:
                    slot.running()
                outcome, expired = self._execute(claim)
                if slot is not None:
                    slot.writing()
            except KeyboardInterrupt:
                for _ in range(2):  # a second interrupt may arrive while it is handed back
                    try:
                        self._hand_back(claim)
                        break
                    except KeyboardInterrupt:
                        continue
                raise JobInterrupted(
                    f"job {claim.job.job_id} is back in the queue, its attempt not counted"
                ) from None
            if expired is not None:
                return expired, None
            try:
                return self._record(claim, outcome, until=until, more=more)
            except KeyboardInterrupt:  # stopped while its end waited for the database
                self.spool.keep(self.worker_id, claim, outcome)
                raise JobInterrupted(f"job {claim.job.job_id} ended; its end is kept") from None
        finally:
            self.holdings.release(claim)

    def _execute(self, claim: Claim) -> tuple[Outcome, Finish | None]:
        """The outcome, under the job's deadline; with the Finish the watchdog recorded if
        the job overran its deadline and its grace."""
        job_type = self.registry.get(claim.job.job_type)
        seconds = (
            claim.job.timeout_seconds
            or job_type.timeout_seconds
            or self.settings.job_timeout_seconds
        )
        expired: list[Finish] = []
        # The deadline's outcome is built only once it passed: most jobs end in time.
        watch = self.deadlines.watch(
            seconds, on_expiry=lambda: expired.append(self.record(claim, faults_deadline(seconds)))
        )
        try:
            try:
                outcome = self._run_executor(claim, job_type, seconds)
            finally:
                state = self.deadlines.done(watch)
        except DeadlineExceeded:
            state = "fired"
        if state == "expired":
            return faults_deadline(seconds), expired[0] if expired else self._written(claim)
        return (faults_deadline(seconds) if state == "fired" else outcome), None

    def _run_executor(self, claim: Claim, job_type: JobType, seconds: float) -> Outcome:
        # A group member's references to earlier members' outputs (references.py).
        job, problem = references.at_start(claim, job_type)
        if problem is not None:
            return Outcome(status=JobRunStatus.FAILED, error=problem, exit_code=1)
        ctx = ExecutionContext(job=job, run=claim.run, callbacks=self.runs, timeout_seconds=seconds)
        log.info(
            "action=start job_id=%s run_id=%s type=%s attempt=%s resource=%s",
            claim.job.job_id,
            claim.run.run_id,
            claim.job.job_type,
            claim.job.attempt,
            claim.job.resource,
        )
        job_id = claim.job.job_id or 0
        self.cancellations.begin(job_id)
        cancelled = False
        try:
            outcome = self.executor.execute(job_type, ctx)
        except Exception as exc:  # an executor must not raise; if it does, classify it
            outcome = faults.from_exception(exc) or Outcome(
                status=JobRunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", exit_code=1
            )
        finally:
            cancelled = self.cancellations.end(job_id)
        return self.cancellations.settle(outcome, cancelled=cancelled)

    def record(
        self, claim: Claim, outcome: Outcome, *, until: threading.Event | None = None
    ) -> Finish:
        """Write how `claim` ended: finished (retry and group rules), or back in the queue
        after an infrastructure fault (rules/faults.py). Its error text is bounded and
        redacted first: it goes to the database, logs, webhooks and Prefect."""
        return self._record(claim, outcome, until=until, more=None)[0]

    def _record(
        self,
        claim: Claim,
        outcome: Outcome,
        *,
        until: threading.Event | None,
        more: Callable[[], bool] | None,
    ) -> tuple[Finish, Claim | None]:
        """`record`, and with `more` (while it says so) the next claim in the same
        transaction."""
        if outcome.error is not None:
            outcome = replace(outcome, error=redact(outcome.error))
        attempts = 0
        while True:
            attempts += 1
            next_claim = None
            try:
                finish, next_claim = self._finish(claim, outcome, more=more)
            except StaleStateError:
                if attempts == 1:
                    raise
                finish = self._written(claim)  # an attempt that "failed" had committed
            except DatabaseUnavailableError as exc:
                if until is None:
                    raise
                self.availability.fault("database", str(exc))
                if until.wait(min(2.0**attempts * 0.1, 5.0)):
                    self.spool.keep(self.worker_id, claim, outcome)  # the process must exit
                    raise
                continue
            self._log_end(claim, outcome, finish)
            if faults.pauses(outcome):
                self.availability.fault(outcome.interrupted_by or "", outcome.error or "")
            return finish, next_claim

    def _finish(
        self, claim: Claim, outcome: Outcome, *, more: Callable[[], bool] | None
    ) -> tuple[Finish, Claim | None]:
        next_claim = None
        try:
            if faults.requeues(outcome):
                job = self._requeue(claim)
                return Finish(job=job, run=claim.run, retry=None, group=None), None
            if more is None or not more():
                return self.db.write(
                    lambda c: self.store.finish(c, claim, outcome, now=utcnow())
                ), None

            if self.db.is_sqlite:  # one writer: slots that end together share a write
                finish, next_claim = self._combined_ends.submit((claim, outcome))
            else:  # concurrent transactions, each waiting on its own round trips
                finish, next_claim = self._finish_then_claim([(claim, outcome)])[0]
            return finish, next_claim
        finally:
            if next_claim is None:  # a slot is free (else this thread took it again)
                self.signal.notify()

    @functools.cached_property
    def _combined_ends(self) -> Combiner[tuple[Claim, Outcome], tuple[Finish, Claim | None]]:
        return Combiner(self._finish_then_claim, lambda end: self._finish_then_claim([end])[0])

    def _finish_then_claim(
        self, ends: Sequence[tuple[Claim, Outcome]]
    ) -> list[tuple[Finish, Claim | None]]:
        """Record the ends of slots' jobs, then claim each slot's next job, in one
        transaction (combining.py)."""

        def write(conn: Connection) -> list[tuple[Finish, Claim | None]]:
            if len(ends) == 1 and not self.db.is_sqlite:  # one call of the cycle function
                done = self.store.end_then_claim(
                    conn,
                    *ends[0],
                    worker_id=self.worker_id,
                    job_types=self.registry.names(),
                    bindings=self.registry.bindings,
                    now=utcnow(),
                )
                if done is not None:
                    return [done]
            finishes = [self.store.finish(conn, c, o, now=utcnow()) for c, o in ends]
            claims: list[Claim | None] = list(self._claim_in(conn, len(ends), after_end=True))
            claims += [None] * (len(ends) - len(claims))
            return list(zip(finishes, claims, strict=True))

        with self.holdings.claiming():
            results = self.db.write(write)
            for _, next_claim in results:
                self.holdings.hold(next_claim)
        return results

    def _hand_back(self, claim: Claim) -> None:
        """This process is being stopped mid-job: the job goes back to the queue."""
        outcome = faults.interrupted(faults.SHUTDOWN, "the process running it was interrupted")
        if self.availability.resumed_within("database", 0):  # down now: no time to wait
            self.spool.keep(self.worker_id, claim, outcome)
            return
        try:
            self.record(claim, outcome)
        except Exception:  # kept on disk: the next recovery here hands it on
            self.spool.keep(self.worker_id, claim, outcome)

    def _requeue(self, claim: Claim) -> Job:
        return self.db.write(lambda c: self.store.requeue(c, claim))

    def _written(self, claim: Claim) -> Finish:
        """What an earlier, seemingly failed, record of `claim` wrote."""
        job = self.db.read(lambda c: self.store.get_job(c, claim.job.job_id or 0))
        run = self.db.read(lambda c: self.store.get_run(c, claim.run.run_id or 0))
        return Finish(job=job, run=run or claim.run, retry=None, group=None)

    def _log_end(self, claim: Claim, outcome: Outcome, finish: Finish) -> None:
        if faults.requeues(outcome):
            log.warning(
                "action=requeue job_id=%s run_id=%s dependency=%s error=%s",
                claim.job.job_id,
                claim.run.run_id,
                outcome.interrupted_by,
                outcome.error,
            )
            return
        error = finish.run.error
        log.info(
            "action=finish job_id=%s run_id=%s status=%s retry_job_id=%s%s",
            claim.job.job_id,
            claim.run.run_id,
            finish.run.status.value,
            finish.retry.job_id if finish.retry else None,
            f" error={error[:LOGGED_ERROR_CHARS]!r}" if error else "",
        )

    def reconcile(self) -> int:
        """Hand back to the queue this worker's RUNNING jobs that it does not hold: claims
        whose commit reached the database although the call failed (an outage). No
        attempt is counted. Called from the dispatcher thread, between claims."""
        return self._requeue_mine(held_too=False)

    def hand_back_running(self) -> int:
        """The process must stop before its running jobs ended (a drain that timed out):
        each goes back to the queue, its attempt not counted, for another worker."""
        return self._requeue_mine(held_too=True)

    def _requeue_mine(self, *, held_too: bool) -> int:
        orphans = self.holdings.orphans(
            lambda: self.db.read(
                lambda c: self.store.running_claims_by_worker(c, self.worker_id)
            ).get(self.worker_id, []),
            held_too=held_too,
        )
        handed_back = 0
        for claim in orphans:
            try:
                self._requeue(claim)
            except StaleStateError:
                continue  # it ended meanwhile
            handed_back += 1
            log.warning(
                "action=requeue_orphan job_id=%s run_id=%s", claim.job.job_id, claim.run.run_id
            )
        if handed_back:
            self.signal.notify()
        return handed_back

    # ------------------------------------------------------------------ executor records

    def attach_flow_run(self, run_id: int, flow_run_id: str) -> None:
        """Record which flow run (the executor's own run) executes a RUNNING job run (once)."""
        self.runs.attach_flow_run(run_id, flow_run_id)

    def leases_of(self, run_id: int) -> list[tuple[str, str]]:
        """The external concurrency leases a run holds (name, lease id)."""
        return self.runs.leases_of(run_id)

    # ------------------------------------------------------------------ recovery and the loop

    def recover(self) -> RecoveryReport:
        """Fail the RUNNING jobs of dead workers (retry rules apply); never touch live ones."""
        report = recover(
            self.db,
            self.store,
            me=self.worker_id,
            heartbeat_timeout=self.settings.heartbeat_timeout,
            finish=self.record,
            plugins=self.plugins,
            spool=self.spool,
            trust_heartbeats=not self.availability.resumed_within(
                "database", self.settings.heartbeat_timeout
            ),
        )
        if report.workers_marked_dead:
            self.signal.notify()
        return report

    def start(self, concurrency: int = 1) -> None:
        """Dispatch in the background with `concurrency` slots until stop()."""
        from scheduler_core.worker import WorkerLoop

        if self._loop is not None:
            raise InvalidStateError("this service is already running; call stop() first")
        if self.db.in_memory:
            raise ConfigurationError(
                "the background worker needs a database file or server: an in-memory SQLite "
                "database is one connection; use sqlite:///path/to/jobs.db"
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidJobError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.membership.register(slots=concurrency)
        self._loop = WorkerLoop(self, slots=concurrency)
        self._loop.start()
        self.plugins.start()

    def stop(self, timeout: float = 30, *, hand_back: bool = False) -> bool:
        """Stop dispatching; wait up to `timeout` for running jobs. True if all finished.

        Jobs still running then go on, unless `hand_back` (a process about to exit): they
        are stopped and go back to the queue, their attempt not counted.
        """
        if self._loop is None:
            return True
        drained = self._loop.stop(timeout)
        if not drained and hand_back:
            self._loop.interrupt_running()
            try:
                handed_back = self.hand_back_running()  # any a stuck thread could not
            except Exception as exc:  # the database is down: crash recovery takes them
                log.warning("action=hand_back_failed worker_id=%s error=%s", self.worker_id, exc)
            else:
                log.warning("action=hand_back worker_id=%s jobs=%s", self.worker_id, handed_back)
        self._loop = None
        self.membership.register(slots=0)
        return bool(drained)

    @property
    def running_count(self) -> int:
        return self._loop.running if self._loop is not None else 0


def faults_deadline(seconds: float) -> Outcome:
    """The outcome of a job stopped at its deadline: the job's own failure (retried)."""
    return Outcome(status=JobRunStatus.FAILED, error=deadline_error(seconds), exit_code=1)
