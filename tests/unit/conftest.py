"""Factories for the unit tier: plain value objects, no database, no clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler_core.values import Job, JobGroup, JobRun, Worker

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
"""A fixed 'now' for every rule that takes one."""

MakeJob = Callable[..., Job]
MakeGroup = Callable[..., JobGroup]
MakeRun = Callable[..., JobRun]
MakeWorker = Callable[..., Worker]


@pytest.fixture(scope="session")
def unit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("unit") / "llmsched-home"


@pytest.fixture(autouse=True)
def isolated_home(unit_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Overrides the suite's per-test home: the rules do no I/O, so one home for the whole
    tier is enough, and skipping a tmp_path per test keeps the tier fast."""
    monkeypatch.setenv("LLMSCHED_HOME", str(unit_home))
    return unit_home


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def make_job() -> MakeJob:
    """A Job with sensible defaults; keyword overrides replace any field."""

    def make(**overrides: Any) -> Job:
        fields: dict[str, Any] = {"job_id": 1, "job_type": "t", "created_at": NOW, **overrides}
        return Job(**fields)

    return make


@pytest.fixture
def make_group() -> MakeGroup:
    def make(**overrides: Any) -> JobGroup:
        fields: dict[str, Any] = {"group_id": 1, "name": "g", "created_at": NOW, **overrides}
        return JobGroup(**fields)

    return make


@pytest.fixture
def make_run() -> MakeRun:
    def make(**overrides: Any) -> JobRun:
        fields: dict[str, Any] = {"run_id": 1, "job_id": 1, **overrides}
        return JobRun(**fields)

    return make


@pytest.fixture
def make_worker() -> MakeWorker:
    def make(**overrides: Any) -> Worker:
        fields: dict[str, Any] = {
            "worker_id": "w1",
            "host": "host-a",
            "pid": 4242,
            "started_at": NOW,
            "heartbeat_at": NOW,
            **overrides,
        }
        return Worker(**fields)

    return make
