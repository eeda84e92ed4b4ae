"""`temperature` travels in each protocol's own field, as the request leaves for the fake
server; unset, nothing is sent and the server's default holds."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from flows.llm import complete, resolve_model
from flows.llm.models import CompletionRequest
from tests.llm_server.process import LLMServerProcess

PROMPT = [
    {"role": "system", "content": "You write short, vivid prose."},
    {"role": "user", "content": "Describe a harbour at dawn"},
]


def temperature_of(protocol: str, body: dict[str, Any]) -> Any:
    """Where each API reads it: Ollama among its `options`, the others at the top level."""
    if protocol == "ollama":
        return (body.get("options") or {}).get("temperature", "absent")
    return body.get("temperature", "absent")


@pytest.fixture
def sent(fake_llm: LLMServerProcess, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The JSON body of every request the providers send to the fake server, read off the
    wire (the process's other HTTP traffic, Prefect's own, is let through unread)."""
    bodies: list[dict[str, Any]] = []
    send = httpx.AsyncClient.send
    server = httpx.URL(fake_llm.base_url)

    async def spy(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        if (request.url.host, request.url.port) == (server.host, server.port):
            bodies.append(json.loads(request.content))
        return await send(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", spy)
    return bodies


@pytest.mark.parametrize(
    ("model", "protocol"),
    [
        ("ollama/qwen3:30b", "ollama"),
        ("openai/gpt-4o-mini", "openai"),
        ("anthropic/claude-sonnet-4-5", "anthropic"),
    ],
)
def test_the_temperature_is_sent_in_each_protocols_field(
    fake_llm: LLMServerProcess, sent: list[dict[str, Any]], model: str, protocol: str
) -> None:
    completion = complete(model, PROMPT, temperature=0.3, max_tokens=500)
    complete(model, PROMPT)

    assert completion.text and completion.finish_reason in ("stop", "end_turn")
    assert [temperature_of(protocol, body) for body in sent] == [0.3, "absent"]
    assert [r["protocol"] for r in fake_llm.stats()["requests"]] == [protocol] * 2
    if protocol == "ollama":
        assert sent[0]["options"] == {"num_predict": 500, "temperature": 0.3}


def test_a_temperature_the_api_refuses_fails_before_any_request(
    fake_llm: LLMServerProcess,
) -> None:
    with pytest.raises(ValueError, match=r"temperature 1.5 is above 1, the most anthropic"):
        complete("anthropic/claude-sonnet-4-5", PROMPT, temperature=1.5)
    with pytest.raises(ValueError, match=r"temperature must be between 0 and 2, got -0.1"):
        complete("openai/gpt-4o-mini", PROMPT, temperature=-0.1)

    assert complete("openai/gpt-4o-mini", PROMPT, temperature=1.5).text
    assert [r["protocol"] for r in fake_llm.stats()["requests"]] == ["openai"]


def test_the_offline_provider_ignores_the_temperature() -> None:
    cold = complete("offline/demo", PROMPT, temperature=0.0)

    assert cold.text == complete("offline/demo", PROMPT, temperature=2.0).text
    assert (
        CompletionRequest(spec=resolve_model("offline/demo"), messages=PROMPT).temperature is None
    )
