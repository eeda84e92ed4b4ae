"""PostgreSQL: a claim skips the job rows other transactions hold (SKIP LOCKED), so that
workers never queue behind each other's claims. A short write elsewhere (a flow run's id
recorded, a new priority) holds a queued job too; a claim then looks again until the
lock is gone, so that `dispatch_one` does not report an empty queue and the worker loop
does not leave the job to its next poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scheduler_core import SchedulerService, dispatching
from scheduler_core.values import Claim, Claims, Job
from tests.conftest import POSTGRES_URL, TEST_SETTINGS, fresh_database, wait_for

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL row locks")


class Holder:
    """Another session holding a job's row, as a write of another process would."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url)

    def lock(self, job_id: int) -> None:
        self.conn.execute("UPDATE job SET priority = priority WHERE job_id = %s", (job_id,))

    def start(self, job_id: int) -> None:
        """What another worker's claim writes while it holds the row."""
        self.conn.execute("UPDATE job SET status = 'RUNNING' WHERE job_id = %s", (job_id,))

    def release(self) -> None:
        self.conn.commit()


class Claimer(threading.Thread):
    """claim_next in a thread; `looked` is set once a claim came back empty, having
    passed over a job another transaction held (the lock is then known to have been
    met)."""

    def __init__(self, svc: SchedulerService) -> None:
        super().__init__(daemon=True)
        self.svc = svc
        self.looked = threading.Event()
        self.claim: Claim | None = None
        self.seconds = 0.0
        claim_in = svc._claim_in

        def spy(conn: Any, count: int = 1, **kw: Any) -> Claims:
            claims = claim_in(conn, count, **kw)
            if not claims and claims.passed_over:
                self.looked.set()
            return claims

        svc._claim_in = spy  # type: ignore[method-assign]

    def run(self) -> None:
        started = time.monotonic()
        self.claim = self.svc.claim_next()
        self.seconds = time.monotonic() - started


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[SchedulerService, Holder]]:
    with fresh_database("postgres", tmp_path) as url:
        svc = SchedulerService.open(url, **TEST_SETTINGS)
        svc.register("work", lambda params: None)
        holder = Holder(url)
        try:
            yield svc, holder
        finally:
            holder.conn.close()
            svc.close()


def claim_while_locked(
    pg: tuple[SchedulerService, Holder], monkeypatch: pytest.MonkeyPatch, deadline: float
) -> tuple[Job, Claimer]:
    """A queued job, locked by the holder; a claim started in a thread."""
    svc, holder = pg
    monkeypatch.setattr(dispatching, "LOCKED_HEAD_SECONDS", deadline)
    job = svc.enqueue_job("work", {})
    holder.lock(job.job_id or 0)
    claimer = Claimer(svc)
    claimer.start()
    return job, claimer


def test_a_job_locked_by_a_short_write_is_claimed_once_the_write_ends(
    pg: tuple[SchedulerService, Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    job, claimer = claim_while_locked(pg, monkeypatch, dispatching.LOCKED_HEAD_SECONDS)
    wait_for(lambda: claimer.looked.is_set() or not claimer.is_alive(), timeout=30)
    pg[1].release()
    claimer.join(30)
    assert claimer.claim is not None, "the claim reported no work while the job was locked"
    assert claimer.claim.job.job_id == job.job_id


def test_a_job_another_claim_starts_meanwhile_ends_the_search_at_once(
    pg: tuple[SchedulerService, Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    job, claimer = claim_while_locked(pg, monkeypatch, 60.0)
    wait_for(claimer.looked.is_set, timeout=30, what="the claim to meet the lock")
    pg[1].start(job.job_id or 0)
    pg[1].release()
    claimer.join(60)
    assert claimer.claim is None
    assert claimer.seconds < 30  # ended when the job left the queue, not at the deadline


def test_a_lock_held_past_the_deadline_gives_no_claim(
    pg: tuple[SchedulerService, Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    job, claimer = claim_while_locked(pg, monkeypatch, 0.3)
    claimer.join(30)
    assert not claimer.is_alive() and claimer.claim is None
    assert claimer.looked.is_set()
    pg[1].release()
    claim = pg[0].claim_next()
    assert claim is not None and claim.job.job_id == job.job_id


def test_a_capped_slot_filled_while_a_claim_waits_for_its_lock_is_not_overfilled(
    pg: tuple[SchedulerService, Holder],
) -> None:
    """The claim reads the heads while the slot has room; another worker's claim holds
    the slot's lock, starts a job of the slot and commits. The waiting claim must count
    the slot again once it has the lock, and start nothing."""
    svc, holder = pg
    svc.register("capped", lambda params: None, resource="gpu")
    svc.set_resource_limit("gpu", 1)
    first = svc.enqueue_job("capped", {})
    other = svc.enqueue_job("capped", {})
    holder.conn.execute("SELECT 1 FROM resource_class WHERE name = 'gpu' FOR UPDATE")
    claimer = Claimer(svc)
    claimer.start()
    with psycopg.connect(holder.conn.info.dsn, autocommit=True) as watcher:

        def waits_for_the_slot_lock() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%FROM resource_class%FOR UPDATE'"
            ).fetchone()
            return bool(row and row[0])

        wait_for(waits_for_the_slot_lock, timeout=30, what="the claim to wait for the lock")
    holder.start(other.job_id or 0)  # the head the waiting claim did not lock
    holder.conn.execute("UPDATE job SET slot = 'gpu' WHERE job_id = %s", (other.job_id,))
    holder.release()
    claimer.join(30)
    assert not claimer.is_alive()
    assert claimer.claim is None, "the claim started a job in a full slot"
    assert svc.get_job(first.job_id or 0).status.value == "QUEUED"


def test_a_held_job_that_could_not_run_anyway_is_not_waited_for(
    pg: tuple[SchedulerService, Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a job the claim could have started is waited for: one held elsewhere in a
    slot that is full ends the claim at once."""
    svc, holder = pg
    monkeypatch.setattr(dispatching, "LOCKED_HEAD_SECONDS", 60.0)
    svc.register("capped", lambda params: None, resource="gpu")
    svc.set_resource_limit("gpu", 1)
    svc.enqueue_job("capped", {})
    assert svc.claim_next() is not None  # the slot's one place is taken
    waiting = svc.enqueue_job("capped", {})
    holder.lock(waiting.job_id or 0)
    claimer = Claimer(svc)
    claimer.start()
    claimer.join(30)
    assert not claimer.is_alive() and claimer.claim is None
    assert not claimer.looked.is_set() and claimer.seconds < 30
    holder.release()
