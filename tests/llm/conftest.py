"""Fixtures of the LLM tests (the official clients pointed at the fake server); the fake
server itself is shared from tests/conftest.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import ollama
import openai
import pytest

from tests.llm_server.process import LLMServerProcess


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound by us, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ollama_client(fake_llm: LLMServerProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=fake_llm.base_url) as client:
        yield client


@pytest.fixture
def openai_client(fake_llm: LLMServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{fake_llm.base_url}/v1", api_key="sk-test") as client:
        yield client.with_options(max_retries=0)
