"""A job scheduler core: priority order, direct execution, retries, job groups, crash
recovery and resource caps, with its state in SQLModel tables (SQLite or PostgreSQL).
It knows no job type, resource class or workflow engine: applications register them."""

from scheduler_core.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    EmptyGroupError,
    GroupNotFoundError,
    InfrastructureError,
    InvalidJobError,
    InvalidParamsError,
    InvalidPriorityError,
    InvalidStateError,
    JobCancelled,
    JobInterrupted,
    JobNotCancellableError,
    JobNotFoundError,
    JobNotQueuedError,
    KeyReusedError,
    NotFoundError,
    ParamsImmutableError,
    ReservationNotFoundError,
    ReservationTimeoutError,
    RunNotFoundError,
    RunNotRetryableError,
    SchedulerError,
    StaleStateError,
    UnknownJobTypeError,
)
from scheduler_core.executor import ExecutionContext, Executor
from scheduler_core.plugins import Plugin
from scheduler_core.run_records import RunCallbacks
from scheduler_core.service import RecoveryReport, SchedulerService
from scheduler_core.settings import SchedulerSettings
from scheduler_core.statuses import (
    JobGroupStatus,
    JobOrigin,
    JobRunStatus,
    JobStatus,
    ReservationStatus,
    WorkerStatus,
)
from scheduler_core.values import Job, JobGroup, JobRun, Reservation, Worker

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailableError",
    "EmptyGroupError",
    "ExecutionContext",
    "Executor",
    "GroupNotFoundError",
    "InfrastructureError",
    "InvalidJobError",
    "InvalidParamsError",
    "InvalidPriorityError",
    "InvalidStateError",
    "Job",
    "JobCancelled",
    "JobGroup",
    "JobGroupStatus",
    "JobInterrupted",
    "JobNotCancellableError",
    "JobNotFoundError",
    "JobNotQueuedError",
    "JobOrigin",
    "JobRun",
    "JobRunStatus",
    "JobStatus",
    "KeyReusedError",
    "NotFoundError",
    "ParamsImmutableError",
    "Plugin",
    "RecoveryReport",
    "Reservation",
    "ReservationNotFoundError",
    "ReservationStatus",
    "ReservationTimeoutError",
    "RunCallbacks",
    "RunNotFoundError",
    "RunNotRetryableError",
    "SchedulerError",
    "SchedulerService",
    "SchedulerSettings",
    "StaleStateError",
    "UnknownJobTypeError",
    "Worker",
    "WorkerStatus",
]
