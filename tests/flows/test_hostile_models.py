"""Pipelines against hostile model servers, through the scheduler and Prefect: a stream
that never ends hits the job's deadline and frees the one `ollama` slot; a 20 MB error
body and a server echoing the API key give a short run error with no key in it, in the
database, the run log and the run's JSON."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.ollama_servers import ollama_slot_name
from flows.pipelines import install_pipelines
from scheduler_core import JobStatus, SchedulerService
from scheduler_core.representation import run_to_dict
from tests.flows.support import dispatch_until_ended
from tests.llm_server.process import LLMServerProcess


def story(theme: str, model: str, out_dir: Path) -> dict[str, object]:
    return {"theme": theme, "model": model, "length": 100, "output_dir": str(out_dir)}


async def active_ollama_slots() -> int:
    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name(ollama_slot_name())
    return int(limit.active_slots)


def test_an_endless_ollama_stream_hits_the_deadline_and_frees_the_ollama_slot(
    open_service: Callable[..., SchedulerService], fake_llm: LLMServerProcess, out_dir: Path
) -> None:
    fake_llm.control(delay_per_token=0.05)  # slow enough not to reach max_tokens first
    svc = open_service()
    install_pipelines(svc)
    svc.enqueue_job(
        "story", story("a night", "ollama/endless-m", out_dir), timeout_seconds=3, max_retries=0
    )
    job, run = dispatch_until_ended(svc)
    assert job.status == JobStatus.FAILED and "deadline exceeded" in (run.error or "")
    assert svc.leases_of(run.run_id or 0) == []
    assert asyncio.run(active_ollama_slots()) == 0
    assert fake_llm.stats()["current_ollama"] == 0  # the server saw the call dropped
    fake_llm.control(delay_per_token=0)
    svc.enqueue_job("story", story("the morning after", "ollama/m", out_dir))
    after = svc.dispatch_one()
    assert after is not None and after[0].status == JobStatus.COMPLETED


def test_a_huge_error_body_gives_a_short_run_error(
    open_service: Callable[..., SchedulerService], fake_llm: LLMServerProcess, out_dir: Path
) -> None:
    svc = open_service()
    install_pipelines(svc)
    svc.enqueue_job("story", story("x", "openai/hugeerror-m", out_dir), max_retries=0)
    done = svc.dispatch_one()
    assert done is not None
    job, run = done
    assert job.status == JobStatus.FAILED and "HTTP 500" in (run.error or "")
    assert len(run.error or "") <= 4096
    assert len(json.dumps(run_to_dict(job, run))) < 8192  # the webhook payload's size
    assert Path(run.log_path or "").stat().st_size < 64 * 1024


def test_an_api_key_the_server_echoes_is_nowhere(
    open_service: Callable[..., SchedulerService],
    fake_llm: LLMServerProcess,
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "sk-proj-Zx81kQ2mN7pL4vR9tW3yB6cD0fH5jA"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    svc = open_service()
    install_pipelines(svc)
    for model in ("openai/echokey-401-m", "openai/echokey-500-m"):
        svc.enqueue_job("story", story("x", model, out_dir), max_retries=0)
        done = svc.dispatch_one()
        assert done is not None
        job, run = done
        assert job.status == JobStatus.FAILED
        assert key not in (run.error or "")
        assert key not in json.dumps(run_to_dict(job, run))
        assert key not in Path(run.log_path or "").read_text()


@pytest.mark.parametrize("reachable", [True, False], ids=["http-500", "refused"])
def test_a_base_url_password_is_nowhere(
    open_service: Callable[..., SchedulerService],
    fake_llm: LLMServerProcess,
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    reachable: bool,
) -> None:
    """`OPENAI_BASE_URL` with `user:password@`: every error names the server, never the
    password, in the run row, the database file, the run log or the run's JSON."""
    password = "pa55-Word-never-shown"
    host = fake_llm.base_url.removeprefix("http://") if reachable else "127.0.0.1:9"
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://gateway:{password}@{host}/v1")
    svc = open_service()
    install_pipelines(svc)
    svc.enqueue_job("story", story("x", "openai/echokey-500-m", out_dir), max_retries=0)
    job, run = dispatch_until_ended(svc)
    assert job.status == JobStatus.FAILED, run
    if not reachable:  # the error names the server it could not reach, masked
        assert "gateway:***@" in (run.error or "") or "***@" in (run.error or ""), run.error
    # httpx sends the userinfo as Basic credentials, which the server echoes back
    basic = base64.b64encode(f"gateway:{password}".encode()).decode()
    for secret in (password, basic):
        assert secret not in (run.error or "")
        assert secret not in json.dumps(run_to_dict(job, run))
        assert secret not in Path(run.log_path or "").read_text()
    url = svc.db.engine.url
    svc.close()
    if url.get_backend_name() == "sqlite":  # every byte the database keeps, WAL included
        files = Path(url.database or "").parent.glob(Path(url.database or "").name + "*")
        stored = b"".join(f.read_bytes() for f in files)
        assert password.encode() not in stored and basic.encode() not in stored


def test_a_story_cut_at_max_tokens_fails_instead_of_being_saved(
    open_service: Callable[..., SchedulerService], fake_llm: LLMServerProcess, out_dir: Path
) -> None:
    svc = open_service()
    install_pipelines(svc)
    svc.enqueue_job("story", story("a flood", "openai/flood-m", out_dir), max_retries=0)
    done = svc.dispatch_one()
    assert done is not None
    job, run = done
    assert job.status == JobStatus.FAILED and "finish_reason 'length'" in (run.error or "")
    assert not out_dir.exists() or not list(out_dir.iterdir())
