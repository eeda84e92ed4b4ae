"""The peers benchmark's "ours' statements alone" (bench/peers_ours.py `ours_sql`) must
write what the scheduler writes for the same jobs, or its figure measures something
else: its loop is compared here, row by row, with `dispatch_one` on the same database."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.peers_common import Recorder
from bench.peers_ours import ours_sql_postgres, ours_sql_sqlite
from scheduler_core import SchedulerService
from scheduler_core.tables import JOBS, RUNS
from tests.conftest import wait_for
from tests.support import drain

# Columns that differ between any two jobs, however they ran.
VOLATILE_JOB = {"job_id", "position", "created_at", "queued_at", "started_at", "finished_at"}
VOLATILE_RUN = {"run_id", "job_id", "started_at", "finished_at", "worker_id"}


def rows(svc: SchedulerService, job_ids: list[int]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each job's row and its run's, without the columns that always differ; the worker's
    name and the job id in the run's log path made comparable."""

    def read(conn: sa.Connection) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        found = []
        for job_id in job_ids:
            job = dict(conn.execute(sa.select(JOBS).where(JOBS.c.job_id == job_id)).one()._mapping)
            (run,) = conn.execute(sa.select(RUNS).where(RUNS.c.job_id == job_id)).all()
            run = dict(run._mapping)
            assert job["started_at"] is not None and job["finished_at"] is not None
            assert run["started_at"] is not None and run["finished_at"] is not None
            assert job["worker_id"] == run["worker_id"]
            run["log_path"] = (run["log_path"] or "").replace(f"-job-{job_id}-", "-job-ID-")
            job.pop("worker_id")
            found.append(
                (
                    {k: v for k, v in job.items() if k not in VOLATILE_JOB},
                    {k: v for k, v in run.items() if k not in VOLATILE_RUN},
                )
            )
        return found

    return svc.db.read(read)


def test_statements_alone_write_what_the_scheduler_writes(
    svc: SchedulerService, tmp_path: Path
) -> None:
    svc.register("noop", lambda params: None)
    ours = [svc.enqueue_job("noop", {"n": 7}, priority=p).job_id or 0 for p in (0, 5, 9)]
    assert drain(svc) == 3
    alone = [svc.enqueue_job("noop", {"n": 7}, priority=p).job_id or 0 for p in (0, 5, 9)]

    stop = threading.Event()
    make = ours_sql_postgres if svc.store.is_postgres else ours_sql_sqlite
    loop = make(svc, Recorder(str(tmp_path / "ran.txt")), stop)
    thread = threading.Thread(target=loop, args=("alone:0",), daemon=True)
    thread.start()
    try:
        # A run's end is written with the slot's next claim: the loop ends the last one
        # when it finds nothing more to claim.
        wait_for(
            lambda: all(svc.get_job(i).status.value == "COMPLETED" for i in alone),
            what="the statements-alone loop to end its jobs",
        )
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert (tmp_path / "ran.txt").read_text().count("\n") == 3

    assert rows(svc, alone) == rows(svc, ours)
