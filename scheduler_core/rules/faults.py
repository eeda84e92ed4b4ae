"""Failure classification: a job's own failure counts as an attempt; a fault of what the
scheduler depends on does not.

- The job's failure: its handler raised, its model failed or answered badly, its
  deadline passed, or its worker died outright (crash recovery). The run ends FAILED
  and the retry rule (rules/retry.py) applies.
- An infrastructure fault: the scheduler's database or an executor's API (a workflow
  engine) unreachable, or the worker shutting down before the job ended. The job goes
  back to the queue in its place: the same job and attempt, QUEUED again, its run row
  removed (a run is the record of an execution that ended; the run log file keeps the
  interrupted execution's lines and says why). No retry is created, no group step is
  taken, no webhook is sent; workers pause dispatch until the dependency answers.
"""

from __future__ import annotations

from scheduler_core.errors import InfrastructureError
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Outcome


def interrupted(dependency: str, error: str) -> Outcome:
    """The outcome of an execution ended by a fault of `dependency`."""
    return Outcome(
        status=JobRunStatus.FAILED,
        error=f"interrupted by an infrastructure fault ({dependency}): {error}",
        interrupted_by=dependency,
    )


def from_exception(exc: BaseException) -> Outcome | None:
    """The outcome of an exception that is an infrastructure fault, else None."""
    if isinstance(exc, InfrastructureError):
        return interrupted(exc.dependency, f"{type(exc).__name__}: {exc}")
    return None


def requeues(outcome: Outcome) -> bool:
    """An interrupted execution sends its job back to the queue instead of ending it."""
    return outcome.interrupted_by is not None


SHUTDOWN = "shutdown"
"""The dependency of an execution interrupted because its own process is stopping."""


def pauses(outcome: Outcome) -> bool:
    """A dependency's fault pauses dispatch until it answers; a shutdown does not."""
    return outcome.interrupted_by not in (None, SHUTDOWN)
