"""Idempotency keys: a repeated submission returns what the first queued and writes
nothing; the same key for other work is refused; two processes submitting the same
keys at once create one job (one group) per key."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_core import KeyReusedError, SchedulerService
from scheduler_core.plugins import Plugin
from scheduler_core.values import Job
from tests.cli.conftest import ROOT
from tests.scheduler.rules_support import count_rows
from tests.scheduler.test_bad_input import refused


class Enqueued(Plugin):
    def __init__(self) -> None:
        self.jobs: list[int | None] = []

    def after_enqueue(self, jobs: list[Job]) -> None:
        self.jobs += [j.job_id for j in jobs]


def test_a_repeated_submission_returns_the_first_and_writes_nothing(
    jobs: SchedulerService,
) -> None:
    seen = Enqueued()
    jobs.add_plugin(seen)
    first = jobs.enqueue_job("job", {"name": "once"}, priority=3, key="nightly@2026-12-01")
    before = count_rows(jobs)
    again = jobs.enqueue_job("job", {"name": "once"}, priority=3, key="nightly@2026-12-01")
    assert again == first and count_rows(jobs) == before
    assert jobs.job_by_key("nightly@2026-12-01") == first
    assert seen.jobs == [first.job_id]  # queued once: one flow run, one event
    with refused(jobs, KeyReusedError, "'nightly@2026-12-01'", str(first.job_id), "new key"):
        jobs.enqueue_job("job", {"name": "other"}, key="nightly@2026-12-01")
    assert jobs.enqueue_job("job", {"name": "once"}, key="another").key == "another"


def test_a_repeated_group_returns_the_first_group_and_its_members(
    jobs: SchedulerService,
) -> None:
    members = [{"job_type": "job", "params": {"name": f"m{i}"}} for i in range(3)]
    group, created = jobs.create_job_group(members, name="nightly", key="slot-1")
    before = count_rows(jobs)
    assert jobs.create_job_group(members, name="nightly", key="slot-1") == (group, created)
    assert count_rows(jobs) == before and group.key == "slot-1"
    with refused(jobs, KeyReusedError, "'slot-1'", f"job group {group.group_id}"):
        jobs.create_job_group(members[:2], name="nightly", key="slot-1")
    with refused(jobs, KeyReusedError, "'slot-1'"):
        jobs.create_job_group(members, name="another night", key="slot-1")


@pytest.mark.slow
def test_two_processes_submitting_the_same_keys_at_once_create_one_of_each(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    svc = open_service()  # creates the schema before the race
    n, go = 100, tmp_path / "go"
    submitter = [sys.executable, "-m", "tests.scheduler.key_submitter", db_url]
    procs = [
        subprocess.Popen([*submitter, str(tmp_path / f"{i}.json"), str(go), str(n)], cwd=ROOT)
        for i in range(2)
    ]
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    first, second = (json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2))
    assert first == second  # both got the same job and group for every key
    every = svc.list_jobs()
    assert len(every) == 3 * n  # per key: one job, or one group of two
    assert sorted(first[f"job-{i}"] for i in range(n)) == sorted(
        j.job_id for j in every if j.group_id is None
    )
    assert sorted(first[f"group-{i}"] for i in range(n)) == sorted(
        {j.group_id for j in every if j.group_id is not None}
    )
