"""Status enums of every entity; terminal sets live here so rules share one definition."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class JobRunStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


class JobGroupStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self not in (JobGroupStatus.QUEUED, JobGroupStatus.RUNNING)


class JobOrigin(StrEnum):
    QUEUE = "queue"
    DIRECT = "direct"
    SCHEDULE = "schedule"
    PREFECT = "prefect"  # a flow run created in Prefect (UI, API, deployment schedule)


class ReservationStatus(StrEnum):
    ACTIVE = "ACTIVE"
    RELEASED = "RELEASED"


class WorkerStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    DEAD = "DEAD"


TERMINAL_JOB_STATUSES = frozenset(s for s in JobStatus if s.is_terminal)
