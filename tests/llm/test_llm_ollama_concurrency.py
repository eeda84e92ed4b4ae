"""The fake server records how many Ollama chats overlap, which is how the scheduler's
one-Ollama-job-at-a-time rule gets checked."""

from __future__ import annotations

import asyncio

from flows.llm import Completion, acomplete, complete
from tests.llm_server.process import LLMServerProcess

PROMPT = [{"role": "user", "content": "Name three seabirds"}]


def test_overlapping_ollama_chats_are_all_counted(fake_llm: LLMServerProcess) -> None:
    """Held requests make the overlap certain rather than a matter of timing."""
    fake_llm.control(hold=True)

    async def three_at_once() -> list[Completion]:
        chats = [asyncio.create_task(acomplete("ollama/qwen3:30b", PROMPT)) for _ in range(3)]
        await asyncio.to_thread(fake_llm.wait_for_stats, lambda s: s["current_ollama"] == 3)
        await asyncio.to_thread(fake_llm.control, hold=False)
        return await asyncio.gather(*chats)

    replies = asyncio.run(three_at_once())

    assert len({reply.text for reply in replies}) == 1
    stats = fake_llm.wait_for_stats(lambda s: s["current_ollama"] == 0)
    assert stats["max_concurrent_ollama"] == 3


def test_one_after_another_never_overlaps(fake_llm: LLMServerProcess) -> None:
    for _ in range(3):
        complete("ollama/qwen3:30b", PROMPT)

    stats = fake_llm.wait_for_stats(lambda s: s["current_ollama"] == 0)
    assert stats["max_concurrent_ollama"] == 1
    assert [r["protocol"] for r in stats["requests"]] == ["ollama"] * 3


def test_other_protocols_are_not_counted_as_ollama(fake_llm: LLMServerProcess) -> None:
    complete("openai/gpt-4o-mini", PROMPT)
    complete("anthropic/claude-sonnet-4-5", PROMPT)

    assert fake_llm.stats()["max_concurrent_ollama"] == 0
