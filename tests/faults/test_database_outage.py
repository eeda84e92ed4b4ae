"""The database goes away under running workers: a PostgreSQL restart (10 s and 60 s,
longer than `db_retry_seconds`) of a cluster of the test's own, and a SQLite file locked
by another process.

Afterwards every dispatcher works again by itself, every job is terminal, none ran
twice to completion, no attempt was burned by the outage, and nothing is left RUNNING.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_core import Job, JobStatus, SchedulerService
from scheduler_core.values import utcnow
from tests.conftest import POSTGRES_URL, TEST_SETTINGS, wait_for
from tests.faults.support import (
    Workers,
    check_recovered,
    done_count,
    executions,
    queue_mixed_workload,
)
from tests.prefect_env import free_port

pytestmark = [pytest.mark.slow, pytest.mark.faults]

VERSION = sorted(os.listdir("/etc/postgresql"))[-1] if os.path.isdir("/etc/postgresql") else ""
needs_own_cluster = pytest.mark.skipif(
    not POSTGRES_URL or os.geteuid() != 0 or not shutil.which("pg_createcluster"),
    reason="creates, stops and starts a PostgreSQL cluster of its own: needs "
    "SCHEDULER_TEST_POSTGRES_URL, root and Debian's postgresql-common",
)


class Cluster:
    """A PostgreSQL cluster of one test's own (Debian's `pg_createcluster`, trust auth on
    a free port): the test stops and starts it while every other test keeps the shared
    server."""

    def __init__(self) -> None:
        self.name = f"faults_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create(self) -> None:
        subprocess.run(
            [
                *("pg_createcluster", VERSION, self.name, "-p", str(self.port), "--start"),
                *("--", "--auth-host=trust", "--auth-local=trust"),
            ],
            check=True,
            capture_output=True,
        )
        wait_for(self.ready, timeout=60, interval=0.2, what="the test's PostgreSQL cluster")

    def ready(self) -> bool:
        command = ["pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"]
        return subprocess.run(command).returncode == 0

    def stop(self) -> None:
        subprocess.run(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                VERSION,
                self.name,
                "stop",
                "-m",
                "fast",
            ],
            check=True,
        )

    def start(self) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", VERSION, self.name, "start"], check=True
        )
        wait_for(self.ready, timeout=60, interval=0.2, what="PostgreSQL back")

    def drop(self) -> None:
        subprocess.run(
            ["pg_dropcluster", VERSION, self.name, "--stop"], check=False, capture_output=True
        )


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """The test's own cluster, dropped afterwards whatever happened."""
    own = Cluster()
    try:
        own.create()
        yield own
    finally:
        own.drop()


