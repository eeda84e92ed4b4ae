"""Cancellation rule: only a QUEUED job is cancelled; the refusal explains why not."""

from __future__ import annotations

import pytest

from scheduler_core.errors import InvalidStateError, JobNotCancellableError
from scheduler_core.rules.cancel import CANCELLABLE, refusal
from scheduler_core.statuses import JobStatus
from tests.unit.conftest import MakeJob


def test_only_a_queued_job_is_cancellable() -> None:
    assert CANCELLABLE is JobStatus.QUEUED


def test_a_running_job_is_refused_because_running_work_is_never_preempted(
    make_job: MakeJob,
) -> None:
    error = refusal(make_job(job_id=5, status=JobStatus.RUNNING))
    assert isinstance(error, JobNotCancellableError)
    assert isinstance(error, InvalidStateError)
    assert str(error) == (
        "job 5 is RUNNING and cannot be cancelled: "
        "running work is never preempted; wait for it to finish"
    )


@pytest.mark.parametrize("status", [s for s in JobStatus if s.is_terminal])
def test_an_ended_job_is_refused_because_it_has_already_ended(
    status: JobStatus, make_job: MakeJob
) -> None:
    error = refusal(make_job(job_id=8, status=status))
    assert isinstance(error, JobNotCancellableError)
    assert str(error) == f"job 8 is {status.value} and cannot be cancelled: it has already ended"
