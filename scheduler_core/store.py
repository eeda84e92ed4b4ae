"""Every state change, as one named function each; the only module that writes SQL.

Each function takes an open write transaction. A state change is a conditional
``UPDATE ... WHERE status = <expected>`` whose row count is checked, so an illegal
transition fails loudly instead of overwriting. Retry creation, skipping of group
members and the group's terminal status happen inside the transaction of the run
that caused them.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from scheduler_core.errors import (
    GroupNotFoundError,
    JobNotCancellableError,
    JobNotFoundError,
    ParamsImmutableError,
    ReservationNotFoundError,
    StaleStateError,
)
from scheduler_core.models import (
    ConcurrencyLease,
    Job,
    JobGroup,
    JobGroupRecord,
    JobRecord,
    JobRun,
    JobRunRecord,
    Reservation,
    ReservationRecord,
    ResourceClass,
    Worker,
    WorkerRecord,
    utcnow,
)
from scheduler_core.prepared import prepared
from scheduler_core.retry import RetryPolicy
from scheduler_core.statuses import (
    TERMINAL_JOB_STATUSES,
    JobGroupStatus,
    JobOrigin,
    JobRunStatus,
    JobStatus,
    ReservationStatus,
    WorkerStatus,
)

J: sa.Table = JobRecord.__table__  # type: ignore[attr-defined]
R: sa.Table = JobRunRecord.__table__  # type: ignore[attr-defined]
G: sa.Table = JobGroupRecord.__table__  # type: ignore[attr-defined]
RES: sa.Table = ReservationRecord.__table__  # type: ignore[attr-defined]
W: sa.Table = WorkerRecord.__table__  # type: ignore[attr-defined]
RC: sa.Table = ResourceClass.__table__  # type: ignore[attr-defined]
L: sa.Table = ConcurrencyLease.__table__  # type: ignore[attr-defined]

_P = sa.bindparam
M = TypeVar("M", Job, JobRun, JobGroup)
_QUEUED, _RUNNING = JobStatus.QUEUED.value, JobStatus.RUNNING.value
_NOT_HELD = J.c.held == sa.false()
_JOB_INSERT_KEYS = (
    "job_type",
    "params",
    "priority",
    "position",
    "status",
    "resource",
    "held",
    "group_id",
    "sequence",
    "attempt",
    "max_retries",
    "not_before",
    "origin",
    "created_at",
    "queued_at",
)
_RUN_INSERT_KEYS = (
    "job_id",
    "status",
    "started_at",
    "worker_id",
    "params_snapshot",
    "artifacts",
    "log_path",
)
# The columns a new row leaves empty (besides its id), so that a value can be built
# from what was inserted instead of reading the row back.
_UNSET_JOB = dict.fromkeys(set(Job.model_fields) - {"job_id", *_JOB_INSERT_KEYS})
_UNSET_RUN = dict.fromkeys(set(JobRun.model_fields) - {"run_id", *_RUN_INSERT_KEYS})


def _running(resource: Any) -> sa.Select[Any]:
    """How many jobs of `resource` (a name, or a correlated column) are RUNNING."""
    return sa.select(sa.func.count()).where(
        J.c.status == _RUNNING, _NOT_HELD, J.c.resource == resource
    )


# A direct reservation that pauses the queue (the claim's `now` bound as "now").
_RESERVED = sa.exists(
    sa.select(RES.c.reservation_id).where(
        RES.c.status == ReservationStatus.ACTIVE.value, RES.c.expires_at > _P("now")
    )
)


class _Hot:
    """Statements on the dispatch path, built once: building SQL per call costs more
    than running it on SQLite."""

    limits = sa.select(RC.c.name, RC.c.limit)
    # One round trip for everything a claim must know first: each resource class with its
    # cap and RUNNING count, and whether a direct reservation pauses the queue.
    dispatch_state = sa.select(
        RC.c.name,
        RC.c.limit,
        _running(RC.c.name).scalar_subquery().label("running"),
        _RESERVED.label("reserved"),
    ).order_by(RC.c.name)
    running_of = _running(_P("resource"))
    lock_resource = sa.select(RC.c.name).where(RC.c.name == _P("resource")).with_for_update()
    dispatch_lock_shared = sa.select(sa.func.pg_advisory_xact_lock_shared(_P("key")))
    dispatch_lock_exclusive = sa.select(sa.func.pg_advisory_xact_lock(_P("key")))
    start_job = (
        sa.update(J)
        .where(J.c.job_id == _P("b_job_id"), J.c.status == _QUEUED)
        .values(status=_RUNNING, started_at=_P("b_now"), worker_id=_P("b_worker_id"))
        .returning(*J.c)
    )
    insert_run = (
        sa.insert(R).values({k: _P(f"v_{k}") for k in _RUN_INSERT_KEYS}).returning(R.c.run_id)
    )
    insert_job = sa.insert(J).returning(J.c.job_id, sort_by_parameter_order=True)
    insert_one_job = (
        sa.insert(J).values({k: _P(f"v_{k}") for k in _JOB_INSERT_KEYS}).returning(J.c.job_id)
    )
    start_group = (
        sa.update(G)
        .where(G.c.group_id == _P("b_group_id"), G.c.status == JobGroupStatus.QUEUED.value)
        .values(status=JobGroupStatus.RUNNING.value, started_at=_P("b_now"))
    )
    finish_run = (
        sa.update(R)
        .where(R.c.run_id == _P("b_run_id"), R.c.status == JobRunStatus.RUNNING.value)
        .values(
            status=_P("b_status"),
            finished_at=_P("b_now"),
            exit_code=_P("b_exit_code"),
            error=_P("b_error"),
            artifacts=_P("b_artifacts", type_=R.c.artifacts.type),
        )
        .returning(*R.c)
    )
    finish_job = (
        sa.update(J)
        .where(J.c.job_id == _P("b_job_id"), J.c.status == _RUNNING)
        .values(status=_P("b_status"), finished_at=_P("b_now"))
    )


# PostgreSQL advisory lock: claims hold it shared, reservations and direct starts
# exclusively, so a reservation never races a claim that has not committed yet.
_DISPATCH_LOCK_KEY = 0x5C4ED

TerminalHook = Callable[[Connection, Job, JobRun], None]
GroupHook = Callable[[Connection, JobGroup], None]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated request for a new job row."""

    job_type: str
    params: dict[str, Any]
    resource: str
    priority: int = 0
    max_retries: int = 3
    origin: JobOrigin = JobOrigin.QUEUE
    position: int | None = None
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    job: Job
    run: JobRun


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an execution ended, as the executor reports it."""

    status: JobRunStatus
    error: str | None = None
    exit_code: int | None = None
    artifacts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Finish:
    job: Job
    run: JobRun
    retry: Job | None
    group: JobGroup | None


def _enum_fields(model: type[Any]) -> dict[str, type[Enum]]:
    fields: dict[str, type[Enum]] = {}
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, Enum):
            fields[name] = kind
    return fields


_ENUMS: dict[type[Any], dict[str, type[Enum]]] = {
    model: _enum_fields(model) for model in (Job, JobRun, JobGroup)
}


def _value(model: type[M], data: dict[str, Any]) -> M:
    """A public value from one of our own rows (every field, valid values): only the
    status/origin strings become their enums. What `model_construct` does, without
    its per-field alias and default checks, which cost more than the row's SQL."""
    for name, enum in _ENUMS[model].items():
        data[name] = enum(data[name])
    value = model.__new__(model)  # SQLModel's __new__ sets pydantic's private slots
    object.__setattr__(value, "__dict__", data)
    object.__setattr__(value, "__pydantic_fields_set__", set(data))
    return value


