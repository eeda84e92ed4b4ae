"""SchedulerService: the public Python API. It validates (validation.py), then delegates
to the store in one transaction per call; recovery, worker membership and executor
callbacks live in their own modules."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from scheduler_core import keys, references
from scheduler_core.availability import Availability
from scheduler_core.cancellation import Cancellations
from scheduler_core.database import Database, create_engine, create_schema
from scheduler_core.deadlines import Watchdog
from scheduler_core.direct import DirectExecution
from scheduler_core.dispatching import Dispatching
from scheduler_core.errors import (
    ConfigurationError,
    DuplicateExternalIdError,
    EmptyGroupError,
    RunNotFoundError,
)
from scheduler_core.executor import CallableExecutor, Executor
from scheduler_core.holdings import Holdings
from scheduler_core.membership import Membership
from scheduler_core.plugins import Plugin, Plugins
from scheduler_core.recovery import RecoveryReport
from scheduler_core.registry import Handler, JobType, Registry, ResourceRule, Validator
from scheduler_core.rules import resources
from scheduler_core.rules.retry import RetryPolicy, check_manual_job_retry, check_manual_retry
from scheduler_core.run_records import RunRecords
from scheduler_core.settings import SchedulerSettings
from scheduler_core.signal import Signal
from scheduler_core.spool import Spool
from scheduler_core.statuses import JobOrigin, JobStatus
from scheduler_core.store import Store
from scheduler_core.validation import (
    SpecBuilder,
    check_id,
    check_limit,
    check_optional_id,
    check_optional_text,
    check_origin,
    check_priority,
    check_text,
    check_texts,
    max_id,
    statuses,
)
from scheduler_core.values import (
    Job,
    JobGroup,
    JobRun,
    Worker,
    utcnow,
)
from scheduler_core.webhooks import WebhookDispatcher, install_webhooks

log = logging.getLogger("scheduler_core")

__all__ = ["RecoveryReport", "SchedulerService"]


class SchedulerService(DirectExecution, Dispatching):
    """Queue, dispatch and execute jobs by the rules in docs/scheduling-rules.md."""

    def __init__(self, db: Database, settings: SchedulerSettings) -> None:
        self.db = db
        self.settings = settings
        self.plugins = Plugins()
        self.store = Store(
            dialect=db.engine.dialect.name,
            log_dir=settings.resolved_log_dir(),
            plugins=self.plugins,
            retry_policy=RetryPolicy(
                backoff_seconds=settings.retry_backoff_seconds,
                factor=settings.retry_backoff_factor,
                max_backoff_seconds=settings.retry_backoff_max_seconds,
            ),
        )
        db.on_write_end = self.plugins.after_write
        self.max_id = max_id(db.engine.dialect.name)  # ids beyond it are refused
        self.registry = Registry()
        self.specs = SpecBuilder(self.registry, default_max_retries=settings.max_retries)
        self.executor: Executor = CallableExecutor()
        self.runs = RunRecords(db, self.store)
        self.membership = Membership(db, self.store, heartbeat_interval=settings.heartbeat_interval)
        self.worker_id = self.membership.worker_id
        self.signal = Signal()
        self.holdings = Holdings()  # the claims this process runs
        self.deadlines = Watchdog()
        self.cancellations = Cancellations(
            lambda ids: self.db.read(lambda c: self.store.cancel_requested(c, ids)),
            interval=settings.cancel_check_interval,
            executor=lambda: self.executor,
        )
        self.spool = Spool(settings.resolved_home() / "spool")
        self.availability = Availability(
            {"database": db.ping}, default=self._executor_available, worker_id=self.worker_id
        )
        self.membership.on_fault = lambda exc: self.availability.fault(
            "database", f"{type(exc).__name__}: {exc}"
        )
        self._loop: Any = None
        # Webhooks are a plugin every service installs: each process writes the events
        # of its state changes (the outbox); the sender runs beside the worker loop.
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
        """Drain the loop, stop the plugins, mark this worker STOPPED, release its
        reservations.

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
        self.plugins.stop(timeout=10)
        self.cancellations.close()
        close_executor = getattr(self.executor, "close", None)
        if close_executor is not None:
            close_executor()
        try:
            self.membership.leave()
        except Exception as exc:  # the database is down: recovery will see the pid gone
            log.warning("action=leave_failed worker_id=%s error=%s", self.worker_id, exc)
        self.db.dispose()

    def __enter__(self) -> SchedulerService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _executor_available(self) -> bool:
        """The executor's probe of its own dependencies (`available()`), if it has one."""
        probe = getattr(self.executor, "available", None)
        return True if probe is None else bool(probe())

    def add_plugin(self, plugin: Plugin) -> None:
        """Report this service's state changes to `plugin` (plugins.py lists the hooks)."""
        self.plugins.add(plugin)

    # ------------------------------------------------------------------ registration

    def register(
        self,
        job_type: str,
        handler: Handler,
        *,
        resource: ResourceRule = "default",
        validate: Validator | None = None,
        timeout_seconds: float | None = None,
    ) -> JobType:
        """Map a job type to its handler and resource class (a name or a function of params).

        `validate(params)` runs at enqueue time; whatever it raises is reported as
        InvalidParamsError, so bad params never reach the queue. `timeout_seconds` is the
        type's execution deadline (default: the job_timeout_seconds setting).
        """
        return self.registry.register(
            job_type, handler, resource=resource, validate=validate, timeout_seconds=timeout_seconds
        )

    def set_resource_limit(self, resource: str, limit: int | None) -> None:
        """Cap RUNNING jobs of a resource class across every worker (None: no cap).

        Whoever registers job types declares the caps their resources need; the write is
        skipped when the database already has this cap.
        """
        resources.check_name(resource)
        resources.check_limit(limit)
        known = self.resource_limits()
        if resource in known and known[resource] == limit:
            return
        self.db.write(lambda c: self.store.set_resource_limit(c, resource, limit))

    def resource_limits(self) -> dict[str, int | None]:
        return self.db.read(self.store.resource_limits)

    def bind_resource(self, resource: str, instance: str) -> None:
        """Run this process's jobs of class `resource` in the slot `instance` (e.g. the
        one Ollama server this worker calls): the cap of `resource` then counts the jobs
        in each instance apart. `instance` is recorded with the class's cap, for status
        and so that claims on PostgreSQL serialise on its row."""
        resources.check_name(resource)
        resources.check_name(instance)
        limit = self.resource_limits().get(resource)
        self.set_resource_limit(instance, limit)
        self.registry.bind(resource, instance)

    # ------------------------------------------------------------------ submitting

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
        timeout_seconds: float | None = None,
        external_id: str | None = None,
        key: str | None = None,
    ) -> Job:
        """Queue one job; it runs when it is first in line and its resource has a slot.

        `timeout_seconds`: this job's execution deadline (default: its type's, else the
        job_timeout_seconds setting). `external_id`: the job's id in an orchestrator it
        was submitted through (a Prefect flow run id); one job per id
        (DuplicateExternalIdError). `key`: an idempotency key (keys.py): the job queued
        with it before is returned and nothing is written (KeyReusedError if that job
        has another type or params).
        """
        spec = self.specs.build(
            job_type,
            {} if params is None else params,
            priority=priority,
            max_retries=max_retries,
            origin=origin,
            position=position,
            not_before=not_before,
            timeout_seconds=timeout_seconds,
        )
        check_optional_text(external_id, name="external_id", limit=64)
        check_optional_text(key, name="key", limit=256)
        spec = replace(spec, external_id=external_id, key=key)
        try:
            job, created = keys.submit_once(
                key,
                find=lambda: self.job_by_key(spec.key or ""),
                same=lambda found: keys.same_job(found, spec),
                insert=lambda: self.db.write_standalone(
                    lambda c: self.store.insert_jobs(c, [spec], now=utcnow())
                )[0],
            )
        except IntegrityError as exc:
            raise DuplicateExternalIdError(
                f"a job with external id {external_id!r} exists already; find it with "
                "job_by_external_id()"
            ) from exc
        if created:
            self._queued([job])
        return job

    def _queued(self, jobs: list[Job]) -> None:
        self.signal.notify()
        self.plugins.after_enqueue(jobs)

    def enqueue_jobs(self, jobs: Sequence[Mapping[str, Any]]) -> list[Job]:
        """Queue many jobs in one transaction: all are written or none."""
        specs = self.specs.from_list(jobs, what="enqueue_jobs")
        if not specs:
            return []
        created = self.db.write(lambda c: self.store.insert_jobs(c, specs, now=utcnow()))
        self._queued(created)
        return created

    def create_job_group(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        name: str = "",
        origin: JobOrigin | str = JobOrigin.QUEUE,
        key: str | None = None,
    ) -> tuple[JobGroup, list[Job]]:
        """Queue members that run strictly one after another and stop on failure.

        A member may have a `name`; a later member's params may use its outputs as
        ``{"$outputs": "<name>"}``, resolved when that member starts (references.py).
        `key`: an idempotency key, as for enqueue_job: the group queued with it before
        is returned with its members, and nothing is written."""
        check_text(name, name="group name", limit=256)
        member_origin = check_origin(origin)
        check_optional_text(key, name="key", limit=256)
        if isinstance(jobs, list | tuple) and not jobs:
            raise EmptyGroupError(
                f"job group {name!r} has no members: pass at least one job in jobs=[...]"
            )
        specs = [
            replace(spec, origin=member_origin)
            for spec in self.specs.from_list(jobs, what="create_job_group", group=True)
        ]
        (group, members), created = keys.submit_once(
            key,
            find=lambda: self.group_by_key(key or ""),
            same=lambda found: keys.same_group(found, key or "", name, specs),
            insert=lambda: self.db.write(
                lambda c: self.store.insert_group(c, name=name, specs=specs, now=utcnow(), key=key)
            ),
        )
        if created:
            self._queued(members)
        return group, members

    def update_job_params(self, job_id: int, params: Mapping[str, Any]) -> Job:
        """Change a QUEUED job's params; refused once it left QUEUED (INV-001). A group
        member's references to earlier members' outputs are given as the job shows them,
        with their member's index (references.py)."""
        check_id(job_id, name="job_id", high=self.max_id)
        job = self.get_job(job_id)
        members = None if job.sequence is None else references.Members(None, job.sequence)
        spec = self.specs.build(job.job_type, params, priority=job.priority, members=members)
        return self.db.write(
            lambda c: self.store.update_params(c, job_id, spec.params, resource=spec.resource)
        )

    def set_priority(self, job_id: int, priority: int) -> Job:
        """Change a QUEUED job's priority (its place in the queue); refused once it left
        QUEUED (JobNotQueuedError)."""
        check_id(job_id, name="job_id", high=self.max_id)
        check_priority(priority)
        job = self.db.write(lambda c: self.store.set_priority(c, job_id, priority))
        self.signal.notify()
        return job

    # ------------------------------------------------------------------ cancelling

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a job: a QUEUED job becomes CANCELLED and never runs; a RUNNING job is
        stopped by its worker within seconds and ends CANCELLED (returned still RUNNING,
        with `cancel_requested`); an ended job raises JobNotCancellableError."""
        check_id(job_id, name="job_id", high=self.max_id)
        job = self.db.write(lambda c: self.store.cancel_job(c, job_id, now=utcnow()))
        self.signal.notify()
        return job

    def cancel_job_group(self, group_id: int) -> JobGroup:
        """Cancel queued members and stop a running one; the group ends CANCELLED."""
        check_id(group_id, name="group_id", high=self.max_id)
        group = self.db.write(lambda c: self.store.cancel_group(c, group_id, now=utcnow()))
        self.signal.notify()
        return group

    # ------------------------------------------------------------------ reading

    def get_job(self, job_id: int) -> Job:
        check_id(job_id, name="job_id", high=self.max_id)
        return self.db.read(lambda c: self.store.get_job(c, job_id))

    def get_job_run_for_job(self, job_id: int) -> JobRun | None:
        check_id(job_id, name="job_id", high=self.max_id)
        return self.db.read(lambda c: self.store.get_run_for_job(c, job_id))

    def get_job_run(self, run_id: int) -> JobRun:
        check_id(run_id, name="run_id", high=self.max_id)
        run = self.db.read(lambda c: self.store.get_run(c, run_id))
        if run is None:
            raise RunNotFoundError(f"job run {run_id} does not exist")
        return run

    def get_job_group(self, group_id: int) -> JobGroup:
        check_id(group_id, name="group_id", high=self.max_id)
        return self.db.read(lambda c: self.store.get_group(c, group_id))

    def list_jobs(
        self,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        *,
        job_type: str | None = None,
        group_id: int | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        wanted = statuses(status)
        check_optional_text(job_type, name="job_type", limit=128)
        check_optional_id(group_id, name="group_id", high=self.max_id)
        check_limit(limit)
        return self.db.read(
            lambda c: self.store.list_jobs(
                c, statuses=wanted, job_type=job_type, group_id=group_id, limit=limit
            )
        )

    def list_queued_jobs(self) -> list[Job]:
        """QUEUED jobs in the order the dispatcher considers them."""
        return self.db.read(self.store.queued_in_dispatch_order)

    def get_retry_chain(self, job_id: int) -> list[Job]:
        check_id(job_id, name="job_id", high=self.max_id)
        return self.db.read(lambda c: self.store.retry_chain(c, job_id))

    def list_workers(self) -> list[Worker]:
        return self.db.read(self.store.list_workers)

    # ------------------------------------------------------------------ retry

    def retry_run(self, run_id: int) -> Job:
        """Manually retry a FAILED or CANCELLED run: a new QUEUED job linked by retry_of,
        always allowed.

        A group member's manual retry runs on its own, outside the group (rules/retry.py).
        """
        run = self.get_job_run(run_id)
        check_manual_retry(run)
        return self.retry_job(run.job_id)

    def retry_job(self, job_id: int, *, external_id: str | None = None) -> Job:
        """Manually retry a FAILED or CANCELLED job (one cancelled while queued has no run);
        `external_id` moves to the retry (the Prefect flow run a user retried)."""
        check_id(job_id, name="job_id", high=self.max_id)
        check_optional_text(external_id, name="external_id", limit=64)

        def tx(conn: Any) -> Job:
            original = self.store.get_job(conn, job_id)
            check_manual_job_retry(original)
            retry = self.store.insert_linked_job(
                conn, original, not_before=None, now=utcnow(), keep_group=False
            )
            if external_id is not None:
                self.store.set_external_id(conn, retry.job_id or 0, external_id)
                retry = retry.model_copy(update={"external_id": external_id})
            return retry

        job = self.db.write(tx)
        self._queued([job])
        return job

    # ------------------------------------------------------------------ external ids

    def job_by_key(self, key: str) -> Job | None:
        """The job queued with this idempotency key, if any."""
        check_text(key, name="key", limit=256)
        return self.db.read(lambda c: self.store.job_by_key(c, key))

    def group_by_key(self, key: str) -> tuple[JobGroup, list[Job]] | None:
        """The group queued with this idempotency key and its members, if any."""
        check_text(key, name="key", limit=256)
        return self.db.read(lambda c: self.store.group_by_key(c, key))

    def job_by_external_id(self, external_id: str) -> Job | None:
        found = self.jobs_by_external_id([external_id])
        return found[0] if found else None

    def jobs_by_external_id(self, external_ids: list[str]) -> list[Job]:
        """The jobs these external ids (Prefect flow runs) stand for, in no order."""
        external_ids = check_texts(external_ids, name="external_id", limit=64)
        return self.db.read(lambda c: self.store.jobs_by_external_id(c, external_ids))

    def set_external_id(self, job_id: int, external_id: str) -> bool:
        """Record a job's external id; False if it has one already (another process gave
        it first)."""
        check_id(job_id, name="job_id", high=self.max_id)
        check_text(external_id, name="external_id", limit=64)
        return self.db.write(lambda c: self.store.set_external_id(c, job_id, external_id))

    def queued_without_external_id(self, limit: int = 100) -> list[Job]:
        check_limit(limit)
        return self.db.read(lambda c: self.store.queued_without_external_id(c, limit))
