"""Steering the scheduler from Prefect: a real Prefect server (its services on), a real
`llmsched worker` process and the fake LLM server. Every call is the one the Prefect UI
(`force: true`) or `prefect` CLI (no force) makes: queue visibility, submissions from
`prefect deployment run` and REST, a paused work pool, cancel of queued and running
runs, retry, and an Automation on `llmsched.group.partial`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolUpdate
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Cancelling, Scheduled

from flows.group_artifact import artifact_key
from flows.pipelines import install_pipelines
from flows.prefect_jobs import resource_id
from scheduler_core import JobGroupStatus, JobRunStatus, JobStatus, SchedulerService
from scheduler_core.statuses import JobOrigin
from scheduler_core.values import Job
from tests.cli.conftest import CLI, ROOT, cli_env
from tests.conftest import TEST_SETTINGS, wait_for
from tests.llm_server.process import LLMServerProcess
from tests.support import terminate

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]

OFFLINE = "offline/story-writer"
SLOW = "openai/gpt-4o-mini"  # the fake server, streaming slowly


def story(theme: str, out: str, *, model: str = OFFLINE, **more: Any) -> dict[str, Any]:
    return {"theme": theme, "model": model, "output_dir": out, **more}


def flow_run(flow_run_id: str | UUID) -> FlowRun:
    async def read() -> FlowRun:
        async with get_client() as client:
            return await client.read_flow_run(UUID(str(flow_run_id)))

    return asyncio.run(read())


def set_state(flow_run_id: str | None, state: Any, *, force: bool) -> None:
    async def call() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(UUID(str(flow_run_id)), state, force=force)

    asyncio.run(call())


def pool_paused(name: str, paused: bool) -> None:
    async def call() -> None:
        async with get_client() as client:
            await client.update_work_pool(name, WorkPoolUpdate(is_paused=paused))

    asyncio.run(call())


def runs_of_pool(name: str) -> list[FlowRun]:
    async def read() -> list[FlowRun]:
        async with get_client() as client:
            return await client.read_flow_runs(
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[name]))
            )

    return asyncio.run(read())


@pytest.fixture
def pool(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A work pool of this test's own (the server is shared by the session)."""
    name = f"llmsched-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LLMSCHED_WORK_POOL", name)
    return name


@pytest.fixture
def svc(db_url: str, pool: str) -> Iterator[SchedulerService]:
    """A submitting process: the pipelines, and Prefect kept in step."""
    service = SchedulerService.open(db_url, **TEST_SETTINGS)
    install_pipelines(service)
    yield service
    service.close()


class Worker:
    def __init__(self, db_url: str, log: Path) -> None:
        self.db_url, self.log = db_url, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmsched", "worker", "--db", self.db_url, "--slots", "2"],
            cwd=ROOT,
            env=cli_env(LLMSCHED_HEARTBEAT_INTERVAL="0.5", LLMSCHED_RETRY_BACKOFF_SECONDS="0"),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()

    def alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(self.log.read_text())
        return True


@pytest.fixture
def worker(db_url: str, tmp_path: Path, pool: str, llm: LLMServerProcess) -> Iterator[Worker]:
    w = Worker(db_url, tmp_path / "worker.log")
    yield w
    llm.control(hold=False, reset=True)
    if w.proc is not None:
        terminate(w.proc)


def wait_job(svc: SchedulerService, job_id: int, status: JobStatus, timeout: float = 60) -> Job:
    wait_for(
        lambda: svc.get_job(job_id).status == status,
        timeout=timeout,
        what=f"job {job_id} to be {status.value} (is {svc.get_job(job_id).status.value})",
    )
    return svc.get_job(job_id)


def wait_external_id(svc: SchedulerService, job_id: int) -> str:
    wait_for(lambda: svc.get_job(job_id).external_id, timeout=30, what="its flow run")
    return svc.get_job(job_id).external_id or ""


def state_of(flow_run_id: str | None) -> tuple[StateType | None, str | None]:
    state = flow_run(flow_run_id or "").state
    return (state.type, state.name) if state is not None else (None, None)