def _job(row: Any) -> Job:
    return _value(Job, row._asdict())


def _run(row: Any) -> JobRun:
    return _value(JobRun, row._asdict())


def _group(row: Any) -> JobGroup:
    return _value(JobGroup, row._asdict())


@functools.cache
def _eligible(n_types: int) -> sa.Select[Any]:
    """QUEUED, released, due jobs of n registered types, in dispatch order."""
    return (
        sa.select(J)
        .where(
            J.c.status == _QUEUED,
            _NOT_HELD,
            J.c.job_type.in_([_P(f"t{i}") for i in range(n_types)]),
            sa.or_(J.c.not_before.is_(None), J.c.not_before <= _P("now")),
        )
        .order_by(J.c.priority.desc(), J.c.position, J.c.job_id)
        .limit(1)
    )


@functools.cache
def _head_skip_locked(n_types: int) -> sa.Select[Any]:
    """PostgreSQL: the first job of one resource that no other claim has locked."""
    return (
        _eligible(n_types).where(J.c.resource == _P("resource")).with_for_update(skip_locked=True)
    )


@functools.cache
def _claim_first(n_types: int) -> sa.Update:
    """SQLite: the whole claim in one statement (the write lock is already held).

    Start the first job, in dispatch order, among the heads of every resource class
    that is under its cap, unless a direct reservation pauses the queue. Each head is
    an index seek, so the cost does not grow with the queue.
    """
    head_id = (
        _eligible(n_types)
        .with_only_columns(J.c.job_id)
        .where(J.c.resource == RC.c.name)
        .correlate(RC)
        .scalar_subquery()
    )
    running = _running(RC.c.name).correlate(RC).scalar_subquery()
    head = J.alias("head")
    best = (
        sa.select(head.c.job_id)
        .select_from(RC.join(head, head.c.job_id == head_id))
        .where(
            sa.or_(RC.c.limit.is_(None), running < RC.c.limit),
            ~_RESERVED,
        )
        .order_by(head.c.priority.desc(), head.c.position, head.c.job_id)
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.update(J)
        .where(J.c.job_id == best, J.c.status == _QUEUED)
        .values(status=_RUNNING, started_at=_P("b_now"), worker_id=_P("b_worker_id"))
        .returning(*J.c)
    )


