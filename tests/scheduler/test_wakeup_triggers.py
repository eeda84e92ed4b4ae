"""PostgreSQL notifies workers of what another worker could claim for, and of nothing
else: each notification wakes every listening worker, so a busy worker's own claims
and the ends of its uncapped jobs must not send one (wakeups.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scheduler_core import SchedulerService
from scheduler_core.rules import faults
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Outcome
from scheduler_core.wakeups import CHANNEL
from tests.conftest import POSTGRES_URL, TEST_SETTINGS, fresh_database

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL triggers")

DONE = Outcome(status=JobRunStatus.COMPLETED, exit_code=0)
FAILED = Outcome(status=JobRunStatus.FAILED, error="boom", exit_code=1)


class Listener:
    """A LISTEN connection that tells whether a change sent this schema a notification."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.schema = self.conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        self.conn.execute(f"LISTEN {CHANNEL}")

    def sent(self, change: Callable[[], Any]) -> bool:
        """Run `change` between two marker notifications: notifications arrive in commit
        order, so what comes between the markers came from `change`."""
        self._until("before")
        change()
        return self.schema in self._until("after")  # other tests' schemas share the channel

    def _until(self, name: str) -> list[str]:
        marker = f"{self.schema}:{name}"
        self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, marker))
        seen = []
        for note in self.conn.notifies(timeout=30):
            if note.payload == marker:
                return seen
            seen.append(note.payload)
        raise AssertionError(f"the {name} marker never arrived")


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[SchedulerService, Listener]]:
    with fresh_database("postgres", tmp_path) as url:
        svc = SchedulerService.open(url, **TEST_SETTINGS)
        listener = Listener(url.replace("postgresql://", "postgresql://", 1))
        try:
            svc.register("free", lambda params: None)
            svc.register("capped", lambda params: None, resource="gpu")
            svc.set_resource_limit("gpu", 1)
            yield svc, listener
        finally:
            listener.conn.close()
            svc.close()


def running(svc: SchedulerService) -> Any:
    """A free job, queued and claimed."""
    svc.enqueue_job("free")
    claim = svc.claim_next()
    assert claim is not None and claim.job.job_type == "free"
    return claim


def test_new_work_notifies_and_an_uncapped_jobs_claim_and_end_do_not(
    pg: tuple[SchedulerService, Listener],
) -> None:
    svc, listener = pg
    assert listener.sent(lambda: svc.enqueue_job("free"))
    claims: list[Any] = []
    assert not listener.sent(lambda: claims.append(svc.claim_next()))
    assert not listener.sent(lambda: svc.record(claims[0], DONE))
    queued = svc.enqueue_job("free", priority=-1)
    assert not listener.sent(lambda: svc.cancel_job(queued.job_id or 0))


def test_a_capped_slot_freed_notifies(pg: tuple[SchedulerService, Listener]) -> None:
    svc, listener = pg
    svc.enqueue_job("capped")
    claims: list[Any] = []
    assert not listener.sent(lambda: claims.append(svc.claim_next()))
    assert claims[0].job.resource == "gpu"
    assert listener.sent(lambda: svc.record(claims[0], DONE))


def test_an_end_while_a_direct_reservation_waits_notifies(
    pg: tuple[SchedulerService, Listener],
) -> None:
    svc, listener = pg
    claim = running(svc)
    reservation = svc.reserve_next_slot("test")
    assert listener.sent(lambda: svc.record(claim, DONE))
    svc.release_reservation(reservation.reservation_id or 0)


def test_a_job_back_in_the_queue_a_retry_and_a_released_member_notify(
    pg: tuple[SchedulerService, Listener],
) -> None:
    svc, listener = pg
    claim = running(svc)
    back = faults.interrupted(faults.SHUTDOWN, "stopped")
    assert listener.sent(lambda: svc.record(claim, back))  # requeued: claimable again
    claim = svc.claim_next()
    assert claim is not None
    assert listener.sent(lambda: svc.record(claim, FAILED))  # its retry is inserted
    svc.cancel_job(svc.list_queued_jobs()[0].job_id or 0)
    svc.create_job_group([{"job_type": "free"}, {"job_type": "free"}])
    first = svc.claim_next()
    assert first is not None and first.job.sequence == 0
    assert listener.sent(lambda: svc.record(first, DONE))  # the second member is released
