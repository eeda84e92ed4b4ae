"""The Prefect server stops for 60 s, then starts again on the same port and database,
while a worker has jobs running and queued: no attempt is burned, the queue resumes by
itself, and Prefect is left with no flow run RUNNING or PENDING."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scheduler_core import Job, JobStatus, SchedulerService
from tests.cli.conftest import ROOT, cli_env
from tests.conftest import TEST_SETTINGS, wait_for
from tests.llm_server.process import LLMServerProcess
from tests.prefect_env import free_port
from tests.prefect_server import PrefectServer
from tests.support import terminate

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.sqlite_only]

OUTAGE_SECONDS = 60


def unfinished_flow_runs(api: str) -> list[dict[str, object]]:
    response = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING", "SCHEDULED"]}}}},
        timeout=10,
    )
    response.raise_for_status()
    runs: list[dict[str, object]] = response.json()
    return runs


@pytest.mark.timeout(600)
def test_a_prefect_outage_burns_no_attempt_and_leaves_no_zombie(
    db_url: str,
    tmp_path: Path,
    llm_server: LLMServerProcess,
) -> None:
    llm_server.reset()
    llm_server.control(hold=True)
    home = tmp_path / "prefect"
    home.mkdir()
    server = PrefectServer(home, free_port())  # a default server: its services on
    server.start()
    svc = SchedulerService.open(db_url, **TEST_SETTINGS)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "llmsched", "worker", "--db", db_url, "--slots", "3"],
        cwd=ROOT,
        env=cli_env(
            PREFECT_API_URL=server.url,
            OPENAI_BASE_URL=f"{llm_server.base_url}/v1",
            OPENAI_API_KEY="sk-local-test",
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        from flows.demo import sample_theme
        from flows.pipelines import install_pipelines

        install_pipelines(svc)

        def story(i: int) -> Job:
            return svc.enqueue_job("story", {"theme": sample_theme(i), "model": "openai/m"})

        jobs = [story(0), story(1)]
        wait_for(
            lambda: len(svc.list_jobs(status="RUNNING")) == 2,
            timeout=120,
            what="two jobs running (held at the model)",
        )
        server.stop()
        jobs += [story(2), story(3)]  # one is claimed while the API is away
        time.sleep(5)
        llm_server.control(hold=False)  # the running flows go on, towards an absent API
        time.sleep(OUTAGE_SECONDS - 5)  # the injected outage itself
        server.start()
        wait_for(
            lambda: all(svc.get_job(j.job_id or 0).status.is_terminal for j in jobs),
            timeout=300,
            interval=0.5,
            what="every job terminal after the outage",
        )
        ended = svc.list_jobs()
        errors = [
            (j.job_id, run.error) for j in ended if (run := svc.get_job_run_for_job(j.job_id or 0))
        ]
        assert [j.job_id for j in ended] == [j.job_id for j in jobs], (
            f"a retry was created: {errors}"
        )
        assert {j.status for j in ended} == {JobStatus.COMPLETED}
        assert {j.attempt for j in ended} == {1}
        wait_for(lambda: not unfinished_flow_runs(server.url), timeout=60, what="no zombie")
        assert worker.poll() is None
    finally:
        llm_server.control(hold=False)
        terminate(worker)
        log.close()
        svc.close()
        server.stop()
        lines = (tmp_path / "worker.log").read_text(errors="replace").splitlines()
        print("\n".join(line for line in lines if "action=" in line)[-8000:])
