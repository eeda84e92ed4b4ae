"""The submit-job-group flow queues one group per scheduled slot: run twice for the same
deployment and scheduled time (a UI Retry, a Prefect retry), it queues nothing more."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run

from flows.submit import ScheduledJob, run_name, submit_job_group
from scheduler_core import SchedulerService
from tests.deployments.support import OFFLINE_MODELS

SLOT = "2026-12-01T02:00:00+00:00"


def test_a_scheduled_slot_run_twice_queues_one_group(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("LLMSCHED_DATABASE_URL", db_url)  # the worker's own database
    jobs = [
        ScheduledJob(job_type="story", params={"theme": "t", "model": OFFLINE_MODELS["story"]}),
        ScheduledJob(job_type="research", params={"topic": "r"}),
    ]
    # What Prefect's runtime reports inside a deployment's scheduled run.
    monkeypatch.setattr(runtime_deployment, "id", "nightly-deployment", raising=False)
    slot = datetime.fromisoformat(SLOT)
    monkeypatch.setattr(runtime_flow_run, "scheduled_start_time", slot, raising=False)

    def run() -> int:
        return asyncio.run(submit_job_group(jobs=jobs, name="nightly"))

    first, again = run(), run()
    monkeypatch.setattr(runtime_flow_run, "scheduled_start_time", slot + timedelta(days=1))
    next_night = run()
    assert first == again != next_night
    with SchedulerService.open(db_url) as svc:
        assert len(svc.list_jobs()) == 4  # two nights, two members each
        group = svc.get_job_group(first)
        assert group.key == f"deployment:nightly-deployment@{SLOT}"
        assert group.name == "nightly 2026-12-01T02:00Z"


def test_a_started_run_is_named_after_the_group_it_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's scheduler gives a scheduled run a random name; the flow renames it when
    it starts: `submit ` and the group's name, the `name` parameter and the slot in UTC."""
    monkeypatch.setattr(runtime_flow_run, "parameters", {"name": "nightly"}, raising=False)
    slot = datetime.fromisoformat("2026-12-01T03:00:00+01:00")
    monkeypatch.setattr(runtime_flow_run, "scheduled_start_time", slot, raising=False)
    assert submit_job_group.flow_run_name is run_name
    assert run_name() == "submit nightly 2026-12-01T02:00Z"