@needs_own_cluster
@pytest.mark.parametrize("outage", [10, 60])
@pytest.mark.timeout(600)
def test_workers_survive_a_postgresql_restart(
    outage: int, tmp_path: Path, cluster: Cluster
) -> None:
    db_url = cluster.url
    log = tmp_path / "executions.log"
    svc = SchedulerService.open(db_url, **TEST_SETTINGS)
    load = queue_mixed_workload(svc, singles=2500)
    workers = Workers(db_url, log, count=3)
    try:
        wait_for(lambda: done_count(svc) > load.size // 5, timeout=120, what="a fifth done")
        cluster.stop()
        time.sleep(outage)  # the injected outage itself
        restarted = utcnow()
        cluster.start()
        counts = check_recovered(svc, load, workers, since=restarted)
        print(f"outage={outage}s {counts}")
    finally:
        workers.close()
        svc.close()


@pytest.mark.timeout(300)
def test_workers_survive_a_sqlite_file_locked_longer_than_db_retry_seconds(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    log = tmp_path / "executions.log"
    svc = SchedulerService.open(db_url, **TEST_SETTINGS)
    load = queue_mixed_workload(svc, singles=600)
    retry_seconds = 3
    workers = Workers(db_url, log, count=2, env={"LLMSCHED_DB_RETRY_SECONDS": str(retry_seconds)})
    try:
        wait_for(lambda: done_count(svc) > load.size // 5, timeout=120, what="a fifth done")
        locker = sqlite3.connect(tmp_path / "jobs.db", timeout=30, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        time.sleep(retry_seconds * 3)  # the injected lock, three times db_retry_seconds
        locker.execute("ROLLBACK")
        locker.close()
        counts = check_recovered(svc, load, workers, since=utcnow())
        print(f"sqlite lock {retry_seconds * 3}s {counts}")
    finally:
        workers.close()
        svc.close()


@needs_own_cluster
@pytest.mark.timeout(300)
def test_a_worker_stopped_during_an_outage_keeps_its_result_for_the_next_worker(
    tmp_path: Path, cluster: Cluster
) -> None:
    pg_db_url = cluster.url
    log = tmp_path / "executions.log"
    svc = SchedulerService.open(pg_db_url, **TEST_SETTINGS)
    svc.register("work", lambda params: None)
    job = svc.enqueue_job("work", {"sleep": 3})
    first = Workers(pg_db_url, log, count=1, slots=1, env={"FAULT_WORKER_DRAIN": "2"})
    second: Workers | None = None
    try:
        wait_for(lambda: "start " in log.read_text(), timeout=60, what="the job started")
        cluster.stop()
        wait_for(lambda: "done " in log.read_text(), timeout=30, what="the job's end")
        (proc,) = first.procs
        proc.send_signal(signal.SIGTERM)  # stopped while its end cannot be written
        proc.wait(timeout=120)
        spooled = list((Path(os.environ["LLMSCHED_HOME"]) / "spool").glob("*.jsonl"))
        assert len(spooled) == 1 and oct(spooled[0].stat().st_mode & 0o777) == "0o600"
        cluster.start()
        second = Workers(pg_db_url, log, count=1, slots=1)  # its recovery writes the end
        wait_for(
            lambda: svc.get_job(job.job_id or 0).status.is_terminal,
            timeout=60,
            what="the kept end written",
        )
        ended = svc.get_job(job.job_id or 0)
        assert (ended.status, ended.attempt) == (JobStatus.COMPLETED, 1)
        assert [j.job_id for j in svc.list_jobs()] == [job.job_id]  # no retry
        _starts, dones, _ = executions(log)
        assert dones[job.job_id or 0] == 1  # it did not run again
        assert not list(spooled[0].parent.glob("*.jsonl"))
    finally:
        first.close()
        if second is not None:
            second.close()
        svc.close()


@needs_own_cluster
@pytest.mark.timeout(300)
def test_an_enqueue_during_a_postgresql_restart_waits_and_is_written_once(
    tmp_path: Path, cluster: Cluster
) -> None:
    """The connection kept for enqueues (database.py `_Standalone`) dies with the server:
    an enqueue meanwhile waits it out and lands once, on a new connection."""
    svc = SchedulerService.open(cluster.url, **{**TEST_SETTINGS, "db_retry_seconds": 120})
    svc.register("work", lambda params: None)
    retried = threading.Event()

    class Retries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "action=db_retry" in record.getMessage():
                retried.set()

    handler = Retries()
    logging.getLogger("scheduler_core.database").addHandler(handler)
    queued: list[Job] = []
    try:
        first = svc.enqueue_job("work", {"n": 1})
        cluster.stop()
        enqueuing = threading.Thread(
            target=lambda: queued.append(svc.enqueue_job("work", {"n": 2})), daemon=True
        )
        enqueuing.start()
        assert retried.wait(timeout=60), "the enqueue did not meet the outage"
        assert enqueuing.is_alive() and not queued  # waiting, not failed
        cluster.start()
        enqueuing.join(timeout=150)
        assert [job.params for job in queued] == [{"n": 2}]
        jobs = svc.list_jobs()
        assert [(j.job_id, j.params) for j in jobs] == [
            (first.job_id, {"n": 1}),
            (queued[0].job_id, {"n": 2}),
        ]
        assert svc.enqueue_job("work", {"n": 3}).job_id == (queued[0].job_id or 0) + 1
    finally:
        logging.getLogger("scheduler_core.database").removeHandler(handler)
        svc.close()
