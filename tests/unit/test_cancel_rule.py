"""Cancellation rule: an ended job cannot be cancelled; the refusal says why."""

from __future__ import annotations

import pytest

from scheduler_core.errors import JobNotCancellableError
from scheduler_core.rules.cancel import refusal
from scheduler_core.statuses import JobStatus
from tests.unit.conftest import MakeJob


@pytest.mark.parametrize("status", [s for s in JobStatus if s.is_terminal])
def test_an_ended_job_is_refused_because_it_has_already_ended(
    status: JobStatus, make_job: MakeJob
) -> None:
    error = refusal(make_job(job_id=8, status=status))
    assert isinstance(error, JobNotCancellableError)
    assert str(error) == f"job 8 is {status.value} and cannot be cancelled: it has already ended"
