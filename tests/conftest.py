"""Shared fixtures: every core test runs on a real SQLite file and, when
SCHEDULER_TEST_POSTGRES_URL is set, on a fresh PostgreSQL schema too."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from scheduler_core import SchedulerService
from tests.llm_server.process import LLMServerProcess
from tests.prefect_env import PREFECT_PORT

POSTGRES_URL = os.environ.get("SCHEDULER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-pipeline",
        action="store_true",
        default=False,
        help="also run the story/research pipeline scenarios (PIPE-01..05)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Pipeline scenarios run only with --run-pipeline; without it they are deselected.
    The slow tests (then the pipeline scenarios) go first, so that test processes start
    them at once instead of ending the session on them."""
    if not config.getoption("--run-pipeline"):
        dropped = [item for item in items if item.get_closest_marker("pipeline") is not None]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if item.get_closest_marker("pipeline") is None]
    items.sort(
        key=lambda item: (
            item.get_closest_marker("slow") is None,
            item.get_closest_marker("pipeline") is None,
        )
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        # The pipeline scenarios test Prefect and the LLM wire; the backend rules they
        # rely on are covered on every backend by the core suite. SQLite keeps them short.
        marked = metafunc.definition.get_closest_marker
        sqlite_only = marked("pipeline") is not None or marked("sqlite_only") is not None
        metafunc.parametrize("backend", ["sqlite"] if sqlite_only else BACKENDS)


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


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect API server process for the session, on the address fixed above.

    Before it stops, what this process still sends to the API (logs, events) is flushed
    while the server is up: at exit Prefect would otherwise retry it against the
    stopped server for about a minute (connection backoff), and its failure reports
    would run beside the end of the session (e.g. a coverage report).
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    from tests.prefect_server import PrefectServer

    # A default server, services on, as `prefect server start` gives users.
    server = PrefectServer(tmp_path_factory.mktemp("prefect-home"), PREFECT_PORT)
    assert server.url == os.environ["PREFECT_API_URL"]
    server.start()
    try:
        yield server.url
    finally:
        for worker in (APILogWorker, EventsWorker):
            worker.drain_all(timeout=30)
        server.stop()


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LLMServerProcess]:
    """One fake LLM server process for the session (Ollama, OpenAI, Anthropic wire formats)."""
    with LLMServerProcess() as server:
        yield server


@pytest.fixture
def fake_llm(llm_server: LLMServerProcess, monkeypatch: pytest.MonkeyPatch) -> LLMServerProcess:
    """The fake server, reset, with every provider pointed at it."""
    llm_server.reset()
    base_url = llm_server.base_url
    monkeypatch.setenv("OLLAMA_HOST", base_url.removeprefix("http://"))
    monkeypatch.setenv("OPENAI_BASE_URL", f"{base_url}/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    return llm_server


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test (and every process it starts) keeps its data and logs in its own home;
    the app's tables (output library, novelty index) follow the test's database, and their
    engines are closed after it."""
    home = tmp_path / "llmsched-home"
    monkeypatch.setenv("LLMSCHED_HOME", str(home))
    # Outputs may also go to the test's own directory, as an operator may allow.
    monkeypatch.setenv("LLMSCHED_OUTPUT_ROOTS", str(tmp_path))
    yield home
    if (app_database := sys.modules.get("flows.app_database")) is not None:
        app_database.use_database(None)
    if (library := sys.modules.get("flows.library.store")) is not None:
        library.close_library()
    if (novelty := sys.modules.get("flows.novelty.index")) is not None:
        novelty.close_novelty_indexes()


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database no other test sees: a new SQLite file, or a new PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    assert POSTGRES_URL
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1), pool_pre_ping=True
    )
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database no other test sees, on the test's backend."""
    with fresh_database(backend, tmp_path) as url:
        yield url


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
