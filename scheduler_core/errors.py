"""One exception hierarchy: every error the scheduler raises on purpose is a SchedulerError."""

from __future__ import annotations


class SchedulerError(Exception):
    """The scheduler refused an operation."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidJobError(SchedulerError, ValueError):
    """A job request is invalid; nothing was written."""


class UnknownJobTypeError(InvalidJobError):
    """No handler is registered for this job type; register one with svc.register()."""


class InvalidParamsError(InvalidJobError):
    """Job params must be a JSON object (a dict of JSON-serialisable values)."""


class KeyReusedError(InvalidJobError):
    """An idempotency key already names different work (keys.py)."""


class InvalidPriorityError(InvalidJobError):
    """Priority must be an integer (higher runs first)."""


class EmptyGroupError(InvalidJobError):
    """A job group needs at least one member job."""


class NotFoundError(SchedulerError, LookupError):
    """The requested record does not exist."""


class JobNotFoundError(NotFoundError):
    """No job with this id."""


class RunNotFoundError(NotFoundError):
    """No job run with this id."""


class GroupNotFoundError(NotFoundError):
    """No job group with this id."""


class ReservationNotFoundError(NotFoundError):
    """No reservation with this id."""


class InvalidStateError(SchedulerError):
    """The record is not in a state that allows this operation."""


class JobNotCancellableError(InvalidStateError):
    """The job has already ended."""


class RunNotRetryableError(InvalidStateError):
    """Only a FAILED or CANCELLED run (or job) can be retried."""


class DuplicateExternalIdError(InvalidStateError):
    """A job with this external id (a Prefect flow run) is queued already."""


class JobNotQueuedError(InvalidStateError):
    """A job's params and priority change only while it is QUEUED (INV-001)."""


class ParamsImmutableError(JobNotQueuedError):
    """A job's params cannot change once it has left QUEUED (INV-001)."""


class StaleStateError(InvalidStateError):
    """The record changed under us: a conditional update matched no row."""


class ReservationTimeoutError(SchedulerError, TimeoutError):
    """No slot became free for a direct execution within its timeout."""


class InfrastructureError(SchedulerError):
    """A dependency of the scheduler (its database, a workflow engine's API, the worker
    shutting down) failed, not the job: the job goes back to the queue, no attempt is
    counted. An executor or a handler raises it (or a subclass) to say so."""

    dependency = "infrastructure"


class DatabaseUnavailableError(InfrastructureError):
    """The database stayed locked or unreachable after retries; no state was changed."""

    dependency = "database"


class JobCancelled(SchedulerError):
    """Raised in a running job's thread when a user cancelled it (cancellation.py)."""


class JobInterrupted(KeyboardInterrupt):
    """The process running a job was interrupted (Ctrl-C, SIGTERM): the job was handed
    back to the queue, its attempt not counted. A KeyboardInterrupt, so it still stops
    the caller; its message says which job went back."""


class ConfigurationError(SchedulerError):
    """The scheduler is misconfigured."""


class InvalidIdError(InvalidJobError):
    """An id must be an integer from 1 to the largest the backend stores (SQLite 2**63-1,
    PostgreSQL 2**31-1)."""


class OutputDirError(InvalidParamsError):
    """A job's output_dir must name a directory inside the artifacts directory (or a root
    the operator allows in LLMSCHED_OUTPUT_ROOTS)."""
