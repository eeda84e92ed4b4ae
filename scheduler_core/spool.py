"""Ends that could not be written before the process had to exit.

A worker told to stop while the database is unreachable cannot record how its jobs
ended. Each such end (the claim and its outcome: a result, or "back to the queue") is
kept in a file of its own under `<home>/spool/`, private like every file we create
(files.py). The next recovery pass on this host, in any process, writes each kept end as
it happened, once the worker that kept it is gone: no result is lost, nothing runs
again, and a job handed back counts no attempt. (Another host cannot read the file: its
recovery fails the job as crashed, as for a worker killed outright.)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scheduler_core.errors import StaleStateError
from scheduler_core.files import open_private, private_dir
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Claim, Finish, Job, JobRun, Outcome

log = logging.getLogger("scheduler_core")

Record = Callable[[Claim, Outcome], Finish]


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _file(self, worker_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in worker_id)
        return self.directory / f"{safe}.jsonl"

    def keep(self, worker_id: str, claim: Claim, outcome: Outcome) -> None:
        """Keep an unwritten end on disk (flushed and synced before returning)."""
        private_dir(self.directory)
        line = json.dumps(
            {
                "worker_id": worker_id,
                "job": claim.job.model_dump(mode="json"),
                "run": claim.run.model_dump(mode="json"),
                "outcome": {**asdict(outcome), "status": outcome.status.value},
            }
        )
        with open_private(self._file(worker_id), "ab") as file:
            file.write((line + "\n").encode())
            file.flush()
            os.fsync(file.fileno())
        log.warning(
            "action=spool_end job_id=%s run_id=%s file=%s",
            claim.job.job_id,
            claim.run.run_id,
            self._file(worker_id),
        )

    def replay(self, record: Record, *, gone: Callable[[str], bool]) -> int:
        """Write the kept ends of workers that are gone; the number written."""
        if not self.directory.is_dir():
            return 0
        written = 0
        for path in sorted(self.directory.glob("*.jsonl")):
            entries = [json.loads(line) for line in path.read_text().splitlines() if line]
            if not entries or not gone(str(entries[0]["worker_id"])):
                continue
            for entry in entries:
                claim, outcome = _claim(entry), _outcome(entry["outcome"])
                try:
                    record(claim, outcome)
                except StaleStateError:
                    continue  # it was recorded (or recovered) meanwhile
                written += 1
                log.warning("action=spool_replay job_id=%s", claim.job.job_id)
            path.unlink()
        return written


def _claim(entry: dict[str, Any]) -> Claim:
    return Claim(job=Job.model_validate(entry["job"]), run=JobRun.model_validate(entry["run"]))


def _outcome(data: dict[str, Any]) -> Outcome:
    return Outcome(**{**data, "status": JobRunStatus(data["status"])})
