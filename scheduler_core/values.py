"""The values the scheduler passes around: what a job, run, group, reservation and worker
are, and what a request, a claim and an outcome carry. No SQL here: tables.py adds the
storage to these classes, and everything else (rules, executors, plugins, the public API)
works on the values alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Field, SQLModel

from scheduler_core.statuses import (
    JobGroupStatus,
    JobOrigin,
    JobRunStatus,
    JobStatus,
    ReservationStatus,
    WorkerStatus,
)


def utcnow() -> datetime:
    """The scheduler's clock: timezone-aware UTC, as every stored timestamp is."""
    return datetime.now(UTC)


# A requested unit of work; retries are new Jobs linked by retry_of.
class Job(SQLModel):
    job_id: int | None = Field(default=None, primary_key=True)
    job_type: str = Field(max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    position: int = 0
    status: JobStatus = JobStatus.QUEUED
    resource: str = Field(default="default", max_length=64)
    # True while a group member waits for its predecessor; such jobs are never dispatched.
    held: bool = False
    group_id: int | None = Field(default=None, foreign_key="job_group.group_id")
    sequence: int | None = None
    retry_of: int | None = Field(default=None, foreign_key="job.job_id")
    attempt: int = 1
    max_retries: int = 3
    not_before: datetime | None = None
    origin: JobOrigin = JobOrigin.QUEUE
    worker_id: str | None = Field(default=None, max_length=128)
    # The job's own execution deadline (None: its type's, else the setting).
    timeout_seconds: float | None = None
    # Set when a user cancels the job while it RUNS: its worker stops it (cancellation.py).
    cancel_requested: bool = False
    # The job's identity in an orchestrator outside the scheduler (a Prefect flow run id):
    # one job per external id, so a run submitted there is queued here once.
    external_id: str | None = Field(default=None, max_length=64)
    # The submitter's idempotency key: one job per key (a second submission returns it).
    key: str | None = Field(default=None, max_length=256)
    # The slot the job occupies while it RUNS: its resource class, or the instance of it
    # the claiming worker serves (Registry.bind: one Ollama server among several).
    slot: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


# The audit record of one execution attempt: exactly one per executed or skipped Job.
class JobRun(SQLModel):
    run_id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.job_id", unique=True)
    status: JobRunStatus = JobRunStatus.RUNNING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = Field(default=None, max_length=128)
    exit_code: int | None = None
    error: str | None = None
    artifacts: list[str] = Field(default_factory=list)
    log_path: str | None = None
    params_snapshot: dict[str, Any] = Field(default_factory=dict)
    flow_run_id: str | None = Field(default=None, max_length=64)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


# An ordered list of member Jobs that run one after another.
class JobGroup(SQLModel):
    group_id: int | None = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=256)
    status: JobGroupStatus = JobGroupStatus.QUEUED
    size: int = 0
    cancel_requested: bool = False
    origin: JobOrigin = JobOrigin.QUEUE
    key: str | None = Field(default=None, max_length=256)  # as Job.key, one group per key
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


# A claim on the next execution slot for a direct execution; pauses queue dispatch.
class Reservation(SQLModel):
    reservation_id: int | None = Field(default=None, primary_key=True)
    reserved_by: str = Field(max_length=256)
    worker_id: str | None = Field(default=None, max_length=128)
    status: ReservationStatus = ReservationStatus.ACTIVE
    created_at: datetime = Field(default_factory=utcnow)
    ttl_seconds: float = 60.0
    expires_at: datetime
    released_at: datetime | None = None
    job_id: int | None = Field(default=None, foreign_key="job.job_id")


# A process that dispatches or executes jobs; liveness comes from pid (same host) or heartbeat.
class Worker(SQLModel):
    worker_id: str = Field(primary_key=True, max_length=128)
    host: str = Field(max_length=256)
    pid: int
    process_started_at: float = 0.0
    slots: int = 0
    status: WorkerStatus = WorkerStatus.RUNNING
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)
    stopped_at: datetime | None = None


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
    timeout_seconds: float | None = None
    external_id: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker has started, with the run that records it."""

    job: Job
    run: JobRun


class Claims(list[Claim]):
    """The claims of one transaction. `passed_over`: a job it could have claimed was left
    because another transaction held its row (PostgreSQL's SKIP LOCKED: a claim elsewhere,
    or a short write), so a claim a moment later may find it."""

    passed_over = False

    @classmethod
    def of(cls, claim: Claim | None) -> Claims:
        return cls(() if claim is None else (claim,))

    @property
    def first(self) -> Claim | None:
        return self[0] if self else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an execution ended, as the executor reports it.

    `interrupted_by` names a dependency whose fault (not the job's) ended the execution
    (rules/faults.py): the job goes back to the queue and no attempt is counted.
    """

    status: JobRunStatus
    error: str | None = None
    exit_code: int | None = None
    artifacts: list[str] = field(default_factory=list)
    interrupted_by: str | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """What a run's end changed: the job and run, the retry it created, its group."""

    job: Job
    run: JobRun
    retry: Job | None
    group: JobGroup | None