class PositionClock:
    """Positions are microseconds since the epoch, strictly increasing in this process.

    FIFO inside a priority across processes follows the wall clock; a retry keeps its
    original's position so it does not lose its place.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> int:
        with self._lock:
            first = max(time.time_ns() // 1000, self._last + 1)
            self._last = first + n - 1
            return first


class Store:
    def __init__(
        self, *, dialect: str, retry_policy: RetryPolicy, log_dir: Path | None = None
    ) -> None:
        self.log_dir = log_dir
        self.is_postgres = dialect == "postgresql"
        self.retry_policy = retry_policy
        self.positions = PositionClock()
        self.terminal_hooks: list[TerminalHook] = []
        self.group_hooks: list[GroupHook] = []
        self._known_resources: set[str] = set()

    # ------------------------------------------------------------------ helpers

    def log_path_for(self, job: Job) -> str | None:
        if self.log_dir is None:
            return None
        # os.path, not pathlib: on Python 3.11 pathlib interns every part it parses, and
        # each run's file name is new, so the interpreter's interned-string table grows.
        name = f"{job.job_type}-job-{job.job_id}-attempt-{job.attempt}.log"
        return os.path.join(self.log_dir, name)

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.is_postgres else sqlite.insert)(table)

    def _dispatch_lock(self, conn: Connection, *, exclusive: bool) -> None:
        if self.is_postgres:
            lock = _Hot.dispatch_lock_exclusive if exclusive else _Hot.dispatch_lock_shared
            prepared(conn, lock).run(conn, {"key": _DISPATCH_LOCK_KEY}).close()

    def ensure_resources(self, conn: Connection, names: Iterable[str]) -> None:
        missing = set(names) - self._known_resources
        if missing:
            stmt = self._insert(RC).on_conflict_do_nothing(index_elements=["name"])
            conn.execute(stmt, [{"name": n, "limit": None} for n in sorted(missing)])
            self._known_resources |= missing

    def forget_resources(self) -> None:
        self._known_resources.clear()

    def set_resource_limit(self, conn: Connection, name: str, limit: int | None) -> None:
        self.ensure_resources(conn, [name])
        conn.execute(sa.update(RC).where(RC.c.name == name).values(limit=limit))

    def resource_limits(self, conn: Connection) -> dict[str, int | None]:
        return {r.name: r.limit for r in conn.execute(_Hot.limits)}

    def insert_jobs(
        self,
        conn: Connection,
        specs: Sequence[JobSpec],
        *,
        group_id: int | None = None,
        now: datetime | None = None,
    ) -> list[Job]:
        now = now or utcnow()
        self.ensure_resources(conn, {s.resource for s in specs})
        first = self.positions.take(len(specs))
        rows = [
            {
                "job_type": s.job_type,
                "params": s.params,
                "priority": s.priority,
                "position": s.position if s.position is not None else first + i,
                "status": JobStatus.QUEUED.value,
                "resource": s.resource,
                "held": group_id is not None and i > 0,
                "group_id": group_id,
                "sequence": i if group_id is not None else None,
                "attempt": 1,
                "max_retries": s.max_retries,
                "not_before": s.not_before,
                "origin": s.origin.value,
                "created_at": now,
                "queued_at": now,
            }
            for i, s in enumerate(specs)
        ]
        if len(rows) == 1:  # enqueue_job: the hot path
            insert = prepared(conn, _Hot.insert_one_job)
            ids = [insert.scalar(conn, {f"v_{k}": v for k, v in rows[0].items()})]
        else:
            ids = conn.execute(_Hot.insert_job, rows).scalars().all()
        # The rows are known: build the values here instead of reading them back.
        return [
            _value(Job, {**row, "job_id": job_id, **_UNSET_JOB})
            for row, job_id in zip(rows, ids, strict=True)
        ]

    def get_job(self, conn: Connection, job_id: int) -> Job:
        row = conn.execute(sa.select(J).where(J.c.job_id == job_id)).first()
        if row is None:
            raise JobNotFoundError(f"job {job_id} does not exist")
        return _job(row)

    def list_jobs(
        self,
        conn: Connection,
        *,
        statuses: Sequence[JobStatus] | None = None,
        job_type: str | None = None,
        group_id: int | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        stmt = sa.select(J)
        if statuses:
            stmt = stmt.where(J.c.status.in_([s.value for s in statuses]))
        if job_type:
            stmt = stmt.where(J.c.job_type == job_type)
        if group_id is not None:
            stmt = stmt.where(J.c.group_id == group_id)
        stmt = stmt.order_by(J.c.job_id)
        if limit:
            stmt = stmt.limit(limit)
        return [_job(r) for r in conn.execute(stmt)]

    def queued_in_dispatch_order(self, conn: Connection) -> list[Job]:
        stmt = (
            sa.select(J)
            .where(J.c.status == JobStatus.QUEUED.value)
            .order_by(J.c.priority.desc(), J.c.position, J.c.job_id)
        )
        return [_job(r) for r in conn.execute(stmt)]

    def update_params(
        self, conn: Connection, job_id: int, params: dict[str, Any], *, resource: str
    ) -> Job:
        self.ensure_resources(conn, [resource])
        stmt = (
            sa.update(J)
            .where(J.c.job_id == job_id, J.c.status == JobStatus.QUEUED.value)
            .values(params=params, resource=resource)
            .returning(*J.c)
        )
        row = conn.execute(stmt).first()
        if row is None:
            job = self.get_job(conn, job_id)
            raise ParamsImmutableError(
                f"job {job_id} is {job.status.value}: params can only change while QUEUED (INV-001)"
            )
        return _job(row)

    def cancel_job(self, conn: Connection, job_id: int, *, now: datetime) -> Job:
        stmt = (
            sa.update(J)
            .where(J.c.job_id == job_id, J.c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELLED.value, finished_at=now)
            .returning(*J.c)
        )
        row = conn.execute(stmt).first()
        if row is None:
            job = self.get_job(conn, job_id)
            hint = (
                "running work is never preempted; wait for it to finish"
                if job.status == JobStatus.RUNNING
                else "it has already ended"
            )
            raise JobNotCancellableError(
                f"job {job_id} is {job.status.value} and cannot be cancelled: {hint}"
            )
        job = _job(row)
        if job.group_id is not None and not job.held:
            self._advance_group(conn, job, retry=None, now=now)
        elif job.group_id is not None:
            self._finalize_group_if_done(conn, job.group_id, now=now)
        return job

    # ------------------------------------------------------------------ dispatch

    def active_reservations(self, conn: Connection, *, now: datetime) -> list[Reservation]:
        stmt = (
            sa.select(RES)
            .where(RES.c.status == ReservationStatus.ACTIVE.value, RES.c.expires_at > now)
            .order_by(RES.c.reservation_id)
        )
        return [Reservation.model_validate(r._mapping) for r in conn.execute(stmt)]

    def _resource_is_full(self, conn: Connection, resource: str, limit: int) -> bool:
        if self.is_postgres:
            # Serialise claims of a capped resource across processes.
            prepared(conn, _Hot.lock_resource).run(conn, {"resource": resource}).close()
        return int(prepared(conn, _Hot.running_of).scalar(conn, {"resource": resource})) >= limit

    def claim_next(
        self, conn: Connection, *, worker_id: str, job_types: Sequence[str], now: datetime
    ) -> Claim | None:
        """Claim the next eligible job for this worker, or None when nothing may run."""
        if not job_types:
            return None
        if not self.is_postgres:
            params: dict[str, Any] = {f"t{i}": name for i, name in enumerate(job_types)}
            params.update(now=now, b_now=now, b_worker_id=worker_id)
            row = prepared(conn, _claim_first(len(job_types))).first(conn, params)
            return None if row is None else self._started(conn, row, worker_id=worker_id, now=now)
        self._dispatch_lock(conn, exclusive=False)
        state = prepared(conn, _Hot.dispatch_state).all(conn, {"now": now})
        if not state or state[0].reserved:
            return None
        capped = {r.name: r.limit for r in state if r.limit is not None}
        excluded = {r.name for r in state if r.limit is not None and r.running >= r.limit}
        while True:
            names = tuple(r.name for r in state if r.name not in excluded)
            best = self._best_head(conn, names, job_types, now)
            if best is None:
                return None
            limit = capped.get(best.resource)
            if limit is not None and self._resource_is_full(conn, best.resource, limit):
                excluded.add(best.resource)
                continue
            return self._start(conn, best.job_id, worker_id=worker_id, now=now)

    def _best_head(
        self, conn: Connection, resources: tuple[str, ...], job_types: Sequence[str], now: datetime
    ) -> Any | None:
        """PostgreSQL: the first job in dispatch order among the unlocked heads of each
        resource's queue."""
        params: dict[str, Any] = {f"t{i}": name for i, name in enumerate(job_types)}
        params["now"] = now
        head = prepared(conn, _head_skip_locked(len(job_types)))
        heads = [h for r in resources if (h := head.first(conn, {**params, "resource": r}))]
        return min(heads, key=lambda r: (-r.priority, r.position, r.job_id), default=None)

    def _start(self, conn: Connection, job_id: int, *, worker_id: str, now: datetime) -> Claim:
        """QUEUED -> RUNNING plus its JobRun; the run's log path is fixed here, once.

        The start time is read here, after every lock of the claim is held (on
        PostgreSQL they are taken inside the transaction), so a job never appears to
        start before the run whose end made room for it.
        """
        now = max(now, utcnow())
        row = prepared(conn, _Hot.start_job).first(
            conn, {"b_job_id": job_id, "b_now": now, "b_worker_id": worker_id}
        )
        if row is None:
            raise StaleStateError(f"job {job_id} left QUEUED while being claimed")
        return self._started(conn, row, worker_id=worker_id, now=now)

    def _started(self, conn: Connection, row: Any, *, worker_id: str, now: datetime) -> Claim:
        """The rest of a start: the job's JobRun, and its group's start."""
        job = _job(row)
        values = {
            "job_id": job.job_id,
            "status": JobRunStatus.RUNNING.value,
            "started_at": now,
            "worker_id": worker_id,
            "params_snapshot": dict(job.params),
            "artifacts": [],
            "log_path": self.log_path_for(job),
        }
        insert = prepared(conn, _Hot.insert_run)
        run_id = insert.scalar(conn, {f"v_{k}": v for k, v in values.items()})
        if job.group_id is not None:
            prepared(conn, _Hot.start_group).run(
                conn, {"b_group_id": job.group_id, "b_now": now}
            ).close()
        # The row is known: build the value here instead of reading it back.
        run = _value(JobRun, {**values, **_UNSET_RUN, "run_id": run_id})
        return Claim(job=job, run=run)

    def claim_direct(
        self,
        conn: Connection,
        spec: JobSpec,
        *,
        reservation_id: int,
        worker_id: str,
        heartbeat_timeout: float,
        now: datetime,
    ) -> Claim | None:
        """Start a direct job if its reservation is first in line and a slot is free."""
        self._dispatch_lock(conn, exclusive=True)
        active = self.active_reservations(conn, now=now)
        if not any(r.reservation_id == reservation_id for r in active):
            raise ReservationNotFoundError(
                f"reservation {reservation_id} is not active (released or expired)"
            )
        if active[0].reservation_id != reservation_id:
            return None
        running = conn.execute(
            sa.select(sa.func.count()).where(J.c.status == JobStatus.RUNNING.value)
        ).scalar_one()
        if running >= self.capacity(conn, now=now, heartbeat_timeout=heartbeat_timeout):
            return None
        limit = self.resource_limits(conn).get(spec.resource)
        if limit is not None and self._resource_is_full(conn, spec.resource, limit):
            return None
        (job,) = self.insert_jobs(conn, [spec], now=now)
        claim = self._start(conn, job.job_id or 0, worker_id=worker_id, now=now)
        conn.execute(
            sa.update(RES)
            .where(RES.c.reservation_id == reservation_id)
            .values(job_id=claim.job.job_id)
        )
        return claim

    def capacity(self, conn: Connection, *, now: datetime, heartbeat_timeout: float) -> int:
        """Slots of live workers; at least one, so a lone caller can always run."""
        fresh = now - timedelta(seconds=heartbeat_timeout)
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(W.c.slots), 0)).where(
                W.c.status == WorkerStatus.RUNNING.value, W.c.heartbeat_at >= fresh
            )
        ).scalar_one()
        return max(1, int(total))

    # ------------------------------------------------------------------ finishing

    def finish(self, conn: Connection, claim: Claim, outcome: Outcome, *, now: datetime) -> Finish:
        """Close a RUNNING run and its job, then apply the retry and group rules."""
        job_status = JobStatus(outcome.status.value)
        run_row = prepared(conn, _Hot.finish_run).first(
            conn,
            {
                "b_run_id": claim.run.run_id,
                "b_status": outcome.status.value,
                "b_now": now,
                "b_exit_code": outcome.exit_code,
                "b_error": outcome.error,
                "b_artifacts": list(outcome.artifacts),
            },
        )
        ended = prepared(conn, _Hot.finish_job).rowcount(
            conn, {"b_job_id": claim.job.job_id, "b_status": job_status.value, "b_now": now}
        )
        if run_row is None or ended != 1:
            raise StaleStateError(
                f"job {claim.job.job_id} / run {claim.run.run_id} is no longer RUNNING; "
                "it was finished elsewhere (recovered as crashed?)"
            )
        # A RUNNING job's row changes only here (its run gains a flow run id, so the run
        # is read back): the claimed value plus its end is the row.
        job = claim.job.model_copy(update={"status": job_status, "finished_at": now})
        run = _run(run_row)
        group = self._get_group_row(conn, job.group_id) if job.group_id is not None else None
        retry = None
        if job_status == JobStatus.FAILED and not (group and group.cancel_requested):
            retry = self._create_retry(conn, job, now=now)
        self._emit_terminal(conn, job, run)
        if group is not None:
            group = self._advance_group(conn, job, retry=retry, now=now)
        return Finish(job=job, run=run, retry=retry, group=group)

    def _create_retry(self, conn: Connection, job: Job, *, now: datetime) -> Job | None:
        not_before = self.retry_policy.next_run_at(
            attempt=job.attempt, max_retries=job.max_retries, now=now
        )
        if not_before is None:
            return None
        return self.insert_linked_job(conn, job, not_before=not_before, now=now)

    def insert_linked_job(
        self,
        conn: Connection,
        original: Job,
        *,
        not_before: datetime | None,
        now: datetime,
        keep_group: bool = True,
    ) -> Job:
        """A retry of `original`: same type, params, priority and place in line."""
        row = conn.execute(
            sa.insert(J)
            .values(
                job_type=original.job_type,
                params=original.params,
                priority=original.priority,
                position=original.position,
                status=JobStatus.QUEUED.value,
                resource=original.resource,
                held=False,
                group_id=original.group_id if keep_group else None,
                sequence=original.sequence if keep_group else None,
                retry_of=original.job_id,
                attempt=original.attempt + 1,
                max_retries=original.max_retries,
                not_before=not_before,
                origin=JobOrigin.QUEUE.value,
                created_at=now,
                queued_at=now,
            )
            .returning(*J.c)
        ).one()
        return _job(row)

    def _emit_terminal(self, conn: Connection, job: Job, run: JobRun) -> None:
        for hook in self.terminal_hooks:
            hook(conn, job, run)

    # ------------------------------------------------------------------ groups

    def insert_group(
        self, conn: Connection, *, name: str, specs: Sequence[JobSpec], now: datetime
    ) -> tuple[JobGroup, list[Job]]:
        origin = specs[0].origin if specs else JobOrigin.QUEUE
        row = conn.execute(
            sa.insert(G)
            .values(
                name=name,
                status=JobGroupStatus.QUEUED.value,
                size=len(specs),
                cancel_requested=False,
                origin=origin.value,
                created_at=now,
            )
            .returning(*G.c)
        ).one()
        group = _group(row)
        jobs = self.insert_jobs(conn, specs, group_id=group.group_id, now=now)
        return group, jobs

    def _get_group_row(self, conn: Connection, group_id: int) -> JobGroup:
        row = conn.execute(sa.select(G).where(G.c.group_id == group_id)).first()
        if row is None:
            raise GroupNotFoundError(f"job group {group_id} does not exist")
        return _group(row)

    def get_group(self, conn: Connection, group_id: int) -> JobGroup:
        return self._get_group_row(conn, group_id)

    def _advance_group(
        self, conn: Connection, job: Job, *, retry: Job | None, now: datetime
    ) -> JobGroup:
        """After a member ended: wait for its retry, release the next member, or skip the rest."""
        assert job.group_id is not None and job.sequence is not None
        group = self._get_group_row(conn, job.group_id)
        if retry is not None or group.status.is_terminal:
            return group
        if job.status == JobStatus.FAILED and not group.cancel_requested:
            self._skip_rest(conn, job, now=now)
        elif not group.cancel_requested:
            nxt = conn.execute(
                sa.select(J.c.job_id)
                .where(
                    J.c.group_id == job.group_id,
                    J.c.status == JobStatus.QUEUED.value,
                    J.c.sequence > job.sequence,
                )
                .order_by(J.c.sequence, J.c.job_id)
                .limit(1)
            ).scalar()
            if nxt is not None:
                conn.execute(sa.update(J).where(J.c.job_id == nxt).values(held=False))
                return group
        return self._finalize_group_if_done(conn, job.group_id, now=now)

    def _skip_rest(self, conn: Connection, failed: Job, *, now: datetime) -> None:
        rows = conn.execute(
            sa.update(J)
            .where(
                J.c.group_id == failed.group_id,
                J.c.status == JobStatus.QUEUED.value,
                J.c.sequence > failed.sequence,
            )
            .values(status=JobStatus.SKIPPED.value, held=False, finished_at=now)
            .returning(*J.c)
        ).all()
        error = (
            f"skipped: predecessor job {failed.job_id} (sequence {failed.sequence}) "
            "failed and its retries are exhausted"
        )
        for row in sorted(rows, key=lambda r: (r.sequence, r.job_id)):
            skipped = _job(row)
            run_row = conn.execute(
                sa.insert(R)
                .values(
                    job_id=skipped.job_id,
                    status=JobRunStatus.SKIPPED.value,
                    started_at=None,
                    finished_at=now,
                    error=error,
                    artifacts=[],
                    params_snapshot=skipped.params,
                )
                .returning(*R.c)
            ).one()
            self._emit_terminal(conn, skipped, _run(run_row))

    def _finalize_group_if_done(
        self, conn: Connection, group_id: int, *, now: datetime
    ) -> JobGroup:
        """Write the group's terminal status once every member is terminal, never before."""
        group = self._get_group_row(conn, group_id)
        members = conn.execute(
            sa.select(J.c.sequence, J.c.status).where(J.c.group_id == group_id)
        ).all()
        if group.status.is_terminal or any(
            JobStatus(s) not in TERMINAL_JOB_STATUSES for _, s in members
        ):
            return group
        status = self._group_outcome(group, members)
        row = conn.execute(
            sa.update(G)
            .where(G.c.group_id == group_id, G.c.status.in_(["QUEUED", "RUNNING"]))
            .values(status=status.value, finished_at=now)
            .returning(*G.c)
        ).one()
        group = _group(row)
        for hook in self.group_hooks:
            hook(conn, group)
        return group

    @staticmethod
    def _group_outcome(group: JobGroup, members: Sequence[Row[Any]]) -> JobGroupStatus:
        by_sequence: dict[int, set[JobStatus]] = {}
        for sequence, status in members:
            by_sequence.setdefault(sequence, set()).add(JobStatus(status))
        completed = [JobStatus.COMPLETED in s for s in by_sequence.values()]
        if group.cancel_requested:
            return JobGroupStatus.CANCELLED
        if all(completed):
            return JobGroupStatus.COMPLETED
        if any(completed):
            return JobGroupStatus.PARTIAL
        if all(s == {JobStatus.CANCELLED} for s in by_sequence.values()):
            return JobGroupStatus.CANCELLED
        return JobGroupStatus.FAILED

    def cancel_group(self, conn: Connection, group_id: int, *, now: datetime) -> JobGroup:
        group = self._get_group_row(conn, group_id)
        if group.status.is_terminal:
            return group
        conn.execute(
            sa.update(J)
            .where(J.c.group_id == group_id, J.c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELLED.value, finished_at=now)
        )
        conn.execute(sa.update(G).where(G.c.group_id == group_id).values(cancel_requested=True))
        return self._finalize_group_if_done(conn, group_id, now=now)

    # ------------------------------------------------------------------ runs

    def get_run(self, conn: Connection, run_id: int) -> JobRun | None:
        row = conn.execute(sa.select(R).where(R.c.run_id == run_id)).first()
        return _run(row) if row else None

    def get_run_for_job(self, conn: Connection, job_id: int) -> JobRun | None:
        row = conn.execute(sa.select(R).where(R.c.job_id == job_id)).first()
        return _run(row) if row else None

    def retry_chain(self, conn: Connection, job_id: int) -> list[Job]:
        """The original of `job_id` and every job linked to it by retry_of, in id order.

        Manual retries can branch the chain (two retries of one failed run); all are listed.
        """
        root = self.get_job(conn, job_id)
        while root.retry_of is not None:
            root = self.get_job(conn, root.retry_of)
        chain, frontier = [root], [root.job_id]
        while frontier:
            rows = conn.execute(sa.select(J).where(J.c.retry_of.in_(frontier))).all()
            found = [_job(r) for r in rows]
            chain.extend(found)
            frontier = [j.job_id for j in found]
        return sorted(chain, key=lambda j: j.job_id or 0)

    def set_flow_run_id(self, conn: Connection, run_id: int, flow_run_id: str) -> None:
        """Link a RUNNING run to the flow run executing it; set once, never changed."""
        result = conn.execute(
            sa.update(R)
            .where(
                R.c.run_id == run_id,
                R.c.status == JobRunStatus.RUNNING.value,
                R.c.flow_run_id.is_(None),
            )
            .values(flow_run_id=flow_run_id)
        )
        if result.rowcount != 1:
            raise StaleStateError(f"run {run_id} is not RUNNING or already has a flow run")

    def record_lease(
        self, conn: Connection, *, run_id: int, name: str, lease_id: str, now: datetime
    ) -> None:
        conn.execute(
            sa.insert(L).values(run_id=run_id, name=name, lease_id=lease_id, acquired_at=now)
        )

    def clear_lease(self, conn: Connection, *, run_id: int, lease_id: str | None = None) -> None:
        stmt = sa.delete(L).where(L.c.run_id == run_id)
        if lease_id is not None:
            stmt = stmt.where(L.c.lease_id == lease_id)
        conn.execute(stmt)

    def leases_of(self, conn: Connection, run_id: int) -> list[tuple[str, str]]:
        rows = conn.execute(sa.select(L.c.name, L.c.lease_id).where(L.c.run_id == run_id))
        return [(r.name, r.lease_id) for r in rows]

    # ------------------------------------------------------------------ reservations

    def insert_reservation(
        self, conn: Connection, *, reserved_by: str, worker_id: str, ttl: float, now: datetime
    ) -> Reservation:
        self._dispatch_lock(conn, exclusive=True)
        row = conn.execute(
            sa.insert(RES)
            .values(
                reserved_by=reserved_by,
                worker_id=worker_id,
                status=ReservationStatus.ACTIVE.value,
                created_at=now,
                ttl_seconds=ttl,
                expires_at=now + timedelta(seconds=ttl),
            )
            .returning(*RES.c)
        ).one()
        return Reservation.model_validate(row._mapping)

    def release_reservation(self, conn: Connection, reservation_id: int, *, now: datetime) -> bool:
        """Release it; True if it was still in force (active and not expired)."""
        found = conn.execute(
            sa.select(RES.c.status, RES.c.expires_at).where(RES.c.reservation_id == reservation_id)
        ).first()
        if found is None:
            raise ReservationNotFoundError(f"reservation {reservation_id} does not exist")
        result = conn.execute(
            sa.update(RES)
            .where(
                RES.c.reservation_id == reservation_id,
                RES.c.status == ReservationStatus.ACTIVE.value,
            )
            .values(status=ReservationStatus.RELEASED.value, released_at=now)
        )
        return result.rowcount == 1 and found.expires_at > now

    def extend_reservations(self, conn: Connection, *, worker_id: str, now: datetime) -> None:
        """Heartbeat: push each live reservation's expiry to now + its own ttl."""
        live = conn.execute(
            sa.select(RES.c.reservation_id, RES.c.ttl_seconds).where(
                RES.c.worker_id == worker_id,
                RES.c.status == ReservationStatus.ACTIVE.value,
                RES.c.expires_at > now,
            )
        ).all()
        for reservation_id, ttl in live:
            conn.execute(
                sa.update(RES)
                .where(RES.c.reservation_id == reservation_id)
                .values(expires_at=now + timedelta(seconds=ttl))
            )

    def release_reservations_of(
        self, conn: Connection, worker_ids: Sequence[str], *, now: datetime
    ) -> int:
        result = conn.execute(
            sa.update(RES)
            .where(
                RES.c.worker_id.in_(worker_ids),
                RES.c.status == ReservationStatus.ACTIVE.value,
            )
            .values(status=ReservationStatus.RELEASED.value, released_at=now)
        )
        return result.rowcount

    # ------------------------------------------------------------------ workers

    def upsert_worker(self, conn: Connection, worker: Worker) -> None:
        values = worker.model_dump()
        stmt = self._insert(W).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["worker_id"],
            set_={k: stmt.excluded[k] for k in ("slots", "status", "heartbeat_at", "stopped_at")},
        )
        conn.execute(stmt)

    def heartbeat(self, conn: Connection, worker_id: str, *, now: datetime) -> None:
        conn.execute(
            sa.update(W)
            .where(W.c.worker_id == worker_id, W.c.status == WorkerStatus.RUNNING.value)
            .values(heartbeat_at=now)
        )

    def set_worker_status(
        self, conn: Connection, worker_id: str, status: WorkerStatus, *, now: datetime
    ) -> None:
        conn.execute(
            sa.update(W)
            .where(W.c.worker_id == worker_id)
            .values(status=status.value, stopped_at=now)
        )

    def set_worker_slots(self, conn: Connection, worker_id: str, slots: int) -> None:
        conn.execute(sa.update(W).where(W.c.worker_id == worker_id).values(slots=slots))

    def list_workers(self, conn: Connection) -> list[Worker]:
        return [
            Worker.model_validate(r._mapping)
            for r in conn.execute(sa.select(W).order_by(W.c.started_at))
        ]

    def running_claims_by_worker(self, conn: Connection) -> dict[str | None, list[Claim]]:
        """Every RUNNING job with its run, by worker: two queries, however many there are."""
        jobs = [_job(r) for r in conn.execute(sa.select(J).where(J.c.status == _RUNNING))]
        runs = (
            {
                run.job_id: run
                for run in (
                    _run(r)
                    for r in conn.execute(
                        sa.select(R).where(R.c.job_id.in_([j.job_id for j in jobs]))
                    )
                )
            }
            if jobs
            else {}
        )
        out: dict[str | None, list[Claim]] = {}
        for job in jobs:
            run = runs.get(job.job_id or 0)
            if run is not None:
                out.setdefault(job.worker_id, []).append(Claim(job=job, run=run))
        return out
