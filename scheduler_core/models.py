"""SQLModel tables. Indexes are chosen so that picking the next job is an index seek.

The dispatch index orders QUEUED, non-held jobs of one resource by
``priority DESC, position ASC, job_id ASC``; the dispatcher reads the head of
each resource's slice, so its cost does not grow with the queue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from scheduler_core.statuses import (
    JobGroupStatus,
    JobOrigin,
    JobRunStatus,
    JobStatus,
    ReservationStatus,
    WorkerStatus,
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops tzinfo otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # SQLite keeps timestamps as text. Writing and parsing that text with the datetime
    # module's own ISO functions gives the same text SQLAlchemy's DATETIME writes
    # ("2026-01-31 12:00:00.000000") in one C call each way: a job reads and writes
    # about a dozen timestamps.

    def bind_processor(self, dialect: sa.Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            naive = self.process_bind_param(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parse = datetime.fromisoformat

        def process(value: str | None) -> datetime | None:
            return None if value is None else parse(value).replace(tzinfo=UTC)

        return process


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable)


def _status(enum_default: Any) -> Any:
    return Field(default=enum_default, sa_type=sa.String(16), nullable=False)


# A requested unit of work; retries are new Jobs linked by retry_of.
class Job(SQLModel):
    job_id: int | None = Field(default=None, primary_key=True)
    job_type: str = Field(sa_type=sa.String(128), nullable=False)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    priority: int = Field(default=0, nullable=False)
    position: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)
    status: JobStatus = _status(JobStatus.QUEUED)
    resource: str = Field(default="default", sa_type=sa.String(64), nullable=False)
    # True while a group member waits for its predecessor; such jobs are never dispatched.
    held: bool = Field(default=False, nullable=False)
    group_id: int | None = Field(default=None, foreign_key="job_group.group_id")
    sequence: int | None = Field(default=None)
    retry_of: int | None = Field(default=None, foreign_key="job.job_id")
    attempt: int = Field(default=1, nullable=False)
    max_retries: int = Field(default=3, nullable=False)
    not_before: datetime | None = _ts()
    origin: JobOrigin = Field(default=JobOrigin.QUEUE, sa_type=sa.String(16), nullable=False)
    worker_id: str | None = Field(default=None, sa_type=sa.String(128))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    queued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


# The audit record of one execution attempt: exactly one per executed or skipped Job.
class JobRun(SQLModel):
    run_id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.job_id", unique=True, nullable=False)
    status: JobRunStatus = _status(JobRunStatus.RUNNING)
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    worker_id: str | None = Field(default=None, sa_type=sa.String(128))
    exit_code: int | None = None
    error: str | None = Field(default=None, sa_type=sa.Text)
    artifacts: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    log_path: str | None = Field(default=None, sa_type=sa.Text)
    params_snapshot: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    flow_run_id: str | None = Field(default=None, sa_type=sa.String(64))

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


# An ordered list of member Jobs that run one after another.
class JobGroup(SQLModel):
    group_id: int | None = Field(default=None, primary_key=True)
    name: str = Field(default="", sa_type=sa.String(256), nullable=False)
    status: JobGroupStatus = _status(JobGroupStatus.QUEUED)
    size: int = Field(default=0, nullable=False)
    cancel_requested: bool = Field(default=False, nullable=False)
    origin: JobOrigin = Field(default=JobOrigin.QUEUE, sa_type=sa.String(16), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


# A claim on the next execution slot for a direct execution; pauses queue dispatch.
class Reservation(SQLModel):
    reservation_id: int | None = Field(default=None, primary_key=True)
    reserved_by: str = Field(sa_type=sa.String(256), nullable=False)
    worker_id: str | None = Field(default=None, sa_type=sa.String(128))
    status: ReservationStatus = _status(ReservationStatus.ACTIVE)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    ttl_seconds: float = Field(default=60.0, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    released_at: datetime | None = _ts()
    job_id: int | None = Field(default=None, foreign_key="job.job_id")


# A process that dispatches or executes jobs; liveness comes from pid (same host) or heartbeat.
class Worker(SQLModel):
    worker_id: str = Field(primary_key=True, sa_type=sa.String(128))
    host: str = Field(sa_type=sa.String(256), nullable=False)
    pid: int = Field(nullable=False)
    process_started_at: float = Field(default=0.0, nullable=False)
    slots: int = Field(default=0, nullable=False)
    status: WorkerStatus = _status(WorkerStatus.RUNNING)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    heartbeat_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    stopped_at: datetime | None = _ts()


# Tables. The public classes above are plain values (cheap to build, safe to pass
# between threads); these add the storage: table names and indexes.


class JobRecord(Job, table=True):
    __tablename__ = "job"
    __table_args__ = (
        sa.Index(
            "ix_job_dispatch",
            "status",
            "held",
            "resource",
            sa.text("priority DESC"),
            "position",
            "job_id",
        ),
        # Partial: most jobs are neither group members nor retries, and an index entry
        # per job would be written (and committed) for nothing.
        sa.Index(
            "ix_job_group_sequence",
            "group_id",
            "sequence",
            sqlite_where=sa.text("group_id IS NOT NULL"),
            postgresql_where=sa.text("group_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_job_retry_of",
            "retry_of",
            sqlite_where=sa.text("retry_of IS NOT NULL"),
            postgresql_where=sa.text("retry_of IS NOT NULL"),
        ),
    )


class JobRunRecord(JobRun, table=True):
    __tablename__ = "job_run"


class JobGroupRecord(JobGroup, table=True):
    __tablename__ = "job_group"


class ReservationRecord(Reservation, table=True):
    __tablename__ = "reservation"
    __table_args__ = (sa.Index("ix_reservation_active", "status", "expires_at"),)


class WorkerRecord(Worker, table=True):
    __tablename__ = "worker"


# A resource class; `limit` caps RUNNING jobs of the class across all workers (None: no cap).
class ResourceClass(SQLModel, table=True):
    __tablename__ = "resource_class"

    name: str = Field(primary_key=True, sa_type=sa.String(64))
    limit: int | None = Field(default=None)


# A lease on an external concurrency limit (Prefect's `ollama`) held by a running job,
# kept so that crash recovery releases exactly it instead of waiting for it to expire.
class ConcurrencyLease(SQLModel, table=True):
    __tablename__ = "concurrency_lease"

    lease_id: str = Field(primary_key=True, sa_type=sa.String(64))
    run_id: int = Field(foreign_key="job_run.run_id", nullable=False, index=True)
    name: str = Field(sa_type=sa.String(64), nullable=False)
    acquired_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# Schema version, so later releases can migrate in place.
class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"

    version: int = Field(primary_key=True)
    applied_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


SCHEMA_VERSION = 1
