"""SchedulerService: the public Python API. It validates, then delegates to the store."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from scheduler_core.database import Database, create_engine, create_schema
from scheduler_core.errors import (
    ConfigurationError,
    EmptyGroupError,
    InvalidJobError,
    InvalidParamsError,
    InvalidPriorityError,
    InvalidStateError,
    ReservationTimeoutError,
    RunNotFoundError,
    RunNotRetryableError,
    SchedulerError,
    StaleStateError,
)
from scheduler_core.executor import CallableExecutor, ExecutionContext, Executor
from scheduler_core.liveness import HOST, process_started_at, worker_is_alive
from scheduler_core.models import Job, JobGroup, JobRun, Reservation, Worker, utcnow
from scheduler_core.registry import Handler, JobType, Registry, ResourceRule, Validator
from scheduler_core.retry import RetryPolicy
from scheduler_core.settings import SchedulerSettings
from scheduler_core.signal import Signal
from scheduler_core.statuses import JobOrigin, JobRunStatus, JobStatus, WorkerStatus
from scheduler_core.store import Claim, Finish, JobSpec, Outcome, Store
from scheduler_core.webhooks import WebhookDispatcher, install_webhooks

log = logging.getLogger("scheduler_core")


@dataclass(slots=True)
class RecoveryReport:
    running_jobs_recovered: int = 0
    retries_created: int = 0
    workers_marked_dead: int = 0
    reservations_released: int = 0
    recovered_job_ids: list[int] = field(default_factory=list)


RecoveryHook = Callable[[Claim, Finish], None]


class SchedulerService:
    """Queue, dispatch and execute jobs by the rules in docs/scheduling-rules.md."""

    def __init__(self, db: Database, settings: SchedulerSettings) -> None:
        self.db = db
        self.settings = settings
        self.store = Store(
            dialect=db.engine.dialect.name,
            log_dir=settings.resolved_log_dir(),
            retry_policy=RetryPolicy(
                backoff_seconds=settings.retry_backoff_seconds,
                factor=settings.retry_backoff_factor,
                max_backoff_seconds=settings.retry_backoff_max_seconds,
            ),
        )
        self.registry = Registry()
        self.executor: Executor = CallableExecutor()
        self.worker_id = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.signal = Signal()
        self.recovery_hooks: list[RecoveryHook] = []
        self._registered_slots: int | None = None
        self._worker_lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._closing = threading.Event()
        self._loop: Any = None
        # Every process writes webhook events with its state changes (the outbox);
        # the sender thread runs beside the worker loop.
        self.webhooks: WebhookDispatcher = install_webhooks(self)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        settings: SchedulerSettings | None = None,
        **overrides: Any,
    ) -> SchedulerService:
        """Open (and on first use create) the database at `url`.

        Keyword overrides are SchedulerSettings fields, e.g. ``max_retries=3,
        retry_backoff_seconds=0``; anything not given comes from ``LLMSCHED_*``
        environment variables or the defaults.
        """
        try:
            merged = (settings or SchedulerSettings()).model_dump()
            merged.update(overrides)
            if url is not None:
                merged["database_url"] = url
            resolved = SchedulerSettings.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigurationError(
                f"invalid scheduler settings ({problems}); see docs/configuration.md"
            ) from None
        engine = create_engine(resolved.resolved_database_url())
        db = Database(engine, retry_seconds=resolved.db_retry_seconds)
        create_schema(engine)
        return cls(db, resolved)

    def close(self) -> None:
        """Drain the loop, stop the sender, mark this worker STOPPED, release its reservations.

        If running jobs outlast the drain, the worker stays registered (and heartbeating)
        as RUNNING so that no other worker recovers jobs that are still executing.
        """
        if self._loop is not None and not self.stop(timeout=self.settings.heartbeat_timeout):
            log.warning(
                "action=close_undrained worker_id=%s: jobs still running; the worker stays "
                "RUNNING until they end or the process exits",
                self.worker_id,
            )
            return
        self._closing.set()
        self.webhooks.stop(timeout=10)
        close_executor = getattr(self.executor, "close", None)
        if close_executor is not None:
            close_executor()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self._registered_slots is not None:

            def stopped(conn: Any) -> None:
                now = utcnow()
                self.store.set_worker_status(conn, self.worker_id, WorkerStatus.STOPPED, now=now)
                self.store.release_reservations_of(conn, [self.worker_id], now=now)

            self.db.write(stopped)
        self.db.dispose()

    def __enter__(self) -> SchedulerService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ registration

    def register(
        self,
        job_type: str,
        handler: Handler,
        *,
        resource: ResourceRule = "default",
        validate: Validator | None = None,
    ) -> JobType:
        """Map a job type to its handler and resource class (a name or a function of params).

        `validate(params)` runs at enqueue time; whatever it raises is reported as
        InvalidParamsError, so bad params never reach the queue.
        """
        return self.registry.register(job_type, handler, resource=resource, validate=validate)

    def set_resource_limit(self, resource: str, limit: int | None) -> None:
        """Cap RUNNING jobs of a resource class across every worker (`ollama` is capped at 1)."""
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise InvalidJobError(
                f"resource limit must be a positive integer or None, got {limit!r}"
            )
        self.db.write(lambda c: self.store.set_resource_limit(c, resource, limit))

    def resource_limits(self) -> dict[str, int | None]:
        return self.db.read(self.store.resource_limits)

    # ------------------------------------------------------------------ submitting

    def _spec(
        self,
        job_type: str,
        params: Any,
        *,
        priority: Any = 0,
        max_retries: int | None = None,
        origin: JobOrigin = JobOrigin.QUEUE,
        position: int | None = None,
        not_before: datetime | None = None,
    ) -> JobSpec:
        jt = self.registry.get(job_type)
        params = _check_params(params, job_type)
        if jt.validate is not None:
            try:
                jt.validate(params)
            except SchedulerError:
                raise
            except Exception as exc:
                raise InvalidParamsError(
                    f"params for job type {job_type!r} are invalid: {exc}"
                ) from exc
        try:
            resource = jt.resource_for(params)
        except SchedulerError:
            raise
        except Exception as exc:
            raise InvalidParamsError(
                f"cannot tell the resource class of this {job_type!r} job: {exc}"
            ) from exc
        _check_int(
            priority,
            name="priority (higher runs first)",
            low=-(2**31),
            high=2**31 - 1,
            error=InvalidPriorityError,
        )
        retries = self.settings.max_retries if max_retries is None else max_retries
        _check_int(retries, name="max_retries", low=0, high=1000, error=InvalidJobError)
        if position is not None:
            _check_int(
                position, name="position", low=-(2**63), high=2**63 - 1, error=InvalidJobError
            )
        if not_before is not None and not_before.tzinfo is None:
            raise InvalidJobError("not_before must be timezone-aware, e.g. datetime.now(UTC)")
        return JobSpec(
            job_type=job_type,
            params=params,
            resource=resource,
            priority=priority,
            max_retries=retries,
            origin=origin,
            position=position,
            not_before=not_before,
        )

    def enqueue_job(
        self,
        job_type: str,
        params: Mapping[str, Any] | None = None,
        *,
        priority: int = 0,
        max_retries: int | None = None,
        not_before: datetime | None = None,
        position: int | None = None,
        origin: JobOrigin | str = JobOrigin.QUEUE,
    ) -> Job:
        """Queue one job; it runs when it is first in line and its resource has a slot."""
        spec = self._spec(
            job_type,
            {} if params is None else params,
            priority=priority,
            max_retries=max_retries,
            origin=origin,
            position=position,
            not_before=not_before,
        )
        (job,) = self.db.write(lambda c: self.store.insert_jobs(c, [spec], now=utcnow()))
        self.signal.notify()
        return job

    def enqueue_jobs(self, jobs: Sequence[Mapping[str, Any]]) -> list[Job]:
        """Queue many jobs in one transaction: all are written or none."""
        specs = [self._spec_from_mapping(j, index=i) for i, j in enumerate(jobs)]
        if not specs:
            return []
        created = self.db.write(lambda c: self.store.insert_jobs(c, specs, now=utcnow()))
        self.signal.notify()
        return created

    def _spec_from_mapping(self, item: Mapping[str, Any], *, index: int) -> JobSpec:
        if not isinstance(item, Mapping) or "job_type" not in item:
            raise InvalidJobError(
                f"job #{index} must be a mapping with at least 'job_type' (and 'params'), "
                f"got {item!r}"
            )
        allowed = {"job_type", "params", "priority", "max_retries", "not_before", "position"}
        unknown = set(item) - allowed
        if unknown:
            raise InvalidJobError(
                f"job #{index} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        return self._spec(
            item["job_type"],
            item["params"] if item.get("params") is not None else {},
            priority=item.get("priority", 0),
            max_retries=item.get("max_retries"),
            not_before=item.get("not_before"),
            position=item.get("position"),
        )

    def create_job_group(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        name: str = "",
        origin: JobOrigin | str = JobOrigin.QUEUE,
    ) -> tuple[JobGroup, list[Job]]:
        """Queue members that run strictly one after another and stop on failure."""
        _check_text(name, name="group name", limit=256)
        if not jobs:
            raise EmptyGroupError(
                f"job group {name!r} has no members: pass at least one job in jobs=[...]"
            )
        specs = [self._spec_from_mapping(j, index=i) for i, j in enumerate(jobs)]
        origin = self._spec(specs[0].job_type, specs[0].params, origin=origin).origin
        specs = [
            JobSpec(
                job_type=s.job_type,
                params=s.params,
                resource=s.resource,
                priority=s.priority,
                max_retries=s.max_retries,
                origin=origin,
                position=s.position,
                not_before=s.not_before,
            )
            for s in specs
        ]
        group, members = self.db.write(
            lambda c: self.store.insert_group(c, name=name, specs=specs, now=utcnow())
        )
        self.signal.notify()
        return group, members

    def update_job_params(self, job_id: int, params: Mapping[str, Any]) -> Job:
        """Change a QUEUED job's params; refused once it left QUEUED (INV-001)."""
        job = self.get_job(job_id)
        spec = self._spec(job.job_type, params, priority=job.priority)
        return self.db.write(
            lambda c: self.store.update_params(c, job_id, spec.params, resource=spec.resource)
        )

    # ------------------------------------------------------------------ cancelling

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a QUEUED job; a RUNNING job is never preempted (JobNotCancellableError)."""
        job = self.db.write(lambda c: self.store.cancel_job(c, job_id, now=utcnow()))
        self.signal.notify()
        return job

    def cancel_job_group(self, group_id: int) -> JobGroup:
        """Cancel queued members; a running member finishes, then the group is CANCELLED."""
        group = self.db.write(lambda c: self.store.cancel_group(c, group_id, now=utcnow()))
        self.signal.notify()
        return group

    # ------------------------------------------------------------------ reading

    def get_job(self, job_id: int) -> Job:
        return self.db.read(lambda c: self.store.get_job(c, job_id))

    def get_job_run_for_job(self, job_id: int) -> JobRun | None:
        return self.db.read(lambda c: self.store.get_run_for_job(c, job_id))

    def get_job_run(self, run_id: int) -> JobRun:
        run = self.db.read(lambda c: self.store.get_run(c, run_id))
        if run is None:
            raise RunNotFoundError(f"job run {run_id} does not exist")
        return run

    def get_job_group(self, group_id: int) -> JobGroup:
        return self.db.read(lambda c: self.store.get_group(c, group_id))

    def list_jobs(
        self,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        *,
        job_type: str | None = None,
        group_id: int | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        statuses = _statuses(status)
        return self.db.read(
            lambda c: self.store.list_jobs(
                c, statuses=statuses, job_type=job_type, group_id=group_id, limit=limit
            )
        )

    def list_queued_jobs(self) -> list[Job]:
        """QUEUED jobs in the order the dispatcher considers them."""
        return self.db.read(self.store.queued_in_dispatch_order)

    def get_retry_chain(self, job_id: int) -> list[Job]:
        return self.db.read(lambda c: self.store.retry_chain(c, job_id))

    def list_workers(self) -> list[Worker]:
        return self.db.read(self.store.list_workers)

    # ------------------------------------------------------------------ retry

    def retry_run(self, run_id: int) -> Job:
        """Manually retry a FAILED run: a new QUEUED job linked by retry_of, always allowed.

        A group member's manual retry runs on its own, outside the group: the group keeps
        its one-member-at-a-time order and its terminal status is final.
        """
        run = self.get_job_run(run_id)
        if run.status != JobRunStatus.FAILED:
            raise RunNotRetryableError(
                f"run {run_id} is {run.status.value}: only a FAILED run can be retried"
            )

        def tx(conn: Any) -> Job:
            original = self.store.get_job(conn, run.job_id)
            return self.store.insert_linked_job(
                conn, original, not_before=None, now=utcnow(), keep_group=False
            )

        job = self.db.write(tx)
        self.signal.notify()
        return job

    # ------------------------------------------------------------------ dispatching

    def dispatch_one(self) -> tuple[Job, JobRun] | None:
        """Claim the next eligible job and run it to its end in this thread."""
        self._register_worker(slots=max(1, self._registered_slots or 0))
        claim = self.claim_next()
        if claim is None:
            return None
        finish = self.execute_claim(claim)
        return finish.job, finish.run

    def claim_next(self) -> Claim | None:
        """Claim the next eligible job for this worker (the loop's and dispatch_one's step)."""
        if self._registered_slots is None:
            self._register_worker(slots=1)
        types = self.registry.names()
        return self.db.write(
            lambda c: self.store.claim_next(
                c, worker_id=self.worker_id, job_types=types, now=utcnow()
            )
        )

    def execute_claim(self, claim: Claim) -> Finish:
        """Run a claimed job through the executor and record its end in one transaction."""
        job_type = self.registry.get(claim.job.job_type)
        ctx = ExecutionContext(job=claim.job, run=claim.run, service=self)
        log.info(
            "action=start job_id=%s run_id=%s type=%s attempt=%s resource=%s",
            claim.job.job_id,
            claim.run.run_id,
            claim.job.job_type,
            claim.job.attempt,
            claim.job.resource,
        )
        outcome = self.executor.execute(job_type, ctx)
        finish = self._finish(claim, outcome)
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
            finish = self.db.write(lambda c: self.store.finish(c, claim, outcome, now=utcnow()))
        finally:
            self.signal.notify()
        return finish

    # ------------------------------------------------------------------ execution references

    def attach_flow_run(self, run_id: int, flow_run_id: str) -> None:
        """Record which Prefect flow run executes a RUNNING job run (once)."""
        self.db.write(lambda c: self.store.set_flow_run_id(c, run_id, flow_run_id))

    def record_lease(self, run_id: int, *, name: str, lease_id: str) -> None:
        """Remember an external concurrency lease a run holds, for crash recovery."""
        self.db.write(
            lambda c: self.store.record_lease(
                c, run_id=run_id, name=name, lease_id=lease_id, now=utcnow()
            )
        )

    def clear_lease(self, run_id: int, lease_id: str | None = None) -> None:
        self.db.write(lambda c: self.store.clear_lease(c, run_id=run_id, lease_id=lease_id))

    def leases_of(self, run_id: int) -> list[tuple[str, str]]:
        return self.db.read(lambda c: self.store.leases_of(c, run_id))

    # ------------------------------------------------------------------ direct execution

    def reserve_next_slot(self, reserved_by: str, *, ttl: float | None = None) -> Reservation:
        """Pause queue dispatch and claim the next free slot for a direct execution.

        While this process lives its heartbeat keeps the reservation alive; if it
        vanishes the reservation expires `ttl` seconds (default reservation_ttl) later.
        """
        _check_text(reserved_by, name="reserved_by", limit=256)
        if ttl is not None and (isinstance(ttl, bool) or not ttl > 0):
            raise InvalidJobError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self._register_worker(slots=self._registered_slots or 0)
        reservation = self.db.write(
            lambda c: self.store.insert_reservation(
                c,
                reserved_by=reserved_by,
                worker_id=self.worker_id,
                ttl=self.settings.reservation_ttl if ttl is None else ttl,
                now=utcnow(),
            )
        )
        log.info(
            "action=reserve reservation_id=%s reserved_by=%s",
            reservation.reservation_id,
            reserved_by,
        )
        return reservation

    def has_active_reservation(self) -> bool:
        return bool(self.db.read(lambda c: self.store.active_reservations(c, now=utcnow())))

    def active_reservations(self) -> list[Reservation]:
        return self.db.read(lambda c: self.store.active_reservations(c, now=utcnow()))

    def release_reservation(self, reservation_id: int) -> bool:
        """Release a reservation; the queue resumes. False if it had already ended."""
        released = self.db.write(
            lambda c: self.store.release_reservation(c, reservation_id, now=utcnow())
        )
        self.signal.notify()
        return released

    def execute_direct(
        self,
        job_type: str,
        params: Mapping[str, Any] | None = None,
        *,
        reserved_by: str = "direct",
        priority: int = 0,
        max_retries: int | None = None,
        timeout: float | None = None,
        reservation_id: int | None = None,
    ) -> JobRun:
        """Run a job now, in this thread, in the next free slot, without preempting anything.

        Order: running work finishes, then this job, then the rest of the queue.
        """
        spec = self._spec(
            job_type,
            {} if params is None else params,
            priority=priority,
            max_retries=max_retries,
            origin=JobOrigin.DIRECT,
        )
        own = reservation_id is None
        rid = reservation_id or self.reserve_next_slot(reserved_by).reservation_id
        assert rid is not None
        try:
            claim = self._wait_for_slot(spec, rid, timeout)
            return self.execute_claim(claim).run
        finally:
            if own:
                self.release_reservation(rid)

    def _wait_for_slot(self, spec: JobSpec, reservation_id: int, timeout: float | None) -> Claim:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self.signal.version
            claim = self.db.write(
                lambda c: self.store.claim_direct(
                    c,
                    spec,
                    reservation_id=reservation_id,
                    worker_id=self.worker_id,
                    heartbeat_timeout=self.settings.heartbeat_timeout,
                    now=utcnow(),
                )
            )
            if claim is not None:
                return claim
            wait = self.settings.direct_poll_interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReservationTimeoutError(
                        f"no free slot for direct {spec.job_type!r} job within {timeout}s; "
                        "running work is never preempted: retry later or raise the timeout"
                    )
                wait = min(wait, remaining)
            self.signal.wait(seen, wait)

    # ------------------------------------------------------------------ recovery

    def recover(self) -> RecoveryReport:
        """Fail the RUNNING jobs of dead workers (retry rules apply); never touch live ones."""
        report = RecoveryReport()
        now = utcnow()
        running = self.db.read(self.store.running_claims_by_worker)
        workers = {w.worker_id: w for w in self.list_workers()}
        timeout = self.settings.heartbeat_timeout

        def dead(worker_id: str | None) -> bool:
            if worker_id == self.worker_id:
                return False
            worker = workers.get(worker_id) if worker_id else None
            return not worker_is_alive(worker, now=now, heartbeat_timeout=timeout)

        dead_workers = {
            wid for wid, w in workers.items() if w.status == WorkerStatus.RUNNING and dead(wid)
        }
        for worker_id, claims in running.items():
            if not dead(worker_id):
                continue
            worker = workers.get(worker_id) if worker_id else None
            where = f"{worker.host} pid {worker.pid}" if worker else "unknown"
            for claim in claims:
                outcome = Outcome(
                    status=JobRunStatus.FAILED,
                    error=(
                        f"recovered after crash: worker {worker_id} ({where}) died while the "
                        "job was RUNNING"
                    ),
                    exit_code=None,
                )
                try:
                    finish = self._finish(claim, outcome)
                except StaleStateError:
                    continue  # another process recovered it first
                report.running_jobs_recovered += 1
                report.recovered_job_ids.append(claim.job.job_id or 0)
                report.retries_created += finish.retry is not None
                log.warning(
                    "action=recover job_id=%s run_id=%s worker_id=%s retry_job_id=%s",
                    claim.job.job_id,
                    claim.run.run_id,
                    worker_id,
                    finish.retry.job_id if finish.retry else None,
                )
                for hook in self.recovery_hooks:
                    try:
                        hook(claim, finish)
                    except Exception:  # one failing hook must not stop the recovery pass
                        log.exception("action=recovery_hook_failed job_id=%s", claim.job.job_id)
        if dead_workers:
            ids = sorted(dead_workers)

            def mark(conn: Any) -> int:
                for wid in ids:
                    self.store.set_worker_status(conn, wid, WorkerStatus.DEAD, now=now)
                return self.store.release_reservations_of(conn, ids, now=now)

            report.reservations_released = self.db.write(mark)
            report.workers_marked_dead = len(ids)
            self.signal.notify()
        return report

    # ------------------------------------------------------------------ workers

    def _register_worker(self, *, slots: int) -> None:
        """Record this process as a worker (once), and keep its heartbeat going."""
        with self._worker_lock:
            if self._registered_slots == slots:
                return
            now = utcnow()
            worker = Worker(
                worker_id=self.worker_id,
                host=HOST,
                pid=os.getpid(),
                process_started_at=process_started_at(),
                slots=slots,
                status=WorkerStatus.RUNNING,
                started_at=now,
                heartbeat_at=now,
            )
            self.db.write(lambda c: self.store.upsert_worker(c, worker))
            self._registered_slots = slots
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(
                    target=self._heartbeat_loop, name="llmsched-heartbeat", daemon=True
                )
                self._heartbeat.start()

    def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while not self._closing.wait(interval):
            try:
                now = utcnow()

                def beat(conn: Any, now: datetime = now) -> None:
                    self.store.heartbeat(conn, self.worker_id, now=now)
                    self.store.extend_reservations(conn, worker_id=self.worker_id, now=now)

                self.db.write(beat)
            except Exception:
                log.exception("action=heartbeat_failed worker_id=%s", self.worker_id)

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
        self._register_worker(slots=concurrency)
        self._loop = WorkerLoop(self, slots=concurrency)
        self._loop.start()
        self.webhooks.start()

    def stop(self, timeout: float = 30) -> bool:
        """Stop dispatching; wait up to `timeout` for running jobs. True if all finished."""
        if self._loop is None:
            return True
        drained = self._loop.stop(timeout)
        self._loop = None
        self._register_worker(slots=0)
        return bool(drained)

    @property
    def running_count(self) -> int:
        return self._loop.running if self._loop is not None else 0


def _check_params(params: Any, job_type: str) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise InvalidParamsError(
            f"params for job type {job_type!r} must be a JSON object (dict), "
            f"got {type(params).__name__}"
        )
    try:
        text = json.dumps(dict(params), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParamsError(
            f"params for job type {job_type!r} are not JSON-serialisable ({exc}); "
            "use strings, numbers, booleans, null, lists and dicts"
        ) from None
    if _has_nul(params):
        raise InvalidParamsError(
            f"params for job type {job_type!r} contain a NUL character (\\x00), which "
            "databases cannot store in JSON; remove it or encode the value (e.g. base64)"
        )
    return json.loads(text)  # type: ignore[no-any-return]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _check_int(value: Any, *, name: str, low: int, high: int, error: type[Exception]) -> int:
    """An int (not a bool) that the database column can hold."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}, got {value}")
    return value


def _check_text(value: Any, *, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidJobError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidJobError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return value


def _statuses(
    status: JobStatus | str | Sequence[JobStatus | str] | None,
) -> list[JobStatus] | None:
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    try:
        return [JobStatus(s.upper() if isinstance(s, str) else s) for s in items]
    except ValueError:
        valid = ", ".join(s.value for s in JobStatus)
        raise InvalidJobError(f"unknown job status in {items!r}; valid: {valid}") from None
