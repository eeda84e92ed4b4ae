"""status, recover, --help everywhere, --db and its defaults, and the exit-code policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from llmsched.cli import app
from scheduler_core import JobStatus, SchedulerService
from tests.cli.conftest import CLI

COMMANDS = [
    ["submit"],
    ["jobs"],
    ["show"],
    ["cancel"],
    ["priority"],
    ["retry"],
    ["run"],
    ["status"],
    ["recover"],
    ["worker"],
    ["setup"],
    ["demo"],
    ["group"],
    ["group", "submit"],
    ["group", "show"],
    ["group", "cancel"],
    ["webhook"],
    ["webhook", "add"],
    ["webhook", "list"],
    ["webhook", "remove"],
    ["webhook", "enable"],
    ["webhook", "disable"],
    ["webhook", "deliveries"],
    ["webhook", "redeliver"],
]


def test_help_everywhere(subprocess_cli: CLI) -> None:
    runner = CliRunner()
    for command in COMMANDS:
        result = runner.invoke(app, [*command, "--help"], prog_name="llmsched")
        assert result.exit_code == 0, (command, result.output)
        assert f"Usage: llmsched {' '.join(command)}" in result.output
        leaf = command not in (["group"], ["webhook"], ["setup"])
        assert ("--db" in result.output) == leaf, command
    # The entry point itself, as a real process: help, and the bare command's exit code.
    top, bare = subprocess_cli.many([["--help"], []], db=False)
    assert top.code == 0
    for name in ("submit", "jobs", "show", "status", "recover", "group", "webhook", "Exit codes"):
        assert name in top.stdout
    assert bare.code == 2 and "Usage: llmsched" in bare.stdout  # help, as a usage error


@pytest.mark.sqlite_only  # refused before any write: the backend plays no part
def test_setup_needs_a_prefect_server(cli: CLI) -> None:
    missing = cli("setup", db=False, env={"PREFECT_API_URL": ""})
    assert (missing.code, missing.stdout) == (2, "")
    assert missing.stderr.startswith("error: PREFECT_API_URL is not set: point it at")
    down = cli("setup", db=False, env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert (down.code, down.stdout) == (3, "")
    assert down.stderr.splitlines() == [
        "error: Prefect API unavailable: All connection attempts failed"
    ]


def test_worker_refuses_an_unknown_log_level(cli: CLI) -> None:
    refused = cli("worker", "--log-level", "loud")
    assert (refused.code, refused.stdout) == (2, "")
    assert refused.stderr == (
        "error: --log-level must be one of DEBUG, INFO, WARNING, ERROR, got 'loud'\n"
    )


def test_status(cli: CLI, setup_svc: SchedulerService) -> None:
    empty = cli("status", "--json").json()
    assert empty["running"] == [] and empty["queued"] == 0 and empty["workers"] == []
    assert {"resource": "ollama", "limit": 1, "running": 0} in empty["resources"]

    setup_svc.set_resource_limit("external", 2)
    running = setup_svc.enqueue_job("research", {"topic": "r"})
    setup_svc.enqueue_job("story", {"theme": "q1"})
    setup_svc.enqueue_job("story", {"theme": "q2"})
    claim = setup_svc.claim_next()  # RUNNING, owned by this (live) process
    assert claim is not None and claim.job.job_id == running.job_id
    reservation = setup_svc.reserve_next_slot("a test")

    data, text = cli.many([["status", "--json"], ["status"]])
    report = data.json()
    assert set(report) == {"running", "queued", "reservations", "resources", "workers"}
    (run,) = report["running"]
    assert (run["job_id"], run["status"]) == (running.job_id, "RUNNING")
    assert run["resource"] == "external"
    assert report["queued"] == 2
    (res,) = report["reservations"]
    assert (res["reservation_id"], res["reserved_by"]) == (reservation.reservation_id, "a test")
    assert {"resource": "external", "limit": 2, "running": 1} in report["resources"]
    (worker,) = report["workers"]
    assert worker["worker_id"] == setup_svc.worker_id and worker["alive"] is True
    assert worker["heartbeat_age_seconds"] >= 0 and worker["status"] == "RUNNING"

    assert text.code == 0, text
    out = text.stdout
    assert out.startswith("running: 1   queued: 2")
    assert "a test" in out and setup_svc.worker_id in out
    assert "external  1        2" in out
    setup_svc.execute_claim(claim)
    setup_svc.release_reservation(reservation.reservation_id or 0)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_recover_fails_only_dead_workers_jobs(cli: CLI, setup_svc: SchedulerService) -> None:
    quiet = cli("recover", "--json").json()
    assert quiet["running_jobs_recovered"] == 0 and quiet["warnings"] == []

    job = setup_svc.enqueue_job("story", {"theme": "orphan"})
    claim = setup_svc.claim_next()
    assert claim is not None
    alive = cli("recover", "--json").json()  # its worker (this process) lives: untouched
    assert alive["running_jobs_recovered"] == 0
    assert setup_svc.get_job(job.job_id or 0).status == JobStatus.RUNNING

    # The worker "dies": its row now names a pid that has exited.
    pid = dead_pid()
    setup_svc.db.write(
        lambda c: c.execute(
            sa.text("UPDATE worker SET pid = :pid WHERE worker_id = :w"),
            {"pid": pid, "w": setup_svc.worker_id},
        )
    )
    report = cli("recover", "--json").json()
    assert report == {
        "running_jobs_recovered": 1,
        "retries_created": 1,
        "workers_marked_dead": 1,
        "reservations_released": 0,
        "spooled_ends_written": 0,
        "recovered_job_ids": [job.job_id],
        "warnings": [],
    }
    recovered = setup_svc.get_job_run_for_job(job.job_id or 0)
    assert recovered is not None and "recovered after crash" in (recovered.error or "")
    chain = setup_svc.get_retry_chain(job.job_id or 0)
    assert [j.status for j in chain] == [JobStatus.FAILED, JobStatus.QUEUED]
    again = cli("recover")
    assert again.code == 0 and again.stdout.startswith("recovered jobs: 0 (none)\n")


def test_db_option_env_and_default(
    cli: CLI, setup_svc: SchedulerService, isolated_home: Path
) -> None:
    job = setup_svc.enqueue_job("story", {"theme": "here"})
    env = {"LLMSCHED_DATABASE_URL": cli.db_url}
    env_pending = cli.start([["jobs", "--json"]], db=False, env=env)
    (default_home,) = cli.many([["jobs", "--json"]], db=False)
    (from_env,) = env_pending.results()
    assert [j["job_id"] for j in from_env.json()] == [job.job_id]
    assert default_home.json() == []  # a new SQLite file in LLMSCHED_HOME
    assert (isolated_home / "jobs.db").exists()


def test_database_problems_are_one_line(tmp_path: Path) -> None:
    cli = CLI("unused")
    blocker = tmp_path / "file"
    blocker.write_text("")
    down, unsupported, unwritable = cli.many(
        [
            ["jobs", "--db", "postgresql://nobody@127.0.0.1:1/none"],
            ["status", "--db", "mysql://localhost/jobs"],
            ["jobs", "--db", f"sqlite:///{blocker}/jobs.db"],
        ],
        db=False,
    )
    assert down.code == 3 and down.error.startswith("error: database unavailable: ")
    assert unsupported.code == 2 and "unsupported database URL" in unsupported.error
    # A file where the database's directory should be: the setting's fault, named.
    assert unwritable.code == 2 and "LLMSCHED_DATABASE_URL" in unwritable.error, unwritable
