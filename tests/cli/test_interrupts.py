"""`llmsched run` stopped by Ctrl-C or SIGTERM while its job runs: it stops the job, says
`interrupted`, exits 130, and the job goes back to the queue (a process stopping is not
the job's failure: no attempt counted), never left RUNNING."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scheduler_core import JobStatus, SchedulerService
from tests.cli.conftest import CLI, ROOT, cli_env
from tests.conftest import TEST_SETTINGS, wait_for
from tests.llm_server.process import LLMServerProcess

pytestmark = pytest.mark.sqlite_only  # a real Prefect server and model server


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_hands_its_job_back_and_exits_130(
    subprocess_cli: CLI, prefect_api: str, llm: LLMServerProcess, sig: signal.Signals
) -> None:
    cli = subprocess_cli  # a real `python -m llmsched` process receives the signal
    llm.control(hold=True)  # the model call never answers until released
    pending = cli.start(
        [["run", "story", "theme=an interrupted night", "--model", "openai/m"]],
        env={"PYTHONFAULTHANDLER": "1"},
    )
    (proc,) = pending.procs
    with SchedulerService.open(cli.db_url, **TEST_SETTINGS) as svc:
        try:
            wait_for(lambda: llm.stats()["requests"], timeout=60, what="the model call")
            (job,) = svc.list_jobs(status="RUNNING")
            signalled = time.monotonic()
            proc.send_signal(sig)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:  # show where it hangs (PYTHONFAULTHANDLER)
                proc.send_signal(signal.SIGABRT)
                out, err = proc.communicate(timeout=30)
                raise AssertionError(f"no exit 60 s after {sig.name}:\n{err[-20000:]}") from None
            print(f"exited {time.monotonic() - signalled:.1f}s after {sig.name}")
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


def test_a_worker_whose_drain_times_out_hands_its_running_job_back(
    db_url: str, prefect_api: str, llm: LLMServerProcess, tmp_path: Path
) -> None:
    llm.control(hold=True)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "llmsched", "worker", "--db", db_url, "--drain-timeout", "1"],
        cwd=ROOT,
        env=cli_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:
        try:
            from flows.pipelines import install_pipelines

            install_pipelines(svc)
            job = svc.enqueue_job("story", {"theme": "a long night", "model": "openai/m"})
            wait_for(lambda: llm.stats()["requests"], timeout=60, what="the model call")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 1  # not drained
        finally:
            llm.control(hold=False)
            if worker.poll() is None:
                worker.kill()
            log.close()
        back = svc.get_job(job.job_id or 0)
        assert (back.status, back.attempt) == (JobStatus.QUEUED, 1)
        assert svc.get_job_run_for_job(job.job_id or 0) is None
        text = (tmp_path / "worker.log").read_text()
        # The job's own thread handed it back once its flow was cancelled.
        actions = [line for line in text.splitlines() if "action=" in line]
        assert f"action=requeue job_id={job.job_id} " in text, actions
        assert "dependency=shutdown" in text, actions
        # Nothing was left for the last resort.
        assert re.search(r"action=hand_back worker_id=\S+ jobs=0", text), actions
        (me,) = [w for w in svc.list_workers() if w.pid == worker.pid]
        assert me.status.value == "STOPPED"
