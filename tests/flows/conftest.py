"""One temporary Prefect server (with the `ollama` limit) and one fake LLM server per session;
each test gets the fake server reset, the providers pointed at it and its own output folder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from tests.flows.support import create_ollama_limit
from tests.llm_server.process import LLMServerProcess

SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # On the test server's SQLite, these services' background writes collide with the lease
    # each tagged task takes for tag concurrency: "database is locked", a 503 and a 2 s client
    # backoff, several per run (PrefectHQ/prefect#18934). The tests read only artifacts
    # and concurrency limits, which the API writes directly, so they need neither service.
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
}


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """Starting the server takes seconds, so the whole session shares one."""
    with ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:  # read by the server process as it starts
            for name, value in SERVER_ENV.items():
                env.setenv(name, value)
            stack.enter_context(prefect_test_harness())
        asyncio.run(create_ollama_limit())
        yield


@pytest.fixture(autouse=True)
def _prefect(prefect_server: None) -> None:
    """Every flow test runs against the session's Prefect server."""


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LLMServerProcess]:
    with LLMServerProcess() as server:
        yield server


@pytest.fixture
def fake_llm(llm_server: LLMServerProcess, monkeypatch: pytest.MonkeyPatch) -> LLMServerProcess:
    llm_server.reset()
    base_url = llm_server.base_url
    monkeypatch.setenv("OLLAMA_HOST", base_url.removeprefix("http://"))
    monkeypatch.setenv("OPENAI_BASE_URL", f"{base_url}/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    return llm_server


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """Not created: the pipelines must create a missing output folder themselves."""
    return tmp_path / "out"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def task_logs() -> Iterator[list[logging.LogRecord]]:
    """What the tasks log, as it is logged: shows where a run has got to."""
    handler, logger = _Records(), logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