def test_the_queue_is_in_prefect_and_prefect_clients_submit_into_it(
    svc: SchedulerService, worker: Worker, pool: str, tmp_path: Path, cli: CLI
) -> None:
    out = str(tmp_path / "out")
    low = svc.enqueue_job("story", story("low", out), priority=1)
    high = svc.enqueue_job("story", story("high", out), priority=5)
    # No worker yet: each queued job is a Scheduled ("Queued") run of its deployment.
    for job in (low, high):
        run = flow_run(wait_external_id(svc, job.job_id or 0))
        assert run.state is not None and run.state.type == StateType.SCHEDULED
        assert run.state.name == "Queued"
        assert run.name == f"story-job-{job.job_id}-attempt-1"
        assert {"llmsched", f"job:{job.job_id}", f"priority:{job.priority}"} <= set(run.tags)
        assert run.work_pool_name == pool and run.deployment_id is not None

    pool_paused(pool, True)
    worker.start()
    # Submissions through Prefect, as a user or a tool such as n8n makes them.
    env = cli_env()
    done = subprocess.run(
        [
            sys.executable, "-m", "prefect", "deployment", "run", f"story-pipeline/{pool}",
            "--param", "theme=from the cli", "--param", f"model={OFFLINE}",
            "--param", f"output_dir={out}", "--job-variable", "priority=9",
        ],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    deployment_id = flow_run(svc.get_job(low.job_id or 0).external_id or "").deployment_id
    api = env["PREFECT_API_URL"]
    # As a tool such as n8n posts it: a busy server on SQLite may answer 503 ("database
    # is locked"), which a client retries, as Prefect's own client does.
    body = {
        "parameters": {"theme": "from rest", "model": OFFLINE, "output_dir": out},
        "tags": ["priority:3"],
    }
    url = f"{api}/deployments/{deployment_id}/create_flow_run"
    posted = wait_for(
        lambda: (r := httpx.post(url, json=body, timeout=30)).status_code != 503 and r,
        timeout=60,
        interval=1,
        what="the REST submission to be accepted",
    )
    assert posted.status_code == 201, posted.text
    rest_run_id = posted.json()["id"]

    def submitted() -> list[Job]:
        worker.alive()
        return [j for j in svc.list_jobs() if j.origin == JobOrigin.PREFECT]

    wait_for(lambda: len(submitted()) == 2, timeout=60, what="both Prefect runs to be queued")
    by_theme = {j.params["theme"]: j for j in submitted()}
    cli_job, rest_job = by_theme["from the cli"], by_theme["from rest"]
    assert (cli_job.priority, rest_job.priority) == (9, 3)
    assert rest_job.external_id == rest_run_id
    wait_for(
        lambda: state_of(rest_run_id) == (StateType.SCHEDULED, "Queued"),
        timeout=30,
        what="the REST run to be taken in",
    )
    assert flow_run(rest_run_id).name == f"story-job-{rest_job.job_id}-attempt-1"
    # The pool is paused: taken in, nothing claimed.
    assert all(j.status == JobStatus.QUEUED for j in svc.list_jobs())
    # Cancelled where Prefect is not told (the CLI keeps no Prefect client): the worker
    # ends its flow run as the job ended.
    dropped = svc.enqueue_job("story", story("dropped", out))
    dropped_run = wait_external_id(svc, dropped.job_id or 0)
    cancel = cli("cancel", str(dropped.job_id))  # on the worker's database
    assert cancel.stdout == f"cancelled job {dropped.job_id}\n", cancel.stderr
    wait_for(
        lambda: worker.alive() and state_of(dropped_run) == (StateType.CANCELLED, "Cancelled"),
        timeout=30,
        what="the cancelled job's flow run to end Cancelled",
    )
    # Likewise a queued job's new priority: its run's tags follow.
    moved = cli("priority", str(low.job_id), "2")
    assert moved.code == 0, moved.stderr
    low_run = svc.get_job(low.job_id or 0).external_id
    wait_for(
        lambda: worker.alive() and "priority:2" in flow_run(low_run or "").tags,
        timeout=30,
        what="the run's priority tag to follow",
    )
    assert "priority:1" not in flow_run(low_run or "").tags

    pool_paused(pool, False)
    jobs = [low, high, cli_job, rest_job]
    for job in jobs:
        wait_job(svc, job.job_id or 0, JobStatus.COMPLETED)
    started = sorted(jobs, key=lambda j: svc.get_job(j.job_id or 0).started_at)  # type: ignore[arg-type, return-value]
    assert [svc.get_job(j.job_id or 0).priority for j in started] == [9, 5, 3, 2]
    for job in jobs:
        current = svc.get_job(job.job_id or 0)
        run = svc.get_job_run_for_job(job.job_id or 0)
        assert run is not None and run.flow_run_id == current.external_id
        assert state_of(current.external_id)[0] == StateType.COMPLETED
    assert len(runs_of_pool(pool)) == 5  # one flow run per job, never a second one


@pytest.mark.parametrize("force", [True, False], ids=["ui", "cli"])
def test_cancel_from_prefect_stops_running_work_and_cancels_queued_work(
    svc: SchedulerService,
    worker: Worker,
    llm: LLMServerProcess,
    tmp_path: Path,
    force: bool,
) -> None:
    out = tmp_path / "out"
    llm.control(delay_per_token=0.5)  # a model server that streams slowly
    group, (first, second) = svc.create_job_group(
        [
            {"job_type": "story", "params": story("slow", str(out), model=SLOW)},
            {"job_type": "story", "params": story("never", str(out))},
        ]
    )  # fmt: skip
    later = svc.enqueue_job("story", {"theme": "later", "model": OFFLINE}, not_before=_far_future())
    later_run = wait_external_id(svc, later.job_id or 0)
    worker.start()
    wait_for(
        lambda: worker.alive() and (r := svc.get_job_run_for_job(first.job_id or 0)) is not None
        and r.flow_run_id is not None,
        timeout=60,
        what="the first member to run",
    )  # fmt: skip
    llm.wait_for_stats(lambda s: len(s["requests"]) >= 1, timeout=30)
    first_run = svc.get_job(first.job_id or 0).external_id

    set_state(first_run, Cancelling(), force=force)
    set_state(later_run, Cancelling(), force=force)
    wait_job(svc, first.job_id or 0, JobStatus.CANCELLED, timeout=15)
    wait_job(svc, later.job_id or 0, JobStatus.CANCELLED, timeout=15)
    run = svc.get_job_run_for_job(first.job_id or 0)
    assert run is not None and run.status == JobRunStatus.CANCELLED
    assert svc.get_retry_chain(first.job_id or 0) == [svc.get_job(first.job_id or 0)]
    assert svc.get_job_run_for_job(later.job_id or 0) is None
    wait_for(
        lambda: svc.get_job_group(group.group_id or 0).status == JobGroupStatus.CANCELLED,
        timeout=15,
        what="the group to end CANCELLED",
    )
    assert svc.get_job(second.job_id or 0).status == JobStatus.CANCELLED
    rows = [
        f"| {m.job_id} | 1 | story | CANCELLED | {svc.get_job(m.job_id or 0).external_id} |"
        for m in (first, second)
    ]
    wait_for(
        lambda: all(row in group_artifact(group.group_id or 0) for row in rows),
        timeout=15,
        what="the group's artifact to list both members CANCELLED",
    )
    assert "**CANCELLED**" in group_artifact(group.group_id or 0)
    assert not out.exists() or list(out.iterdir()) == []  # no partial output left
    for flow_run_id in (first_run, later_run, svc.get_job(second.job_id or 0).external_id):
        wait_for(
            lambda f=flow_run_id: state_of(f)[0] == StateType.CANCELLED,
            timeout=15,
            what=f"flow run {flow_run_id} to end Cancelled",
        )
    # The Ollama-free slot is free again: the next job runs at once.
    llm.control(delay_per_token=0)
    after = svc.enqueue_job("story", {"theme": "after", "model": OFFLINE, "output_dir": str(out)})
    wait_job(svc, after.job_id or 0, JobStatus.COMPLETED)


def test_retry_from_prefect_and_an_automation_on_a_partial_group(
    svc: SchedulerService, worker: Worker, pool: str, tmp_path: Path
) -> None:
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(min(int(self.headers.get("content-length", 0)), 65536))
            received.append(json.loads(body or b"{}"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _create_automation(f"http://127.0.0.1:{server.server_port}/hook", pool)
        out = str(tmp_path / "out")
        group, (_, bad) = svc.create_job_group(
            [
                {"job_type": "story", "params": story("fine", out)},
                {
                    "job_type": "story",
                    "params": story("x", out, model="openai/echokey-401-m"),  # a refused key
                    "max_retries": 0,
                },
            ],
            name=f"nightly {pool}",
        )
        worker.start()
        wait_for(
            lambda: worker.alive() and svc.get_job_group(group.group_id or 0).status.is_terminal,
            timeout=90,
            what="the group to end",
        )
        assert svc.get_job_group(group.group_id or 0).status == JobGroupStatus.PARTIAL
        wait_for(lambda: received, timeout=60, what="the Automation's webhook")
        assert received[0]["group"] == resource_id("group", group.group_id)
        assert received[0]["event"] == "llmsched.group.partial"

        failed_run = svc.get_job(bad.job_id or 0).external_id
        assert state_of(failed_run)[0] == StateType.FAILED
        # Automations can tell a failure with no retry left from one that will be retried.
        wait_for(
            lambda: "llmsched.job.exhausted" in job_events(bad.job_id or 0, failed_run),
            timeout=30,
            what="the exhausted event",
        )
        seen = job_events(bad.job_id or 0, failed_run)
        assert {"llmsched.job.queued", "llmsched.job.started", "llmsched.job.failed"} <= set(seen)
        assert "llmsched.job.retrying" not in seen
        # The UI's Retry (force) on the failed run: the manual retry takes that run over.
        set_state(
            failed_run, Scheduled(name="AwaitingRetry", message="Retry from the UI"), force=True
        )

        def retry() -> Job | None:
            worker.alive()
            chain = svc.get_retry_chain(bad.job_id or 0)
            return chain[-1] if len(chain) == 2 and chain[-1].status.is_terminal else None

        wait_for(retry, timeout=60, what="the retry to run")
        again = retry()
        assert again is not None and again.retry_of == bad.job_id
        assert again.external_id == failed_run
        run = svc.get_job_run_for_job(again.job_id or 0)
        assert run is not None and run.flow_run_id == failed_run  # executed as that run
        assert flow_run(failed_run or "").name == f"story-job-{again.job_id}-attempt-2"
    finally:
        server.shutdown()


def group_artifact(group_id: int) -> str:
    """The latest version of the group's artifact ("" while there is none)."""

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=[artifact_key(group_id)])
                )
            )
            return "\n".join(str(artifact.data) for artifact in found)

    return asyncio.run(read())


def job_events(job_id: int, flow_run_id: str | None) -> list[str]:
    """The names of the events Prefect recorded about the job and its flow run, oldest
    first."""
    response = httpx.post(
        f"{cli_env()['PREFECT_API_URL']}/events/filter",
        json={
            "filter": {
                "resource": {"id": [resource_id("job", job_id)]},
                "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                "order": "ASC",
            }
        },
        timeout=30,
    )
    response.raise_for_status()
    return [event["event"] for event in response.json()["events"]]


def _far_future() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=1)


def _create_automation(url: str, pool: str) -> None:
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture

    block_id = Webhook(method="POST", url=url).save(f"hook-{pool}", overwrite=True)
    Automation(
        name=f"partial nightly groups {pool}",
        trigger=EventTrigger(
            expect={"llmsched.group.partial"},
            match={"prefect.resource.id": resource_id("group", "*")},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            CallWebhook(
                block_document_id=block_id,
                payload='{"event": "{{ event.event }}", "group": "{{ event.resource.id }}"}',
            )
        ],
    ).create()
