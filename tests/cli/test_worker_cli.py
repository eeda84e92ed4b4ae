"""The commands that meet running work: a real `llmsched worker` process, a real Prefect
server and the fake LLM server (holding its replies, so a job stays RUNNING until the
test lets it go): cancel of a running job, group cancel, status, show, and `run`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_core import JobGroupStatus, JobStatus, SchedulerService
from tests.cli.conftest import CLI, ROOT, cli_env
from tests.conftest import wait_for
from tests.llm_server.process import LLMServerProcess
from tests.support import terminate

# A real worker and Prefect: the backend rules it relies on are covered by the core suite.
pytestmark = pytest.mark.sqlite_only

MODEL = "openai/gpt-4o-mini"


@pytest.fixture
def worker(
    prefect_api: str, llm: LLMServerProcess, db_url: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "llmsched", "worker", "--db", db_url),
            *("--log-file", str(tmp_path / "actions.log")),
        ],
        cwd=ROOT,
        env=cli_env(LLMSCHED_HEARTBEAT_INTERVAL="0.5"),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    yield proc
    llm.control(hold=False)
    terminate(proc)


def test_running_work_through_the_cli(
    cli: CLI,
    setup_svc: SchedulerService,
    worker: subprocess.Popen[bytes],
    llm: LLMServerProcess,
    tmp_path: Path,
) -> None:
    llm.control(hold=True)  # every model call waits until released
    out = str(tmp_path / "out")
    # Refused before Prefect is contacted (the URL leads nowhere): started now, as they
    # need no worker, and collected later.
    refused_early = cli.start(
        [["run", "poem", "theme=x"], ["run", "story", "theme=x", "length=abc"]],
        env={"PREFECT_API_URL": "http://127.0.0.1:9/api"},
    )
    group, (first, second) = setup_svc.create_job_group(
        [
            {"job_type": "story", "params": {"theme": "held", "model": MODEL, "output_dir": out}},
            {"job_type": "story", "params": {"theme": "never", "output_dir": out}},
        ],
        name="held",
    )

    def started() -> bool:
        if worker.poll() is not None:
            raise AssertionError((tmp_path / "worker.log").read_text())
        run = setup_svc.get_job_run_for_job(first.job_id or 0)
        return run is not None and run.flow_run_id is not None

    wait_for(started, timeout=60, what="the first member to run as a flow run")
    llm.wait_for_stats(lambda s: len(s["requests"]) >= 1, timeout=30)

    status, shown, no_slot = cli.many(
        [
            ["status", "--json"],
            ["show", str(first.job_id), "--json"],
            ["run", "story", "theme=late", f"output_dir={out}", "--timeout", "0.5"],
        ]
    )
    report = status.json()
    (running,) = report["running"]
    assert running["job_id"] == first.job_id and running["flow_run_id"]
    assert report["queued"] == 1  # the held second member
    assert any(w["alive"] and w["pid"] == worker.pid for w in report["workers"])
    assert {"resource": "local", "limit": None, "running": 1} in report["resources"]
    run = shown.json()["run"]
    assert run["status"] == "RUNNING" and run["flow_run_id"] == running["flow_run_id"]
    assert no_slot.code == 4 and "no free slot for direct 'story' job" in no_slot.error

    cancelled = cli("group", "cancel", str(group.group_id))
    assert cancelled.code == 0, cancelled
    assert cancelled.stdout == (
        f"group {group.group_id}: 1 member(s) cancelled; job {first.job_id} is running and "
        "is being stopped, then the group is CANCELLED\n"
    )
    assert setup_svc.get_job(second.job_id or 0).status == JobStatus.CANCELLED
    # The running member is stopped (the held model call abandoned), not waited for.
    wait_for(
        lambda: setup_svc.get_job_group(group.group_id or 0).status.is_terminal,
        timeout=30,
        what="the group to end",
    )
    assert setup_svc.get_job(first.job_id or 0).status == JobStatus.CANCELLED

    # Direct executions wait for the next free slot: started now, they run once the held
    # job ends. Exit 0 when the run completes, 1 when it fails.
    direct = cli.start(
        [
            ["run", "story", "theme=a quiet harbour", "length=120", f"output_dir={out}", "--json"],
            # Valid input the model refuses: the run fails (input errors never reach a run).
            ["run", "story", "theme=locked out", "model=openai/echokey-401-m", f"output_dir={out}"],
        ]
    )
    llm.control(hold=False)
    assert setup_svc.get_job_group(group.group_id or 0).status == JobGroupStatus.CANCELLED
    assert setup_svc.get_job_run_for_job(first.job_id or 0).status.value == "CANCELLED"  # type: ignore[union-attr]

    ok, failed = direct.results()
    done = ok.json()
    assert done["status"] == "COMPLETED" and done["flow_run_id"] and done["log_path"]
    assert "A quiet harbour" in Path(done["artifacts"][0]).read_text()
    job = setup_svc.get_job(done["job_id"])
    assert job.origin.value == "direct" and job.status == JobStatus.COMPLETED
    assert ok.stderr == ""
    assert failed.code == 1, failed
    assert "FAILED" in failed.stdout.splitlines()[0] and "rejected the API key" in failed.stdout
    assert failed.stderr == ""

    unknown, malformed = refused_early.results()
    assert unknown.code == 2 and "unknown job type 'poem'" in unknown.error
    assert malformed.code == 2 and "length: Input should be a valid integer" in malformed.error

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    # Its action lines, on stderr and in the file it was given (private to its user).
    actions = tmp_path / "actions.log"
    assert actions.stat().st_mode & 0o777 == 0o600
    for log in (actions.read_text(), (tmp_path / "worker.log").read_text()):
        assert "action=worker_ready" in log and "action=worker_exit drained=True" in log
        assert f"action=start job_id={first.job_id} " in log
        assert f"action=finish job_id={first.job_id} run_id=" in log
        assert "status=CANCELLED" in log
