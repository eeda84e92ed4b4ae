"""Local Ollama calls run one at a time under the Prefect `ollama` limit, and never without it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.guard import OllamaLimitMissingError
from flows.llm import UnknownModelError
from flows.ollama_servers import ollama_server, ollama_slot_name
from flows.pipelines import install_pipelines
from flows.research import research_pipeline
from flows.story import story_pipeline
from scheduler_core import InvalidParamsError, JobStatus, SchedulerService
from tests.flows.support import create_ollama_limit, dispatch_until_ended, eventually, stays
from tests.llm_server.process import LLMServerProcess

OLLAMA = "ollama/qwen3:30b"


async def slots_in_use() -> int:
    async with get_client() as client:
        return (await client.read_global_concurrency_limit_by_name(ollama_slot_name())).active_slots


def test_second_ollama_flow_waits_for_the_slot(
    fake_llm: LLMServerProcess, out_dir: Path, task_logs: list[logging.LogRecord]
) -> None:
    """The first call is held at the server; the second has started its model call, yet it
    reaches the server only once the first has finished."""
    fake_llm.control(hold=True)

    def calls_started() -> int:
        return sum(r.getMessage().startswith(f"calling {OLLAMA}") for r in task_logs)

    async def one_held_one_waiting() -> bool:
        stats = await asyncio.to_thread(fake_llm.stats)
        return calls_started() == 2 and stats["current_ollama"] == 1

    async def scenario() -> tuple[list[str], list[str]]:
        runs = asyncio.gather(
            story_pipeline(theme="two keepers", model=OLLAMA, output_dir=str(out_dir)),
            research_pipeline(topic="lamp oil", model=OLLAMA, output_dir=str(out_dir)),
        )
        await eventually(one_held_one_waiting, what="one call held and one waiting")
        assert await slots_in_use() == 1
        await stays(one_held_one_waiting, seconds=1.0, what="the second call to keep waiting")
        assert len((await asyncio.to_thread(fake_llm.stats))["requests"]) == 1
        await asyncio.to_thread(fake_llm.control, hold=False)
        return await runs

    story, research = asyncio.run(scenario())

    assert Path(story[0]).exists() and Path(research[0]).exists()
    stats = fake_llm.wait_for_stats(lambda s: s["current_ollama"] == 0)
    assert stats["max_concurrent_ollama"] == 1
    assert [r["protocol"] for r in stats["requests"]] == ["ollama", "ollama"]
    assert asyncio.run(slots_in_use()) == 0


def test_missing_limit_refuses_the_ollama_call(fake_llm: LLMServerProcess, out_dir: Path) -> None:
    async def scenario() -> None:
        async with get_client() as client:
            await client.delete_global_concurrency_limit_by_name(ollama_slot_name())
        try:
            await story_pipeline(theme="an unguarded night", model=OLLAMA, output_dir=str(out_dir))
        finally:
            await create_ollama_limit()

    with pytest.raises(OllamaLimitMissingError, match="prefect gcl create ollama"):
        asyncio.run(scenario())
    assert fake_llm.stats()["requests"] == []


def test_unknown_ollama_model_fails_the_run(fake_llm: LLMServerProcess, out_dir: Path) -> None:
    with pytest.raises(UnknownModelError, match="missing-model"):
        asyncio.run(
            story_pipeline(theme="fog", model="ollama/missing-model", output_dir=str(out_dir))
        )

    assert not out_dir.exists() or not any(out_dir.iterdir())
    assert asyncio.run(slots_in_use()) == 0


def test_a_job_naming_an_allowed_ollama_server_runs_there_in_its_slot(
    fake_llm: LLMServerProcess,
    out_dir: Path,
    open_service: Callable[..., SchedulerService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ollama_host` picks another Ollama server than the worker's: the job is in that
    server's slot, and its call goes there under that server's Prefect limit."""
    svc = open_service()
    install_pipelines(svc)
    with LLMServerProcess() as other:
        params = {"theme": "far lights", "model": OLLAMA, "ollama_host": other.base_url}
        with pytest.raises(InvalidParamsError, match="LLMSCHED_OLLAMA_HOSTS"):
            svc.enqueue_job("story", {**params, "output_dir": str(out_dir)})
        assert svc.list_jobs() == []
        monkeypatch.setenv("LLMSCHED_OLLAMA_HOSTS", f"gpu9:11434, {other.base_url}")
        job = svc.enqueue_job("story", {**params, "output_dir": str(out_dir)})
        slot = ollama_slot_name(ollama_server(other.base_url))
        assert job.resource == slot and svc.resource_limits()[slot] == 1
        ended, run = dispatch_until_ended(svc)
        assert ended.status == JobStatus.COMPLETED, run.error
        assert ended.slot == slot
        assert [r["protocol"] for r in other.stats()["requests"]] == ["ollama"]
    assert fake_llm.stats()["requests"] == []  # the worker's own server was not called

    async def other_limit() -> tuple[int, int]:
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(slot)
        return limit.limit, limit.active_slots

    assert asyncio.run(other_limit()) == (1, 0)  # created for the call, and released
