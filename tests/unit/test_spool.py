"""The spool keeps ends a worker could not write before it exited, privately, and writes
each once as it happened when that worker is gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler_core.errors import StaleStateError
from scheduler_core.spool import Spool
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Claim, Finish, Outcome
from tests.unit.conftest import MakeJob, MakeRun


@pytest.fixture
def claim(make_job: MakeJob, make_run: MakeRun) -> Claim:
    return Claim(job=make_job(job_id=7, attempt=2), run=make_run(run_id=70, job_id=7))


def test_a_kept_end_is_private_and_written_once_its_worker_is_gone(
    tmp_path: Path, claim: Claim
) -> None:
    spool = Spool(tmp_path / "spool")
    outcome = Outcome(status=JobRunStatus.COMPLETED, exit_code=0, artifacts=["/out/a.md"])
    spool.keep("host:12:ab", claim, outcome)
    (kept,) = (tmp_path / "spool").iterdir()
    assert kept.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    written: list[tuple[Claim, Outcome]] = []

    def record(c: Claim, o: Outcome) -> Finish:
        written.append((c, o))
        return Finish(job=c.job, run=c.run, retry=None, group=None)

    assert spool.replay(record, gone=lambda worker_id: False) == 0  # its worker lives
    assert written == [] and kept.exists()
    assert spool.replay(record, gone=lambda worker_id: worker_id == "host:12:ab") == 1
    assert written == [(claim, outcome)]
    assert not kept.exists()


def test_an_end_recorded_meanwhile_is_dropped(tmp_path: Path, claim: Claim) -> None:
    spool = Spool(tmp_path / "spool")
    spool.keep("w", claim, Outcome(status=JobRunStatus.FAILED, error="boom"))

    def record(c: Claim, o: Outcome) -> Finish:
        raise StaleStateError("no longer RUNNING")

    assert spool.replay(record, gone=lambda worker_id: True) == 0
    assert not list((tmp_path / "spool").iterdir())


def test_no_spool_directory_means_nothing_to_write(tmp_path: Path) -> None:
    def record(c: Claim, o: Outcome) -> Finish:
        raise AssertionError("nothing to write")

    assert Spool(tmp_path / "absent").replay(record, gone=lambda worker_id: True) == 0
