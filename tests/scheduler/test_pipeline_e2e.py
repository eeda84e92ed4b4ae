"""The test plan's pipeline scenarios PIPE-01..05, through real worker processes
(`llmsched worker`), a real Prefect API server and LLM HTTP APIs.

Without API keys or OLLAMA_HOST the LLMs are the local fake server, which speaks each
provider's wire protocol; with them set, the tests target the real services.
Run with `--run-pipeline` (the README's `make test` does).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from flows.demo import sample_theme
from flows.ollama_servers import ollama_server, ollama_slot_name
from flows.pipelines import install_pipelines
from scheduler_core import JobRunStatus, JobStatus, SchedulerService
from tests.conftest import wait_for
from tests.llm_server.process import LLMServerProcess

pytestmark = pytest.mark.pipeline

ROOT = Path(__file__).resolve().parents[2]
REAL_OLLAMA = bool(os.environ.get("OLLAMA_HOST"))
REAL_OPENAI = bool(os.environ.get("OPENAI_API_KEY"))
REAL_ANTHROPIC = bool(os.environ.get("ANTHROPIC_API_KEY"))
OLLAMA_MODEL = os.environ.get("PIPE_OLLAMA_MODEL", "ollama/qwen3:30b")
EXTERNAL_MODEL = os.environ.get(
    "PIPE_EXTERNAL_MODEL",
    "anthropic/claude-sonnet-4-5" if REAL_ANTHROPIC and not REAL_OPENAI else "openai/gpt-4o-mini",
)


@pytest.fixture
def llm(llm_server: LLMServerProcess, monkeypatch: pytest.MonkeyPatch) -> LLMServerProcess:
    """Point every provider without real credentials at the fake server (and reset it)."""
    llm_server.reset()
    base = llm_server.base_url
    if not REAL_OLLAMA:
        monkeypatch.setenv("OLLAMA_HOST", base)
    if not REAL_OPENAI:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{base}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    if not REAL_ANTHROPIC:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", base)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-local-test")
    return llm_server


@pytest.fixture
def pipelines(
    prefect_api: str, open_service: Callable[..., SchedulerService], llm: LLMServerProcess
) -> SchedulerService:
    """The submitting side: a service that knows the pipelines (to validate params)."""
    svc = open_service()
    install_pipelines(svc)
    return svc


class Workers:
    """Real `llmsched worker` processes on the test's database."""

    def __init__(self, db_url: str, logs: Path) -> None:
        self.db_url = db_url
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, slots: int = 1, **env: str) -> subprocess.Popen[bytes]:
        """`env`: the worker's own variables (e.g. another OLLAMA_HOST)."""
        log = (self.logs / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmsched",
                "worker",
                "--db",
                self.db_url,
                "--slots",
                str(slots),
                "--drain-timeout",
                "60",
            ],
            cwd=ROOT,
            # Retries after 0.2 s, 0.4 s, 0.8 s: the rule, not the wait, is under test.
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "LLMSCHED_RETRY_BACKOFF_SECONDS": "0.2",
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(db_url, tmp_path)
    yield pool
    pool.stop_all()


def status_of(svc: SchedulerService, job_id: int | None) -> JobStatus:
    return svc.get_job(job_id or 0).status


def prefect(coro_fn: Callable[[Any], Any]) -> Any:
    async def go() -> Any:
        async with get_client() as client:
            return await coro_fn(client)

    return asyncio.run(go())


def flow_run_of(svc: SchedulerService, job_id: int | None) -> Any:
    run = svc.get_job_run_for_job(job_id or 0)
    assert run is not None and run.flow_run_id
    return prefect(lambda c: c.read_flow_run(UUID(run.flow_run_id)))


def test_PIPE_01_story_generation_via_external_api(
    pipelines: SchedulerService, workers: Workers, llm: LLMServerProcess
) -> None:
    svc = pipelines
    if not REAL_OPENAI:
        llm.control(delay_per_token=0.02)  # slow enough to watch it RUNNING
    job = svc.enqueue_job("story", {"theme": "a city of bridges", "model": EXTERNAL_MODEL})
    assert job.status == JobStatus.QUEUED and job.resource == "external"
    workers.start()
    wait_for(lambda: status_of(svc, job.job_id) != JobStatus.QUEUED, timeout=60, what="start")
    assert status_of(svc, job.job_id) in (JobStatus.RUNNING, JobStatus.COMPLETED)
    wait_for(lambda: status_of(svc, job.job_id).is_terminal, timeout=120, what="the story")
    run = svc.get_job_run_for_job(job.job_id or 0)
    assert run is not None and run.status == JobRunStatus.COMPLETED, run and run.error
    (story,) = (Path(p) for p in run.artifacts)
    text = story.read_text()
    assert story.suffix == ".md" and "# " in text and len(text.split()) > 50
    log_text = Path(run.log_path or "").read_text()
    assert "action=start" in log_text and "action=finish status=COMPLETED" in log_text
    assert "call-model" in log_text  # the flow's own task logs are in the run's file
    flow_run = flow_run_of(svc, job.job_id)
    assert flow_run.state.is_completed()
    assert flow_run.name == f"story-job-{job.job_id}-attempt-1"
    assert {f"job:{job.job_id}", "type:story", "attempt:1", "resource:external"} <= set(
        flow_run.tags
    )
    if not REAL_OPENAI:
        assert any(r["protocol"] == "openai" for r in llm.stats()["requests"])


