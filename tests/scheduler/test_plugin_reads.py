"""A plugin's read that rides on the statement recording each run's end
(`Plugin.reads_with_end`): its value reaches the plugin's hook for that end, and no
other hook."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core import ConfigurationError, JobStatus, Plugin, SchedulerService
from scheduler_core.tables import JOBS as J
from scheduler_core.values import Job, JobRun
from tests.conftest import wait_for

QUEUED_LEFT = (
    sa.select(sa.func.count()).where(J.c.status == JobStatus.QUEUED.value).scalar_subquery()
)


class CountsQueued(Plugin):
    """Notes, at every run's end, how many jobs were still queued."""

    def __init__(self) -> None:
        self.seen: list[tuple[int | None, Any]] = []
        self.cancelled_saw: list[Any] = []

    def reads_with_end(self, dialect: str) -> Mapping[str, Any]:
        return {"queued_left": QUEUED_LEFT}

    def on_terminal_run_in_tx(self, conn: Connection, job: Job, run: JobRun) -> None:
        self.seen.append((job.job_id, conn.info.get("queued_left")))

    def on_cancelled_in_tx(self, conn: Connection, job: Job) -> None:
        self.cancelled_saw.append(conn.info.get("queued_left", "absent"))


def counted(
    open_service: Callable[..., SchedulerService], jobs: int
) -> tuple[SchedulerService, CountsQueued, list[Job]]:
    """A service with the plugin added and `jobs` jobs queued."""
    svc = open_service()
    plugin = CountsQueued()
    svc.add_plugin(plugin)
    svc.register("job", lambda params: None)
    return svc, plugin, [svc.enqueue_job("job", {"n": n}) for n in range(jobs)]


def test_a_plugins_read_rides_on_each_runs_end(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc, plugin, jobs = counted(open_service, 3)
    for _ in jobs:
        assert svc.dispatch_one() is not None
    assert plugin.seen == [(job.job_id, left) for job, left in zip(jobs, [2, 1, 0], strict=True)]
    # The value was for that end alone: a later hook in another transaction sees none.
    svc.cancel_job(svc.enqueue_job("job", {"n": 3}).job_id or 0)
    assert plugin.cancelled_saw == ["absent"]


def test_a_plugins_read_reaches_the_worker_loops_ends(
    open_service: Callable[..., SchedulerService],
) -> None:
    """The loop records an end and claims the slot's next job in one transaction."""
    svc, plugin, jobs = counted(open_service, 5)
    svc.start(concurrency=1)
    try:
        wait_for(lambda: len(plugin.seen) == len(jobs), timeout=30, what="every end")
    finally:
        svc.stop(timeout=10)
    assert [left for _, left in plugin.seen] == [4, 3, 2, 1, 0]


@pytest.mark.parametrize("label", ["not an identifier", "webhook_endpoints"])
def test_a_read_label_that_is_no_identifier_or_is_taken_is_refused(
    open_service: Callable[..., SchedulerService], label: str
) -> None:
    """The webhooks plugin, installed by every service, labels its read
    `webhook_endpoints`."""

    class Bad(Plugin):
        def reads_with_end(self, dialect: str) -> Mapping[str, Any]:
            return {label: sa.literal(1)}

    svc = open_service()
    with pytest.raises(ConfigurationError, match="reads_with_end") as info:
        svc.add_plugin(Bad())
    assert repr(label) in str(info.value)
    svc.register("job", lambda params: None)
    svc.enqueue_job("job", {})
    assert svc.dispatch_one() is not None  # nothing of the refused plugin was kept
