"""`aembed` against the fake server over real HTTP: both protocols, and every way a hostile
embedding server can answer gives one clear `LLMError`."""

from __future__ import annotations

import asyncio

import pytest

from flows.llm import (
    AuthenticationError,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    UnknownModelError,
    aembed,
    embed,
)
from tests.llm_server.embeddings import DIMENSION, vector
from tests.llm_server.process import LLMServerProcess

pytestmark = pytest.mark.sqlite_only

TEXTS = ["The keeper lit the lamp.", "Revenue rose in the third quarter."]


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_embeddings_come_back_in_order_with_token_usage(
    fake_llm: LLMServerProcess, provider: str
) -> None:
    result = embed(f"{provider}/embedder", TEXTS)

    assert result.vectors == [vector(t) for t in TEXTS]
    assert result.dimension == DIMENSION
    assert result.model == f"{provider}/embedder" and result.provider == provider
    assert result.input_tokens is not None and result.input_tokens > 0
    (request,) = fake_llm.stats()["requests"]
    assert request == {"protocol": provider, "endpoint": "embed", "model": "embedder", "inputs": 2}


@pytest.mark.parametrize(
    ("model", "error", "says"),
    [
        ("flood", LLMResponseError, "more than 65536 bytes of embeddings"),
        ("ragged", LLMResponseError, "vectors of different dimensions"),
        ("notjson", LLMResponseError, "not JSON"),
        ("hugeerror", LLMResponseError, "only the first 4096 bytes"),
        ("missing-embedder", UnknownModelError, "has no model 'missing-embedder'"),
    ],
)
@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_a_hostile_embedding_server_gives_one_clear_error(
    fake_llm: LLMServerProcess, provider: str, model: str, error: type[LLMError], says: str
) -> None:
    with pytest.raises(error) as caught:
        embed(f"{provider}/{model}", TEXTS, max_response_bytes=65536)

    assert says in str(caught.value)
    assert len(str(caught.value)) < 2500


def test_a_server_fault_is_retryable_and_a_bad_key_is_not(
    fake_llm: LLMServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_llm.control(fail_next=1, fail_status=503)
    with pytest.raises(LLMResponseError) as fault:
        embed("openai/embedder", TEXTS)
    monkeypatch.setenv("OPENAI_API_KEY", "bad-key-123")
    with pytest.raises(AuthenticationError) as refused:
        embed("openai/embedder", TEXTS)

    assert fault.value.retryable and fault.value.status_code == 503
    assert not refused.value.retryable
    assert "bad-key-123" not in str(refused.value)


def test_an_unreachable_server_is_a_connection_error(free_tcp_port: int) -> None:
    with pytest.raises(LLMConnectionError, match="cannot connect to ollama"):
        embed("ollama/embedder", TEXTS, base_url=f"http://127.0.0.1:{free_tcp_port}")


def test_a_server_that_holds_the_reply_fails_at_the_call_deadline(
    fake_llm: LLMServerProcess,
) -> None:
    fake_llm.control(hold=True)
    with pytest.raises(LLMError, match=r"call deadline of 0\.5s"):
        embed("ollama/embedder", TEXTS, call_timeout=0.5)


@pytest.mark.parametrize(
    ("model", "texts", "error", "says"),
    [
        ("anthropic/claude-sonnet-4-5", TEXTS, UnknownModelError, "offers no embeddings"),
        ("offline/demo", TEXTS, UnknownModelError, "offers no embeddings"),
        ("embedder", TEXTS, UnknownModelError, "provider/model"),
        ("ollama/embedder", [], ValueError, "1 to 256"),
    ],
)
def test_a_request_that_cannot_embed_is_refused_before_any_call(
    fake_llm: LLMServerProcess, model: str, texts: list[str], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        asyncio.run(aembed(model, texts))

    assert fake_llm.stats()["requests"] == []