def test_PIPE_02_research_generation_via_local_ollama(
    pipelines: SchedulerService, workers: Workers, llm: LLMServerProcess
) -> None:
    svc = pipelines
    if not REAL_OLLAMA:
        llm.control(delay_per_token=0.02)
    job = svc.enqueue_job(
        "research", {"topic": "tidal energy", "tags": ["energy"], "model": OLLAMA_MODEL}
    )
    assert job.status == JobStatus.QUEUED and job.resource == "ollama"
    workers.start()
    wait_for(lambda: status_of(svc, job.job_id) != JobStatus.QUEUED, timeout=60, what="start")
    # While it runs it holds the one `ollama` slot, recorded for crash recovery.
    if not REAL_OLLAMA:
        llm.wait_for_stats(lambda s: s["current_ollama"] == 1, timeout=60)
        run_id = svc.get_job_run_for_job(job.job_id or 0).run_id  # type: ignore[union-attr]
        assert [name for name, _ in svc.leases_of(run_id or 0)] == [ollama_slot_name()]
    wait_for(lambda: status_of(svc, job.job_id).is_terminal, timeout=180, what="the card")
    run = svc.get_job_run_for_job(job.job_id or 0)
    assert run is not None and run.status == JobRunStatus.COMPLETED, run and run.error
    card = json.loads(Path(run.artifacts[0]).read_text())
    assert card["topic"] and len(card["key_points"]) >= 3
    assert svc.leases_of(run.run_id or 0) == []
    if not REAL_OLLAMA:
        assert llm.stats()["max_concurrent_ollama"] == 1


