"""The fake server is only useful if the official clients accept it as the real thing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx_sse
import ollama
import openai
import pytest

from tests.llm_server.process import LLMServerProcess

PROMPT: Any = [{"role": "user", "content": "Describe a lighthouse keeper's night"}]
ANTHROPIC_EVENTS = [
    "message_start",
    "content_block_start",
    "ping",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
]


@pytest.fixture
def anthropic_client(fake_llm: LLMServerProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake_llm.base_url, api_key="sk-ant-test") as client:
        yield client.with_options(max_retries=0)


def test_ollama_chat_streams_the_same_text_it_returns_whole(ollama_client: ollama.Client) -> None:
    whole = ollama_client.chat(model="qwen3:30b", messages=PROMPT, stream=False)
    chunks = list(ollama_client.chat(model="qwen3:30b", messages=PROMPT, stream=True))

    assert whole.done and whole.done_reason == "stop" and whole.eval_count
    assert len(chunks) > 2 and chunks[-1].done and not chunks[0].done
    assert "".join(c.message.content or "" for c in chunks) == whole.message.content


def test_ollama_json_format_and_model_listing(ollama_client: ollama.Client) -> None:
    reply = ollama_client.chat(model="qwen3:30b", messages=PROMPT, format="json")

    assert isinstance(json.loads(reply.message.content or ""), dict)
    assert "qwen3:30b" in [m.model for m in ollama_client.list().models]


def test_ollama_missing_model_is_a_404_response_error(ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as whole:
        ollama_client.chat(model="missing-model", messages=PROMPT)
    with pytest.raises(ollama.ResponseError) as streamed:
        list(ollama_client.chat(model="missing-model", messages=PROMPT, stream=True))

    for caught in (whole, streamed):
        assert caught.value.status_code == 404
        assert caught.value.error == "model 'missing-model' not found"


def test_ollama_server_failure_is_a_500_response_error(
    fake_llm: LLMServerProcess, ollama_client: ollama.Client
) -> None:
    fake_llm.control(fail_next=1)
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.chat(model="qwen3:30b", messages=PROMPT)
    assert caught.value.status_code == 500


def test_openai_streams_chunks_usage_and_done(openai_client: openai.OpenAI) -> None:
    whole = openai_client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    stream = openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert whole.object == "chat.completion" and whole.choices[0].finish_reason == "stop"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage == whole.usage


def test_openai_json_mode_and_model_listing(openai_client: openai.OpenAI) -> None:
    reply = openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Answer in JSON."}, *PROMPT],
        response_format={"type": "json_object"},
    )

    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    assert "gpt-4o-mini" in [m.id for m in openai_client.models.list()]


def test_openai_json_mode_without_the_word_json_is_refused(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'"):
        openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, response_format={"type": "json_object"}
        )


def test_openai_missing_model_is_not_found(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="missing-gpt", messages=PROMPT)
    assert caught.value.code == "model_not_found"


def test_openai_bad_key_is_an_authentication_error(openai_client: openai.OpenAI) -> None:
    client = openai_client.with_options(api_key="bad-key")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
    assert caught.value.code == "invalid_api_key"


def test_openai_server_failure_is_an_internal_server_error(
    fake_llm: LLMServerProcess, openai_client: openai.OpenAI
) -> None:
    fake_llm.control(fail_next=1, fail_status=500)
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)


def test_anthropic_stream_helper_matches_the_whole_message(
    anthropic_client: anthropic.Anthropic,
) -> None:
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": "Be brief.",
        "messages": PROMPT,
    }
    whole = anthropic_client.messages.create(**request)
    with anthropic_client.messages.stream(**request) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert whole.stop_reason == "end_turn"
    assert text == _text(whole) == _text(final)
    assert final.usage.output_tokens == whole.usage.output_tokens > 1


def test_anthropic_stream_has_the_documented_event_order(
    fake_llm: LLMServerProcess, anthropic_client: anthropic.Anthropic
) -> None:
    """The client drops `ping`, so the wire itself is read too."""
    request: Any = {"model": "claude-sonnet-4-5", "max_tokens": 512, "messages": PROMPT}
    typed = [event.type for event in anthropic_client.messages.create(**request, stream=True)]
    headers = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    with (
        httpx.Client() as client,
        httpx_sse.connect_sse(
            client,
            "POST",
            f"{fake_llm.base_url}/v1/messages",
            json={**request, "stream": True},
            headers=headers,
        ) as source,
    ):
        wire = [(sse.event, sse.json()["type"]) for sse in source.iter_sse()]

    assert all(name == kind for name, kind in wire)
    assert _runs([name for name, _ in wire]) == ANTHROPIC_EVENTS
    assert _runs(typed) == [kind for kind in ANTHROPIC_EVENTS if kind != "ping"]
    assert typed.count("content_block_delta") > 2


def test_anthropic_missing_model_is_not_found(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError, match="model: missing-claude"):
        anthropic_client.messages.create(model="missing-claude", max_tokens=64, messages=PROMPT)


def test_anthropic_bad_key_is_an_authentication_error(
    anthropic_client: anthropic.Anthropic,
) -> None:
    client = anthropic_client.with_options(api_key="bad-key")
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=PROMPT)


def test_anthropic_overload_is_an_overloaded_error(
    fake_llm: LLMServerProcess, anthropic_client: anthropic.Anthropic
) -> None:
    fake_llm.control(fail_next=1, fail_status=529)
    with pytest.raises(anthropic.OverloadedError):
        anthropic_client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=PROMPT)


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/v1/chat/completions", "invalid_request_error"), ("/v1/messages", "authentication_error")],
)
def test_a_request_without_a_key_gets_the_real_401_shape(
    fake_llm: LLMServerProcess, path: str, kind: str
) -> None:
    """The official clients refuse to send such a request, so it goes out raw."""
    response = httpx.post(f"{fake_llm.base_url}{path}", json={"model": "m", "messages": PROMPT})

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == kind
    assert "API key" in error["message"] or "x-api-key" in error["message"]


def _text(message: anthropic.types.Message) -> str:
    (block,) = message.content
    assert isinstance(block, anthropic.types.TextBlock)
    return block.text


def _runs(kinds: list[str]) -> list[str]:
    """Collapse repeats, so a stream's shape compares regardless of its length."""
    return [kind for index, kind in enumerate(kinds) if index == 0 or kinds[index - 1] != kind]
