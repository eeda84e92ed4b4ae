"""The storage of the values: table names, column types and indexes.

Each table class adds to its value (values.py) only what storage needs: the column
types SQLModel cannot infer (aware timestamps, JSON, enum statuses kept as strings),
and indexes chosen so that picking the next job is an index seek. The dispatch index
orders QUEUED, non-held jobs of one resource by the dispatch order
(rules/ordering.py), so the dispatcher reads the head of each resource's slice and
its cost does not grow with the queue.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from scheduler_core.columns import JSONType, Seconds, UTCDateTime
from scheduler_core.rules.ordering import DISPATCH_ORDER
from scheduler_core.statuses import (
    JobGroupStatus,
    JobOrigin,
    JobRunStatus,
    JobStatus,
    ReservationStatus,
    WorkerStatus,
)
from scheduler_core.values import Job, JobGroup, JobRun, Reservation, Worker, utcnow


def only_where(condition: str) -> dict[str, Any]:
    """The keyword arguments of an index that holds only the rows meeting `condition`."""
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def only_status(status: JobStatus) -> dict[str, Any]:
    """The keyword arguments of an index that holds only the jobs in `status`. A query
    is served by it only if it repeats the condition as a literal (store/hot.py
    `status_in`)."""
    return only_where(f"status = '{status.value}'")


DISPATCH_INDEX_ONLY = only_status(JobStatus.QUEUED)
RUNNING_SLOT_INDEX_ONLY = only_status(JobStatus.RUNNING)
PARTIAL_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
"""The statuses whose jobs a partial index holds (ix_job_dispatch, ix_job_running_slot)."""
DISPATCH_INDEX_COLUMNS = (
    "held",
    "resource",
    *(sa.text(f"{name} DESC") if desc else name for name, desc in DISPATCH_ORDER),
)
"""ix_job_dispatch: the claim's seek (store/hot.py `eligible`) for each class's head."""


def _ts(*, required: bool = False) -> Any:
    if required:
        return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    return Field(default=None, sa_type=UTCDateTime)


def _status(default: Any) -> Any:
    return Field(default=default, sa_type=sa.String(16), nullable=False)


def _json(factory: type) -> Any:
    return Field(default_factory=factory, sa_type=JSONType, nullable=False)


class JobRecord(Job, table=True):
    __tablename__ = "job"
    __table_args__ = (
        # Partial: only QUEUED jobs, the ones a claim seeks. A job's start then deletes
        # its entry and its end writes none: a page less per job in SQLite's WAL, and an
        # index that does not grow with the history of finished jobs.
        sa.Index(
            "ix_job_dispatch",
            *DISPATCH_INDEX_COLUMNS,
            **DISPATCH_INDEX_ONLY,
        ),
        # Partial: most jobs are neither group members nor retries, and an index entry
        # per job would be written (and committed) for nothing.
        sa.Index(
            "ix_job_group_sequence",
            "group_id",
            "sequence",
            **only_where("group_id IS NOT NULL"),
        ),
        # Partial: only RUNNING jobs, a few, are in it; a claim counts a slot's in it.
        sa.Index(
            "ix_job_running_slot",
            "slot",
            "status",  # so that the count is covered by the index
            **RUNNING_SLOT_INDEX_ONLY,
        ),
        # Partial: most jobs have neither, and each index entry is paid at every enqueue.
        sa.Index(
            "ix_job_external_id",
            "external_id",
            unique=True,
            **only_where("external_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_job_key",
            "key",
            unique=True,
            **only_where("key IS NOT NULL"),
        ),
        sa.Index(
            "ix_job_retry_of",
            "retry_of",
            **only_where("retry_of IS NOT NULL"),
        ),
    )

    params: dict[str, Any] = _json(dict)
    position: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)
    timeout_seconds: float | None = Field(default=None, sa_type=Seconds)
    cancel_requested: bool = Field(
        default=False, nullable=False, sa_column_kwargs={"server_default": sa.false()}
    )
    status: JobStatus = _status(JobStatus.QUEUED)
    origin: JobOrigin = _status(JobOrigin.QUEUE)
    not_before: datetime | None = _ts()
    created_at: datetime = _ts(required=True)
    queued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class JobRunRecord(JobRun, table=True):
    __tablename__ = "job_run"

    status: JobRunStatus = _status(JobRunStatus.RUNNING)
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    error: str | None = Field(default=None, sa_type=sa.Text)
    artifacts: list[str] = _json(list)
    log_path: str | None = Field(default=None, sa_type=sa.Text)
    params_snapshot: dict[str, Any] = _json(dict)


class JobGroupRecord(JobGroup, table=True):
    __tablename__ = "job_group"
    __table_args__ = (sa.Index("ix_job_group_key", "key", unique=True),)

    status: JobGroupStatus = _status(JobGroupStatus.QUEUED)
    origin: JobOrigin = _status(JobOrigin.QUEUE)
    created_at: datetime = _ts(required=True)
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class ReservationRecord(Reservation, table=True):
    __tablename__ = "reservation"
    __table_args__ = (sa.Index("ix_reservation_active", "status", "expires_at"),)

    status: ReservationStatus = _status(ReservationStatus.ACTIVE)
    created_at: datetime = _ts(required=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    released_at: datetime | None = _ts()


class WorkerRecord(Worker, table=True):
    __tablename__ = "worker"

    status: WorkerStatus = _status(WorkerStatus.RUNNING)
    started_at: datetime = _ts(required=True)
    heartbeat_at: datetime = _ts(required=True)
    stopped_at: datetime | None = _ts()


# A resource class; `limit` caps RUNNING jobs of the class across all workers (None: no cap).
class ResourceClass(SQLModel, table=True):
    __tablename__ = "resource_class"

    name: str = Field(primary_key=True, sa_type=sa.String(64))
    limit: int | None = Field(default=None)


# A lease on an external concurrency limit held by a running job (an executor's, e.g. a
# workflow engine's global concurrency limit), kept so that crash recovery releases exactly it
# instead of waiting for it to expire.
class ConcurrencyLease(SQLModel, table=True):
    __tablename__ = "concurrency_lease"

    lease_id: str = Field(primary_key=True, sa_type=sa.String(64))
    run_id: int = Field(foreign_key="job_run.run_id", nullable=False, index=True)
    name: str = Field(sa_type=sa.String(64), nullable=False)
    acquired_at: datetime = _ts(required=True)


# Schema version, so later releases can migrate in place.
class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"

    version: int = Field(primary_key=True)
    applied_at: datetime = _ts(required=True)


SCHEMA_VERSION = 9  # migrations.py brings older databases here

JOBS: sa.Table = JobRecord.__table__  # type: ignore[attr-defined]
RUNS: sa.Table = JobRunRecord.__table__  # type: ignore[attr-defined]
GROUPS: sa.Table = JobGroupRecord.__table__  # type: ignore[attr-defined]
RESERVATIONS: sa.Table = ReservationRecord.__table__  # type: ignore[attr-defined]
WORKERS: sa.Table = WorkerRecord.__table__  # type: ignore[attr-defined]
RESOURCES: sa.Table = ResourceClass.__table__  # type: ignore[attr-defined]
LEASES: sa.Table = ConcurrencyLease.__table__  # type: ignore[attr-defined]
