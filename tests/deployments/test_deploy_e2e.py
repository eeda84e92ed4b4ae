"""The deployment path end to end, with the commands docs/deployments.md gives: create the
work pool, `prefect deploy` the project file, run the nightly deployment, let a Prefect
process worker execute the submit flow and the scheduler worker execute the group.

Everything is real processes against a real Prefect server; only the models are the
offline ones, so no LLM is needed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.pipelines import PIPELINES
from flows.submit import group_name
from scheduler_core import JobGroupStatus, JobRunStatus, JobStatus, SchedulerService
from scheduler_core.statuses import JobOrigin
from tests.conftest import wait_for
from tests.deployments.support import (
    FLOW_NAME,
    JOB_POOL,
    OFFLINE_MODELS,
    PREFECT_FILE,
    ROOT,
    WORK_POOL,
    all_deployments,
    deployment,
    load_flow,
    offline,
    stored,
)

pytestmark = pytest.mark.slow

DEPLOYMENT = "nightly-stories"


class Processes:
    """Commands and long-running processes of one test, each logging to its own file."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def run(self, name: str, *args: str, timeout: float = 60) -> str:
        """Run a command from the project root, as the docs do; its output, or fail with it."""
        done = subprocess.run(
            args,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        output = done.stdout + done.stderr
        (self.logs / f"{name}.log").write_text(output)
        assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.started.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for _, proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(prefect_api: str, db_url: str, tmp_path: Path) -> Iterator[Processes]:
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        # The workers' database is their environment's, as in a systemd unit: a submit
        # run cannot choose it.
        "LLMSCHED_DATABASE_URL": db_url,
        # The CLI keeps profiles and local storage here, not in the user's ~/.prefect.
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        # What a shell in the project root has: were the deployment to store the deploying
        # directory (`{{ $PWD }}`, Prefect's default pull step), it would hold ROOT.
        "PWD": str(ROOT),
        "PYTHONPATH": str(ROOT),
    }
    procs = Processes(tmp_path, env)
    yield procs
    procs.stop_all()


def prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def api(call: Any) -> Any:
    async def go() -> Any:
        async with get_client() as client:
            return await call(client)

    return asyncio.run(go())