def test_PIPE_03_mixed_load_keeps_one_ollama_workload(
    pipelines: SchedulerService, workers: Workers, llm: LLMServerProcess
) -> None:
    svc = pipelines
    if not REAL_OLLAMA:
        llm.control(delay_per_token=0.01)
    ollama_jobs = [
        svc.enqueue_job("story", {"theme": sample_theme(i), "length": 100, "model": OLLAMA_MODEL})
        for i in range(3)
    ]
    # Two worker processes with two slots each on one database.
    workers.start(slots=2)
    workers.start(slots=2)
    wait_for(
        lambda: (
            status_of(svc, ollama_jobs[0].job_id) == JobStatus.RUNNING
            or status_of(svc, ollama_jobs[0].job_id).is_terminal
        ),
        timeout=60,
        what="ollama 1",
    )
    api_job = svc.enqueue_job(
        "story", {"theme": "an api tale", "length": 100, "model": EXTERNAL_MODEL}
    )
    jobs = [*ollama_jobs, api_job]
    wait_for(
        lambda: all(status_of(svc, j.job_id).is_terminal for j in jobs),
        timeout=240,
        what="all jobs",
    )
    runs = {j.job_id: svc.get_job_run_for_job(j.job_id or 0) for j in jobs}
    assert all(r is not None and r.status == JobRunStatus.COMPLETED for r in runs.values()), [
        (r.job_id, r.error) for r in runs.values() if r and r.status != JobRunStatus.COMPLETED
    ]
    spans = sorted((runs[j.job_id].started_at, runs[j.job_id].finished_at) for j in ollama_jobs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two ollama jobs ran at the same time"
    gaps = [(start - end).total_seconds() for (_, end), (start, _) in itertools.pairwise(spans)]
    print(f"\nollama hand-off gaps (job end -> next job start): {[f'{g:.3f}s' for g in gaps]}")
    api_run = runs[api_job.job_id]
    # The API job ran beside an Ollama job, not after all of them.
    assert api_run.started_at < spans[-1][1]
    if not REAL_OLLAMA:
        assert llm.stats()["max_concurrent_ollama"] == 1


def test_one_ollama_workload_per_ollama_server_across_workers(
    pipelines: SchedulerService, workers: Workers, llm: LLMServerProcess, db_url: str
) -> None:
    """Two Ollama servers, three workers (two call server A, one server B), 8 Ollama
    jobs: each server serves one job at a time, and both serve at the same time."""
    svc = pipelines
    with LLMServerProcess() as server_b:
        servers = {"a": llm, "b": server_b}
        server_slots = {ollama_slot_name(ollama_server(s.base_url)) for s in servers.values()}
        assert len(server_slots) == 2
        for server in servers.values():
            server.control(hold=True, delay_per_token=0.002)
        jobs = [
            svc.enqueue_job(
                "story", {"theme": sample_theme(i), "length": 60, "model": OLLAMA_MODEL}
            )
            for i in range(8)
        ]
        for host in (llm.base_url, llm.base_url, server_b.base_url):
            workers.start(OLLAMA_HOST=host)
        # Each server holds its first call: both are busy at once, each with one job.
        for server in servers.values():
            server.wait_for_stats(lambda s: s["current_ollama"] == 1, timeout=90)
        status = [
            subprocess.run(
                [sys.executable, "-m", "llmsched", "status", *json_flag, "--db", db_url],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            for json_flag in (["--json"], [])
        ]
        print(status[1])
        slots = {r["resource"]: r for r in json.loads(status[0])["resources"]}
        for server in servers.values():
            slot = slots[ollama_slot_name(ollama_server(server.base_url))]
            assert (slot["running"], slot["limit"]) == (1, 1), slots
        for server in servers.values():
            server.control(hold=False)
        wait_for(
            lambda: all(status_of(svc, j.job_id).is_terminal for j in jobs),
            timeout=240,
            what="all 8 jobs",
        )
        ended = [svc.get_job(j.job_id or 0) for j in jobs]
        assert [j.status for j in ended] == [JobStatus.COMPLETED] * 8, [
            (j.job_id, j.status) for j in ended
        ]
        served = {name: server.stats() for name, server in servers.items()}
    for name, stats in served.items():
        assert stats["max_concurrent_ollama"] == 1, (name, stats["max_concurrent_ollama"])
    assert sum(len(s["requests"]) for s in served.values()) == 8
    assert all(len(s["requests"]) >= 1 for s in served.values())
    assert {j.slot for j in ended} == server_slots


def test_PIPE_04_pipeline_failure_is_retried_then_fails(
    pipelines: SchedulerService, workers: Workers, llm: LLMServerProcess
) -> None:
    svc = pipelines
    job = svc.enqueue_job("story", {"theme": "never written", "model": "ollama/missing-model"})
    assert job.status == JobStatus.QUEUED
    workers.start()

    def chain_done() -> list[Any] | None:
        chain = svc.get_retry_chain(job.job_id or 0)
        return chain if len(chain) == 4 and all(j.status.is_terminal for j in chain) else None

    chain = wait_for(chain_done, timeout=180, what="four failed attempts")
    assert [j.attempt for j in chain] == [1, 2, 3, 4]
    assert all(j.status == JobStatus.FAILED for j in chain)
    logs = []
    for attempt in chain:
        run = svc.get_job_run_for_job(attempt.job_id or 0)
        assert run is not None and run.status == JobRunStatus.FAILED
        assert "missing-model" in (run.error or "")
        logs.append(Path(run.log_path or ""))
    assert len(set(logs)) == 4
    for log in logs:
        assert "action=finish status=FAILED" in log.read_text()
    wait_for(lambda: not svc.list_queued_jobs(), timeout=10, what="no fifth attempt")


def test_PIPE_05_crash_during_real_execution(
    pipelines: SchedulerService, workers: Workers, llm: LLMServerProcess
) -> None:
    svc = pipelines
    llm.control(delay_per_token=0.05)  # a long stream to kill the worker in
    job = svc.enqueue_job("research", {"topic": "deep sea vents", "model": OLLAMA_MODEL})
    first = workers.start()
    llm.wait_for_stats(lambda s: s["current_ollama"] == 1 and s["pieces_sent"] >= 3, timeout=90)
    run = svc.get_job_run_for_job(job.job_id or 0)
    assert run is not None and svc.leases_of(run.run_id or 0)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert status_of(svc, job.job_id) == JobStatus.RUNNING  # what the crash left behind
    llm.control(delay_per_token=0)
    workers.start()  # recovers at start, then runs the retry

    def retried() -> list[Any] | None:
        chain = svc.get_retry_chain(job.job_id or 0)
        return chain if len(chain) == 2 and chain[1].status.is_terminal else None

    original, retry = wait_for(retried, timeout=120, what="the retry to finish")
    crashed = svc.get_job_run_for_job(original.job_id or 0)
    assert crashed is not None and crashed.status == JobRunStatus.FAILED
    assert "recovered after crash" in (crashed.error or "")
    assert retry.status == JobStatus.COMPLETED and retry.retry_of == original.job_id
    # The dead run's Ollama lease was released by recovery, not left to expire.
    assert svc.leases_of(crashed.run_id or 0) == []
    limit = prefect(lambda c: c.read_global_concurrency_limit_by_name(ollama_slot_name()))
    assert limit.active_slots == 0
    old_flow_run = flow_run_of(svc, original.job_id)
    assert not old_flow_run.state.is_running()
    assert old_flow_run.state.is_crashed()
