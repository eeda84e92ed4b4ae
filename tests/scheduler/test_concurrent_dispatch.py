"""Two dispatcher processes on one database never run a job twice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from scheduler_core import JobRunStatus, JobStatus, SchedulerService
from scheduler_core.tables import JobRunRecord
from tests.conftest import wait_for
from tests.scheduler.dispatcher_process import ready_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("slots", [0, 2], ids=["dispatch_one", "worker_loop"])
def test_two_dispatcher_processes_never_run_a_job_twice(
    svc: SchedulerService, db_url: str, tmp_path: Path, slots: int
) -> None:
    n_jobs = 3000 if slots == 0 else 1000
    svc.register("noop", lambda params: None)
    svc.enqueue_jobs([{"job_type": "noop", "params": {"i": i}} for i in range(n_jobs)])
    go = tmp_path / "go"
    outs = [tmp_path / f"ran-{i}.txt" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.scheduler.dispatcher_process",
                db_url,
                str(out),
                str(go),
                "--slots",
                str(slots),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for out in outs
    ]
    # Imports take a second or more on a loaded machine, in which one process alone could
    # drain the queue: the race starts once both wait at the line.
    wait_for(
        lambda: all(ready_file(out).exists() for out in outs) or any(p.poll() for p in procs),
        timeout=120,
        what="both dispatcher processes to be ready",
    )
    go.touch()
    for p in procs:
        assert p.wait(timeout=240) == 0
    ran = [int(x) for out in outs for x in out.read_text().split()]
    per_process = [len(out.read_text().split()) for out in outs]
    assert len(ran) == n_jobs, f"ran {len(ran)} executions for {n_jobs} jobs"
    duplicates = [job for job, n in Counter(ran).items() if n > 1]
    assert duplicates == []
    assert all(n > 0 for n in per_process), f"one process did all the work: {per_process}"
    assert len(svc.list_jobs(JobStatus.COMPLETED)) == n_jobs
    with svc.db.engine.connect() as conn:
        runs = conn.execute(
            sa.select(sa.func.count())
            .select_from(JobRunRecord)
            .where(JobRunRecord.status == JobRunStatus.COMPLETED.value)
        ).scalar_one()
    assert runs == n_jobs