def test_a_deployed_schedule_queues_a_group_that_the_scheduler_worker_runs(
    processes: Processes, db_url: str
) -> None:
    started = time.monotonic()
    # The scheduler worker first: it takes a few seconds to start, in parallel with the rest.
    scheduler = processes.start(
        "scheduler-worker",
        *(sys.executable, "-m", "llmsched", "worker", "--db", db_url),
    )

    processes.run(
        "work-pool",
        *prefect("work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"),
    )
    # The pool only `llmsched worker` serves: the pipeline deployments' target.
    processes.run("setup", sys.executable, "-m", "llmsched", "setup")
    prefect_file = str(PREFECT_FILE.relative_to(ROOT))
    processes.run(
        "deploy", *prefect("--no-prompt", "deploy", "--all", "--prefect-file", prefect_file)
    )

    deployed = api(lambda c: c.read_deployment_by_name(f"{FLOW_NAME}/{DEPLOYMENT}"))
    assert deployed.work_pool_name == WORK_POOL
    # Runs start in the Prefect worker's directory; nothing names the deploying checkout.
    assert deployed.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "."}}
    ]
    assert deployed.job_variables == {"working_dir": "."}
    for spec in all_deployments():
        name = f"{load_flow(spec['entrypoint']).name}/{spec['name']}"
        saved = api(lambda c, name=name: c.read_deployment_by_name(name))
        assert str(ROOT) not in saved.model_dump_json(), saved
    (schedule,) = deployed.schedules
    spec = deployment(DEPLOYMENT)
    assert schedule.active
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (
        spec["schedules"][0]["cron"],
        spec["schedules"][0]["timezone"],
    )
    weekly = api(lambda c: c.read_deployment_by_name(f"{FLOW_NAME}/weekly-research"))
    assert weekly.schedules[0].schedule.timezone == "UTC"

    # The deployment's own jobs, on offline models, into the workers' database.
    jobs = offline(spec["parameters"]["jobs"])
    overrides = {"jobs": jobs}
    output = processes.run(
        "deployment-run",
        *prefect(
            "deployment", "run", f"{FLOW_NAME}/{DEPLOYMENT}", "--params", json.dumps(overrides)
        ),
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output
    flow_run_id = UUID(match.group(1))

    # One poll; with --limit the worker waits for the run it took before it exits.
    worker = processes.start(
        "prefect-worker",
        *prefect("worker", "start", "--pool", WORK_POOL, "--run-once", "--limit", "1"),
    )
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the Prefect worker did not finish:\n{processes.log('prefect-worker')}")
    flow_run = api(lambda c: c.read_flow_run(flow_run_id))
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{processes.log('prefect-worker')}"
    # Renamed when it starts, after the group it queues.
    assert flow_run.name == f"submit {group_name(DEPLOYMENT, flow_run.expected_start_time)}"
    assert {"llmsched", "scheduled", "story"} <= set(flow_run.tags)

    with SchedulerService.open(db_url) as svc:
        members = svc.list_jobs()
        assert len(members) == len(jobs), members
        (group_id,) = {m.group_id for m in members}
        assert group_id is not None
        group = svc.get_job_group(group_id)
        assert group.origin == JobOrigin.SCHEDULE and group.size == len(jobs), group
        assert group.name == group_name(DEPLOYMENT, flow_run.expected_start_time)

        def finished() -> bool:
            if scheduler.poll() is not None:
                raise AssertionError(processes.log("scheduler-worker"))
            return svc.get_job_group(group_id).status.is_terminal

        wait_for(finished, timeout=60, interval=0.2, what="the group to finish")
        group = svc.get_job_group(group_id)
        assert group.status == JobGroupStatus.COMPLETED, processes.log("scheduler-worker")
        members = sorted(svc.list_jobs(group_id=group_id), key=lambda j: j.job_id or 0)
        names = {j["name"]: i for i, j in enumerate(jobs) if "name" in j}
        assert [(m.job_type, m.params) for m in members] == [
            (j["job_type"], stored(j["params"], names)) for j in jobs
        ]
        runs = [svc.get_job_run_for_job(m.job_id or 0) for m in members]
    assert all(m.status == JobStatus.COMPLETED and m.origin == JobOrigin.SCHEDULE for m in members)
    assert all(r is not None and r.status == JobRunStatus.COMPLETED for r in runs)
    spans = [(r.started_at, r.finished_at) for r in runs if r is not None]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and start is not None and start >= end, spans
    for run in runs:
        assert run is not None and all(Path(p).exists() for p in run.artifacts)

    artifact = api(
        lambda c: c.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"job-group-{DEPLOYMENT}"]))
        )
    )
    assert any(
        all(f"| {m.job_id} |" in (a.data or "") for m in members) and a.flow_run_id == flow_run_id
        for a in artifact
    ), artifact

    # A pipeline's own deployment from the file: one run of it is one job, executed as
    # that same flow run by the scheduler worker, with the priority of its tag.
    story = api(lambda c: c.read_deployment_by_name(f"{PIPELINES['story'].name}/{JOB_POOL}"))
    assert (story.work_pool_name, story.entrypoint) == (JOB_POOL, "flows/story.py:story_pipeline")
    params = {"theme": "a deployed story", "length": 60, "model": OFFLINE_MODELS["story"]}
    output = processes.run(
        "story-run",
        *prefect(
            "deployment",
            "run",
            f"{PIPELINES['story'].name}/{JOB_POOL}",
            "--params",
            json.dumps(params),
            "--tag",
            "priority:7",
        ),
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output
    story_run_id = match.group(1)
    with SchedulerService.open(db_url) as svc:

        def story_done() -> bool:
            if scheduler.poll() is not None:
                raise AssertionError(processes.log("scheduler-worker"))
            job = svc.job_by_external_id(story_run_id)
            return job is not None and job.status.is_terminal

        wait_for(story_done, timeout=60, interval=0.2, what="the story run's job to finish")
        job = svc.job_by_external_id(story_run_id)
    assert job is not None and job.status == JobStatus.COMPLETED, processes.log("scheduler-worker")
    assert (job.origin, job.priority, job.params) == (JobOrigin.PREFECT, 7, params)
    story_run = api(lambda c: c.read_flow_run(UUID(story_run_id)))
    assert story_run.state.is_completed() and story_run.deployment_id == story.id
    print(f"\ndeployment path end to end: {time.monotonic() - started:.1f}s")
