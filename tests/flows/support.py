"""Helpers for the flow tests: the Prefect objects they read back, and waiting with a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.ollama_servers import ollama_slot_name
from scheduler_core import JobStatus, SchedulerService
from scheduler_core.values import Job, JobRun

T = TypeVar("T")


async def create_ollama_limit() -> None:
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=ollama_slot_name(), limit=1)
        )


async def read_markdown(key: str) -> list[str]:
    """The Markdown of every artifact stored under `key`, oldest first."""
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return [a.data for a in artifacts if a.type == "markdown" and isinstance(a.data, str)]


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 15.0, what: str = "a condition"
) -> T:
    """Poll `check` until it returns a truthy value, failing loudly at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def stays(
    check: Callable[[], Awaitable[object]], *, seconds: float, what: str = "a condition"
) -> None:
    """Fail as soon as `check` stops holding within the next `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not await check():
            raise AssertionError(f"expected {what} for {seconds}s, but it stopped")
        await asyncio.sleep(0.05)


def dispatch_until_ended(svc: SchedulerService, timeout: float = 60) -> tuple[Job, JobRun]:
    """Dispatch the queued job until it ends. A claim the Prefect server delays past a
    short deadline hands the job back (the API's delay, not the job's failure); the
    next claim gets it again."""
    deadline = time.monotonic() + timeout
    while True:
        done = svc.dispatch_one()
        assert done is not None, "nothing to dispatch"
        job, run = done
        if job.status != JobStatus.QUEUED:
            return job, run
        assert time.monotonic() < deadline, f"job {job.job_id} still handed back: {run.error}"


class Records(logging.Handler):
    """Keeps what is logged through it, as it is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
