"""Each provider through `complete`, against the fake server speaking its real protocol."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from flows.llm import (
    AuthenticationError,
    LLMConnectionError,
    LLMResponseError,
    LLMTimeoutError,
    UnknownModelError,
    acomplete,
    complete,
)
from flows.llm.providers.ollama_api import ollama_base_url
from tests.llm_server.process import LLMServerProcess

PROMPT = [
    {"role": "system", "content": "You write short, vivid prose."},
    {"role": "user", "content": "Describe a lighthouse keeper's night during a storm"},
]
NETWORK_MODELS = ["ollama/qwen3:30b", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"]
PROVIDER_ENV = {"ollama": "OLLAMA_HOST", "openai": "OPENAI_BASE_URL", "anthropic": None}


@pytest.mark.parametrize("model", NETWORK_MODELS)
def test_streams_tokens_and_returns_the_whole_reply(fake_llm: LLMServerProcess, model: str) -> None:
    tokens: list[str] = []
    completion = complete(model, PROMPT, on_token=tokens.append)

    assert len(tokens) > 2
    assert "".join(tokens) == completion.text
    assert completion.text == complete("offline/any", PROMPT).text, "same prompt, same reply"
    assert completion.model == model and completion.provider == model.split("/")[0]
    assert completion.input_tokens and completion.output_tokens
    assert completion.finish_reason in ("stop", "end_turn")


@pytest.mark.parametrize("model", NETWORK_MODELS)
def test_json_mode_returns_a_json_object(fake_llm: LLMServerProcess, model: str) -> None:
    completion = complete(
        model,
        [{"role": "user", "content": 'Outline a story as {"title": "...", "scenes": ["..."]}'}],
        json_mode=True,
    )

    data = completion.json()
    assert set(data) == {"title", "scenes"} and isinstance(data["scenes"], list)


def test_json_mode_uses_each_protocols_own_switch(fake_llm: LLMServerProcess) -> None:
    for model in NETWORK_MODELS:
        complete(model, PROMPT, json_mode=True)

    recorded = {r["protocol"]: r["json"] for r in fake_llm.stats()["requests"]}
    assert recorded == {"ollama": True, "openai": True, "anthropic": False}


def test_invalid_json_in_json_mode_is_a_response_error(fake_llm: LLMServerProcess) -> None:
    assert complete("ollama/broken-json", PROMPT).text.startswith("{")
    with pytest.raises(LLMResponseError, match="invalid JSON") as caught:
        complete("ollama/broken-json", PROMPT, json_mode=True)
    assert caught.value.retryable


def test_acomplete_serves_async_flows(fake_llm: LLMServerProcess) -> None:
    async def both() -> list[str]:
        replies = await asyncio.gather(
            acomplete("openai/gpt-4o-mini", PROMPT),
            acomplete("anthropic/claude-sonnet-4-5", PROMPT),
        )
        return [r.text for r in replies]

    first, second = asyncio.run(both())
    assert first == second != ""


def test_complete_refuses_to_block_a_running_event_loop() -> None:
    async def inside_loop() -> None:
        complete("offline/demo", PROMPT)

    with pytest.raises(RuntimeError, match="await acomplete"):
        asyncio.run(inside_loop())


@pytest.mark.parametrize("model", ["qwen3:30b", "mystery/model", "ollama/", "/gpt-4o"])
def test_a_malformed_model_string_names_the_expected_form(model: str) -> None:
    with pytest.raises(UnknownModelError, match="'provider/model'"):
        complete(model, PROMPT)


@pytest.mark.parametrize(
    ("model", "fix"),
    [
        ("ollama/missing-model", "ollama pull missing-model"),
        ("openai/missing-gpt", "OPENAI_BASE_URL"),
        ("anthropic/missing-claude", "model name"),
    ],
)
def test_a_model_the_server_lacks_is_unknown(
    fake_llm: LLMServerProcess, model: str, fix: str
) -> None:
    with pytest.raises(UnknownModelError, match=fix) as caught:
        complete(model, PROMPT)
    assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("model", "env_var", "block"),
    [
        ("openai/gpt-4o-mini", "OPENAI_API_KEY", "openai-api-key"),
        ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY", "anthropic-api-key"),
    ],
)
def test_a_rejected_key_says_where_keys_come_from(
    fake_llm: LLMServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    env_var: str,
    block: str,
) -> None:
    monkeypatch.setenv(env_var, "bad-key")
    with pytest.raises(AuthenticationError, match="rejected") as caught:
        complete(model, PROMPT)
    assert env_var in str(caught.value) and block in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)


def test_a_missing_key_is_looked_up_in_a_prefect_secret(
    fake_llm: LLMServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    loaded: list[str] = []

    async def aload(name: str) -> Secret[str]:
        loaded.append(name)
        return Secret(value=SecretStr("sk-from-block"))

    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setattr(Secret, "aload", aload)

    assert complete("openai/gpt-4o-mini", PROMPT).text
    assert loaded == ["openai-api-key"]


def test_no_key_anywhere_is_an_authentication_error(
    fake_llm: LLMServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    async def aload(name: str) -> Secret[str]:
        raise ValueError(f"Unable to find block document named {name}")

    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setattr(Secret, "aload", aload)

    with pytest.raises(AuthenticationError, match=r"ANTHROPIC_API_KEY.*'anthropic-api-key'"):
        complete("anthropic/claude-sonnet-4-5", PROMPT)
    assert fake_llm.stats()["requests"] == [], "no request goes out without a key"


@pytest.mark.parametrize(
    ("model", "env_var", "fix"),
    [
        ("ollama/qwen3:30b", "OLLAMA_HOST", "ollama serve"),
        ("openai/gpt-4o-mini", "OPENAI_BASE_URL", "OPENAI_BASE_URL"),
        ("anthropic/claude-sonnet-4-5", "ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
    ],
)
def test_a_refused_connection_names_the_url_and_the_fix(
    fake_llm: LLMServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    closed_port: int,
    model: str,
    env_var: str,
    fix: str,
) -> None:
    monkeypatch.setenv(env_var, f"http://127.0.0.1:{closed_port}")
    with pytest.raises(LLMConnectionError, match=fix) as caught:
        complete(model, PROMPT)
    assert f"127.0.0.1:{closed_port}" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.retryable


@pytest.mark.parametrize("model", NETWORK_MODELS)
def test_a_silent_server_times_out(fake_llm: LLMServerProcess, model: str) -> None:
    fake_llm.control(delay_per_token=5.0)
    with pytest.raises(LLMTimeoutError, match=r"0\.2s") as caught:
        complete(model, PROMPT, timeout=0.2)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


@pytest.mark.parametrize(("model", "status"), [(m, s) for m in NETWORK_MODELS for s in (500, 400)])
def test_a_server_failure_is_a_response_error(
    fake_llm: LLMServerProcess, model: str, status: int
) -> None:
    fake_llm.control(fail_next=1, fail_status=status)
    with pytest.raises(LLMResponseError, match=f"HTTP {status}") as caught:
        complete(model, PROMPT)
    assert caught.value.status_code == status
    assert caught.value.retryable is (status == 500)
    assert complete(model, PROMPT).text, "the failure was for one request only"


@pytest.mark.parametrize("model", ["ollama/cutoff", "openai/cutoff", "anthropic/cutoff"])
def test_a_stream_cut_short_is_a_response_error(fake_llm: LLMServerProcess, model: str) -> None:
    with pytest.raises(LLMResponseError, match="ended before its final event"):
        complete(model, PROMPT)


@pytest.mark.parametrize("model", ["ollama/midfail", "openai/midfail", "anthropic/midfail"])
def test_an_error_inside_the_stream_is_a_response_error(
    fake_llm: LLMServerProcess, model: str
) -> None:
    tokens: list[str] = []
    with pytest.raises(LLMResponseError, match="failed mid-reply") as caught:
        complete(model, PROMPT, on_token=tokens.append)
    assert tokens, "the text before the failure was already streamed"
    assert caught.value.retryable


def test_an_openai_base_url_without_the_api_version_is_a_response_error(
    fake_llm: LLMServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    with pytest.raises(LLMResponseError, match=r"does not exist.*OPENAI_BASE_URL"):
        complete("openai/gpt-4o-mini", PROMPT)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("127.0.0.1:11500", "http://127.0.0.1:11500"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("gpu-box", "http://gpu-box:11434"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("https://gpu-box:8443/ollama/", "https://gpu-box:8443/ollama"),
        ("[::1]:11500", "http://[::1]:11500"),
    ],
)
def test_ollama_host_is_read_like_the_ollama_client_does(host: str | None, url: str) -> None:
    assert ollama_base_url(host) == url
