"""Deadlines: past its execution deadline a job is stopped and FAILED with an error that
names the limit and how to raise it; its slot is released and the retry rule applies."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from scheduler_core import (
    ConfigurationError,
    ExecutionContext,
    InvalidJobError,
    JobStatus,
    SchedulerService,
)
from tests.conftest import wait_for


def test_a_python_handler_past_its_deadline_is_stopped_and_retried(
    svc: SchedulerService,
) -> None:
    def spin(params: dict[str, Any]) -> None:
        while True:  # pure Python: stopped at the deadline
            time.sleep(0.001)

    svc.register("spin", spin, resource="external")
    job = svc.enqueue_job("spin", timeout_seconds=0.3, max_retries=1)
    started = time.monotonic()
    done, run = svc.dispatch_one() or (None, None)
    assert time.monotonic() - started < 3
    assert done is not None and run is not None
    assert done.status == JobStatus.FAILED
    assert "deadline exceeded" in (run.error or "") and "0.3 s" in (run.error or "")
    assert "LLMSCHED_JOB_TIMEOUT_SECONDS" in (run.error or "")
    (retry,) = [j for j in svc.list_jobs() if j.retry_of == job.job_id]
    assert retry.timeout_seconds == 0.3 and retry.attempt == 2


def test_a_handler_stuck_in_a_blocking_call_is_failed_after_the_grace_and_frees_its_slot(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    svc.deadlines.grace = 0.5
    ran: list[str] = []

    def handler(params: dict[str, Any]) -> None:
        if params["name"] == "stuck":
            time.sleep(8)  # one C call: the deadline cannot interrupt it
        ran.append(params["name"])

    svc.register("job", handler, resource="exclusive")
    svc.set_resource_limit("exclusive", 1)
    stuck = svc.enqueue_job("job", {"name": "stuck"}, timeout_seconds=0.5, max_retries=0)
    after = svc.enqueue_job("job", {"name": "after"})
    svc.start(concurrency=2)
    try:
        wait_for(
            lambda: svc.get_job(stuck.job_id or 0).status == JobStatus.FAILED,
            timeout=5,
            what="the stuck job FAILED at its deadline plus grace",
        )
        run = svc.get_job_run_for_job(stuck.job_id or 0)
        assert run is not None and "deadline exceeded" in (run.error or "")
        # Its exclusive slot is free at once, though its thread is still blocked.
        wait_for(
            lambda: svc.get_job(after.job_id or 0).status == JobStatus.COMPLETED,
            timeout=5,
            what="the next exclusive job ran",
        )
        assert "stuck" not in ran
    finally:
        svc.stop(timeout=15)
    assert svc.get_job(stuck.job_id or 0).status == JobStatus.FAILED  # its late end is ignored


def test_the_deadline_is_the_jobs_else_its_types_else_the_setting(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service(job_timeout_seconds=42)
    seen: list[float | None] = []

    def handler(params: dict[str, Any], ctx: ExecutionContext) -> None:
        seen.append(ctx.timeout_seconds)

    svc.register("plain", handler)
    svc.register("typed", handler, timeout_seconds=7)
    svc.enqueue_job("plain", priority=3)
    svc.enqueue_job("typed", priority=2)
    svc.enqueue_job("typed", priority=1, timeout_seconds=2.5)
    while svc.dispatch_one() is not None:
        pass
    assert seen == [42, 7, 2.5]


@pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan, True, "10", 31 * 24 * 3600])
def test_a_bad_deadline_is_refused_before_anything_is_written(
    svc: SchedulerService, bad: Any
) -> None:
    svc.register("job", lambda params: None)
    with pytest.raises(InvalidJobError, match="timeout_seconds must be a number of seconds"):
        svc.enqueue_job("job", timeout_seconds=bad)
    with pytest.raises(ConfigurationError, match="timeout_seconds must be a number of seconds"):
        svc.register("other", lambda params: None, timeout_seconds=bad)
    assert svc.list_jobs() == []
