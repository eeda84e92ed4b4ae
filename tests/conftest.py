"""Shared fixtures: every core test runs on a real SQLite file and, when
SCHEDULER_TEST_POSTGRES_URL is set, on a fresh PostgreSQL schema too."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from scheduler_core import SchedulerService

POSTGRES_URL = os.environ.get("SCHEDULER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-pipeline",
        action="store_true",
        default=False,
        help="also run the story/research pipeline scenarios (PIPE-01..05)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS)


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `condition` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every process it starts) keeps its data and logs in its own home."""
    home = tmp_path / "llmsched-home"
    monkeypatch.setenv("LLMSCHED_HOME", str(home))
    return home


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database no other test sees: a new SQLite file, or a new PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    assert POSTGRES_URL
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


TEST_SETTINGS: dict[str, Any] = {
    "max_retries": 3,
    "retry_backoff_seconds": 0,
    "heartbeat_interval": 0.5,
    "poll_interval": 0.05,
    "db_retry_seconds": 10,
}


@pytest.fixture
def open_service(db_url: str) -> Iterator[Callable[..., SchedulerService]]:
    """Factory: open services on this test's database; all are closed at teardown."""
    opened: list[SchedulerService] = []

    def factory(**overrides: Any) -> SchedulerService:
        svc = SchedulerService.open(db_url, **{**TEST_SETTINGS, **overrides})
        opened.append(svc)
        return svc

    yield factory
    for svc in reversed(opened):
        svc.close()


@pytest.fixture
def svc(open_service: Callable[..., SchedulerService]) -> SchedulerService:
    return open_service()
