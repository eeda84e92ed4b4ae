"""The database goes away under running workers: a PostgreSQL restart (10 s and 60 s,
longer than `db_retry_seconds`) and a SQLite file locked by another process.

Afterwards every dispatcher works again by itself, every job is terminal, none ran
twice to completion, no attempt was burned by the outage, and nothing is left RUNNING.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_core import SchedulerService
from scheduler_core.values import utcnow
from tests.conftest import POSTGRES_URL, TEST_SETTINGS, fresh_database, wait_for
from tests.faults.support import Workers, check_recovered, done_count, queue_mixed_workload

pytestmark = [pytest.mark.slow, pytest.mark.faults]

CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode == 0


@pytest.fixture
def postgres_cluster() -> Iterator[None]:
    """The local cluster, started again after the test whatever happened."""
    try:
        yield
    finally:
        if not pg_ready():
            subprocess.run([*CLUSTER, "start"], check=False)
        wait_for(pg_ready, timeout=60, interval=0.2, what="PostgreSQL to accept connections")


@pytest.mark.skipif(
    not POSTGRES_URL or os.geteuid() != 0,
    reason="stops the local PostgreSQL cluster: needs SCHEDULER_TEST_POSTGRES_URL and root",
)
@pytest.mark.parametrize("outage", [10, 60])
@pytest.mark.timeout(600)
def test_workers_survive_a_postgresql_restart(
    outage: int, tmp_path: Path, postgres_cluster: None, pg_db_url: str
) -> None:
    db_url = pg_db_url
    log = tmp_path / "executions.log"
    svc = SchedulerService.open(db_url, **TEST_SETTINGS)
    load = queue_mixed_workload(svc, singles=1500)
    workers = Workers(db_url, log, count=3)
    try:
        wait_for(lambda: done_count(svc) > load.size // 5, timeout=120, what="a fifth done")
        subprocess.run([*CLUSTER, "stop", "-m", "fast"], check=True)
        time.sleep(outage)  # the injected outage itself
        subprocess.run([*CLUSTER, "start"], check=True)
        restarted = utcnow()
        wait_for(pg_ready, timeout=60, interval=0.2, what="PostgreSQL back")
        counts = check_recovered(svc, load, workers, since=restarted)
        print(f"outage={outage}s {counts}")
    finally:
        workers.close()
        svc.close()


@pytest.fixture
def pg_db_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgres", tmp_path) as url:
        yield url


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
