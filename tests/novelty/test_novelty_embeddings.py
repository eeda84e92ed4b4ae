"""The embedding check through the fake server's real endpoints: repeats caught on both
protocols, one model call per text, the fallback when the embedding server fails, and an
Ollama embedding holding the server's one slot."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from flows.novelty import (
    MINHASH,
    NoveltyIndex,
    acheck_novelty,
    check_novelty,
    embedding_method,
    remember,
)
from tests.llm_server.embeddings import WRONG_DIMENSION
from tests.llm_server.process import LLMServerProcess
from tests.novelty.conftest import NEAR_STORY, OTHER_STORY, STORY

OPENAI_MODEL = "openai/text-embedding-3-small"
OLLAMA_MODEL = "ollama/nomic-embed-text"


def embed_requests(server: LLMServerProcess) -> list[dict[str, object]]:
    return [r for r in server.stats()["requests"] if r.get("endpoint") == "embed"]


def test_openai_embeddings_catch_identical_and_near_identical_texts(
    fake_llm: LLMServerProcess, index: NoveltyIndex
) -> None:
    stored = remember(7, "story", STORY, model=OPENAI_MODEL, index=index)
    remember(8, "story", OTHER_STORY, model=OPENAI_MODEL, index=index)

    same = check_novelty("story", STORY, model=OPENAI_MODEL, index=index)
    near = check_novelty("story", NEAR_STORY, model=OPENAI_MODEL, index=index)
    fresh = check_novelty(
        "story", "A cat naps on a warm windowsill all afternoon.", model=OPENAI_MODEL, index=index
    )

    assert stored == (MINHASH.name, OPENAI_MODEL)
    assert same.method == OPENAI_MODEL and same.fallback_reason is None
    assert same.nearest_item_id == "7" and same.similarity == pytest.approx(1.0, abs=1e-5)
    assert same.duplicate and same.threshold == 0.92
    assert near.nearest_item_id == "7" and near.duplicate and near.similarity < same.similarity
    assert not fresh.duplicate and fresh.similarity < 0.5
    # Each distinct text was embedded once: the check of STORY reused the vector just stored.
    assert [r["protocol"] for r in embed_requests(fake_llm)] == ["openai"] * 4


def test_remembering_a_text_just_checked_makes_no_second_model_call(
    fake_llm: LLMServerProcess, index: NoveltyIndex
) -> None:
    verdict = check_novelty("research", OTHER_STORY, model=OPENAI_MODEL, index=index)
    remember(3, "research", OTHER_STORY, model=OPENAI_MODEL, index=index)

    assert verdict.nearest_item_id is None and not verdict.duplicate
    assert len(embed_requests(fake_llm)) == 1
    assert index.count(kind="research", method=embedding_method(OPENAI_MODEL)) == 1


def test_the_embedding_model_comes_from_the_setting(
    fake_llm: LLMServerProcess, index: NoveltyIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSCHED_EMBED_MODEL", OPENAI_MODEL)
    remember(1, "story", STORY, index=index)

    verdict = check_novelty("story", STORY, index=index)
    offline = check_novelty("story", STORY, model="offline", index=index)

    assert verdict.method == OPENAI_MODEL and verdict.duplicate
    assert offline.method == MINHASH.name and offline.duplicate


def test_a_failing_embedding_server_falls_back_to_minhash_and_says_why(
    fake_llm: LLMServerProcess, index: NoveltyIndex, caplog: pytest.LogCaptureFixture
) -> None:
    remember(1, "story", STORY, model="offline", index=index)
    fake_llm.control(fail_next=1, fail_status=500)

    with caplog.at_level(logging.WARNING, logger="flows.novelty"):
        verdict = check_novelty("story", NEAR_STORY, model=OPENAI_MODEL, index=index)

    assert verdict.method == MINHASH.name and verdict.duplicate
    assert verdict.nearest_item_id == "1"
    assert verdict.fallback_reason is not None and "HTTP 500" in verdict.fallback_reason
    assert "action=novelty_fallback" in caplog.text


def test_remember_keeps_the_minhash_when_the_embedding_fails(
    fake_llm: LLMServerProcess, index: NoveltyIndex
) -> None:
    stored = remember(2, "story", STORY, model="openai/missing-embedder", index=index)

    assert stored == (MINHASH.name,)
    assert index.count(kind="story", method=MINHASH) == 1
    assert index.count(kind="story", method=embedding_method("openai/missing-embedder")) == 0


def test_a_model_whose_dimension_changed_falls_back_instead_of_comparing(
    fake_llm: LLMServerProcess, index: NoveltyIndex
) -> None:
    """Rows stored under the model's name with another dimension: as after the model behind
    the name was swapped."""
    method = embedding_method(OPENAI_MODEL)
    old = np.ones(WRONG_DIMENSION, np.float32) / np.sqrt(WRONG_DIMENSION)
    index.add(item_id="old", kind="story", method=method, signature=old)
    remember(1, "story", STORY, model="offline", index=index)

    verdict = check_novelty("story", STORY, model=OPENAI_MODEL, index=index)
    stored = remember(9, "story", NEAR_STORY, model=OPENAI_MODEL, index=index)

    assert verdict.method == MINHASH.name and verdict.duplicate
    assert verdict.fallback_reason is not None and "components" in verdict.fallback_reason
    assert stored == (MINHASH.name,)


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_ollama_embeddings_hold_the_servers_one_slot(
    prefect_api: str, fake_llm: LLMServerProcess, index: NoveltyIndex
) -> None:
    """Two checks at once: the fake server holds requests, so a second one would overlap
    the first if the slot did not keep it out."""
    from flows.guard import ensure_ollama_limit

    remember_first = remember(1, "story", STORY, model="offline", index=index)
    fake_llm.control(hold=True)

    async def two_at_once() -> list[object]:
        await ensure_ollama_limit()
        checks = [
            asyncio.create_task(acheck_novelty("story", text, model=OLLAMA_MODEL, index=index))
            for text in (STORY, NEAR_STORY)
        ]
        await asyncio.to_thread(fake_llm.wait_for_stats, lambda s: s["current_ollama"] == 1)
        await asyncio.to_thread(fake_llm.control, hold=False)
        return list(await asyncio.gather(*checks))

    verdicts = asyncio.run(two_at_once())

    stats = fake_llm.wait_for_stats(lambda s: s["current_ollama"] == 0)
    assert remember_first == (MINHASH.name,)
    assert stats["max_concurrent_ollama"] == 1
    assert [r["protocol"] for r in embed_requests(fake_llm)] == ["ollama", "ollama"]
    assert all(v.method == OLLAMA_MODEL for v in verdicts)  # type: ignore[attr-defined]
