"""Dispatching: claim the next eligible job, run it through the executor, record its
end; the background loop and crash recovery passes are driven from here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scheduler_core.errors import ConfigurationError, InvalidJobError, InvalidStateError
from scheduler_core.executor import ExecutionContext
from scheduler_core.recovery import RecoveryReport, recover
from scheduler_core.values import Claim, Finish, Job, JobRun, Outcome, utcnow

if TYPE_CHECKING:
    from scheduler_core.database import Database
    from scheduler_core.executor import Executor
    from scheduler_core.membership import Membership
    from scheduler_core.plugins import Plugins
    from scheduler_core.registry import Registry
    from scheduler_core.run_records import RunRecords
    from scheduler_core.settings import SchedulerSettings
    from scheduler_core.signal import Signal
    from scheduler_core.store import Store

log = logging.getLogger("scheduler_core")


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
        _loop: Any

    def dispatch_one(self) -> tuple[Job, JobRun] | None:
        """Claim the next eligible job and run it to its end in this thread."""
        self.membership.register(slots=max(1, self.membership.slots or 0))
        claim = self.claim_next()
        if claim is None:
            return None
        finish = self.execute_claim(claim)
        return finish.job, finish.run

    def claim_next(self) -> Claim | None:
        """Claim the next eligible job for this worker (the loop's and dispatch_one's step)."""
        if self.membership.slots is None:
            self.membership.register(slots=1)
        types = self.registry.names()
        return self.db.write(
            lambda c: self.store.claim_next(
                c, worker_id=self.worker_id, job_types=types, now=utcnow()
            )
        )

    def execute_claim(self, claim: Claim) -> Finish:
        """Run a claimed job through the executor and record its end in one transaction."""
        job_type = self.registry.get(claim.job.job_type)
        ctx = ExecutionContext(job=claim.job, run=claim.run, callbacks=self.runs)
        log.info(
            "action=start job_id=%s run_id=%s type=%s attempt=%s resource=%s",
            claim.job.job_id,
            claim.run.run_id,
            claim.job.job_type,
            claim.job.attempt,
            claim.job.resource,
        )
        finish = self._finish(claim, self.executor.execute(job_type, ctx))
        log.info(
            "action=finish job_id=%s run_id=%s status=%s retry_job_id=%s",
            claim.job.job_id,
            claim.run.run_id,
            finish.run.status.value,
            finish.retry.job_id if finish.retry else None,
        )
        return finish

    def _finish(self, claim: Claim, outcome: Outcome) -> Finish:
        try:
            return self.db.write(lambda c: self.store.finish(c, claim, outcome, now=utcnow()))
        finally:
            self.signal.notify()

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
            finish=self._finish,
            plugins=self.plugins,
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

    def stop(self, timeout: float = 30) -> bool:
        """Stop dispatching; wait up to `timeout` for running jobs. True if all finished."""
        if self._loop is None:
            return True
        drained = self._loop.stop(timeout)
        self._loop = None
        self.membership.register(slots=0)
        return bool(drained)

    @property
    def running_count(self) -> int:
        return self._loop.running if self._loop is not None else 0
