"""The fake server's embedding endpoints, as the official clients read them."""

from __future__ import annotations

import ollama
import openai
import pytest

from tests.llm_server.embeddings import DIMENSION, vector
from tests.llm_server.process import LLMServerProcess

TEXTS = ["The lighthouse keeper lit the lamp at dusk.", "A recipe for lentil soup."]


def test_ollama_embed_returns_one_vector_per_input_with_token_counts(
    fake_llm: LLMServerProcess, ollama_client: ollama.Client
) -> None:
    reply = ollama_client.embed(model="nomic-embed-text", input=TEXTS)
    single = ollama_client.embed(model="nomic-embed-text", input=TEXTS[0])

    assert reply.model == "nomic-embed-text"
    assert [list(v) for v in reply.embeddings] == [vector(t) for t in TEXTS]
    assert all(len(v) == DIMENSION for v in reply.embeddings)
    assert reply.prompt_eval_count and reply.prompt_eval_count > 0
    assert list(single.embeddings[0]) == list(reply.embeddings[0])
    requests = fake_llm.stats()["requests"]
    assert [(r["protocol"], r["endpoint"], r["inputs"]) for r in requests] == [
        ("ollama", "embed", 2),
        ("ollama", "embed", 1),
    ]


def test_ollama_embed_of_a_missing_model_is_a_404_response_error(
    ollama_client: ollama.Client,
) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.embed(model="missing-embedder", input="text")
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'missing-embedder' not found"


def test_openai_embeddings_decode_from_the_base64_the_client_asks_for(
    openai_client: openai.OpenAI,
) -> None:
    """The client asks for base64 by default and decodes it; floats on request."""
    packed = openai_client.embeddings.create(model="text-embedding-3-small", input=TEXTS)
    plain = openai_client.embeddings.create(
        model="text-embedding-3-small", input=TEXTS, encoding_format="float"
    )

    assert packed.object == "list" and packed.model == "text-embedding-3-small"
    assert [d.index for d in packed.data] == [0, 1]
    for got, text in zip(packed.data, TEXTS, strict=True):
        assert got.embedding == pytest.approx(vector(text), abs=1e-6)
    assert [d.embedding for d in plain.data] == [vector(t) for t in TEXTS]
    assert packed.usage.prompt_tokens == packed.usage.total_tokens > 0


def test_openai_embeddings_refuse_a_bad_key_and_a_missing_model(
    openai_client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.AuthenticationError) as bad_key:
        openai_client.with_options(api_key="bad-key").embeddings.create(
            model="text-embedding-3-small", input="text"
        )
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.embeddings.create(model="missing-embedder", input="text")

    assert bad_key.value.code == "invalid_api_key"
    assert missing.value.code == "model_not_found"


def test_similar_texts_get_closer_vectors_than_unrelated_ones() -> None:
    base = "the keeper climbed the tower and lit the great lamp before the storm"
    near = "the keeper climbed the tower and lit the old lamp before the storm"
    far = "quarterly revenue grew because the company sold more software licences"

    def cosine(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(vector(a), vector(b), strict=True))

    assert cosine(base, base) == pytest.approx(1.0, abs=1e-5)
    assert cosine(base, near) > 0.8 > 0.3 > cosine(base, far)
