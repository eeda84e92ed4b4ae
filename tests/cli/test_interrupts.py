"""`llmsched run` stopped by Ctrl-C or SIGTERM while its job runs: it stops the job, says
`interrupted`, exits 130, and the job goes back to the queue (a process stopping is not
the job's failure: no attempt counted), never left RUNNING."""

from __future__ import annotations

import signal

import pytest

from scheduler_core import JobStatus, SchedulerService
from tests.cli.conftest import CLI
from tests.conftest import TEST_SETTINGS, wait_for
from tests.llm_server.process import LLMServerProcess

pytestmark = pytest.mark.sqlite_only  # a real Prefect server and model server


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_hands_its_job_back_and_exits_130(
    cli: CLI, prefect_api: str, llm: LLMServerProcess, sig: signal.Signals
) -> None:
    llm.control(hold=True)  # the model call never answers until released
    pending = cli.start([["run", "story", "theme=an interrupted night", "--model", "openai/m"]])
    (proc,) = pending.procs
    with SchedulerService.open(cli.db_url, **TEST_SETTINGS) as svc:
        try:
            wait_for(lambda: llm.stats()["requests"], timeout=60, what="the model call")
            (job,) = svc.list_jobs(status="RUNNING")
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            llm.control(hold=False)
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, (out, err)
        assert err.splitlines() == [
            f"error: interrupted: job {job.job_id} is back in the queue, its attempt not counted"
        ]
        back = svc.get_job(job.job_id or 0)
        assert (back.status, back.attempt, back.worker_id) == (JobStatus.QUEUED, 1, None)
        assert svc.get_job_run_for_job(job.job_id or 0) is None  # no run: it never ended
        assert [j.job_id for j in svc.list_jobs()] == [job.job_id]  # no retry
