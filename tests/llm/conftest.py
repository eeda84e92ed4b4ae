"""One fake LLM server for the session; each test gets it reset and the env pointed at it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.llm_server.process import LLMServerProcess


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
def closed_port() -> int:
    """A port nothing listens on: bound by us, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
