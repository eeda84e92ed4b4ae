"""The session's Prefect server (with the `ollama` limit); each test gets the fake LLM server
reset, the providers pointed at it and its own output folder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.guard import ensure_ollama_limit
from flows.ollama_servers import ollama_server, ollama_slot_name
from tests.flows.support import Records
from tests.llm_server.process import LLMServerProcess


@pytest.fixture(scope="session")
def prefect_server(prefect_api: str, llm_server: LLMServerProcess) -> None:
    """The session's Prefect server, with the limit of the fake LLM server's Ollama slot
    that the pipelines require."""
    asyncio.run(ensure_ollama_limit(ollama_slot_name(ollama_server(llm_server.base_url))))


@pytest.fixture(autouse=True)
def _prefect(prefect_server: None) -> None:
    """Every flow test runs against the session's Prefect server."""


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """Not created: the pipelines must create a missing output folder themselves."""
    return tmp_path / "out"


@pytest.fixture
def task_logs() -> Iterator[list[logging.LogRecord]]:
    """What the tasks log, as it is logged: shows where a run has got to."""
    handler, logger = Records(), logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
