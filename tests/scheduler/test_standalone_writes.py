"""PostgreSQL's single-statement writes (an enqueue) on the one autocommit connection the
database layer keeps for them: reused, shared safely between threads, and replaced
when the server drops it or a statement fails, without losing or repeating a job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from scheduler_core import SchedulerService
from scheduler_core.errors import DuplicateExternalIdError
from tests.conftest import POSTGRES_URL, fresh_database, wait_for

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs SCHEDULER_TEST_POSTGRES_URL")


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[SchedulerService]:
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, retry_backoff_seconds=0) as service,
    ):
        service.register("noop", lambda p: None)
        yield service


def backend_pid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def in_autocommit(conn: sa.Connection) -> bool:
    return bool(conn.connection.dbapi_connection.autocommit)  # type: ignore[union-attr]


def job_count(svc: SchedulerService) -> int:
    return svc.db.read(lambda c: c.exec_driver_sql("SELECT count(*) FROM job").scalar_one())


def test_standalone_writes_reuse_one_autocommit_connection(svc: SchedulerService) -> None:
    pids = {svc.db.write_standalone(backend_pid) for _ in range(5)}
    assert len(pids) == 1
    assert svc.db.write_standalone(in_autocommit)
    assert svc.db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # kept, in between
    # Transactions still begin and commit on the pool's connections.
    assert not svc.db.write(in_autocommit)
    # A standalone write while the kept connection is in use takes a pooled one.
    outer, inner = svc.db.write_standalone(
        lambda c: (backend_pid(c), svc.db.write_standalone(backend_pid))
    )
    assert outer in pids and inner != outer
    assert svc.db.write_standalone(backend_pid) in pids


def test_an_enqueue_after_the_server_dropped_the_kept_connection_is_written_once(
    svc: SchedulerService, caplog: pytest.LogCaptureFixture
) -> None:
    first = svc.enqueue_job("noop", {"n": 1})
    dropped = svc.db.write_standalone(backend_pid)
    with psycopg.connect(POSTGRES_URL or "", autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (dropped,)).fetchone() == (True,)
    with caplog.at_level(logging.WARNING):
        second = svc.enqueue_job("noop", {"n": 2})
    assert second.job_id == (first.job_id or 0) + 1
    assert job_count(svc) == 2
    assert svc.db.write_standalone(backend_pid) != dropped
    # It cost one rerun, and nothing logged above a warning.
    assert [r.levelname for r in caplog.records] == ["WARNING"], caplog.text


def test_an_enqueue_after_the_server_timed_out_the_idle_kept_connection_is_written_once(
    svc: SchedulerService,
) -> None:
    """A server that ends idle sessions (`idle_session_timeout`) ends the kept one while
    no one enqueues; the next enqueue is rerun on a new connection."""
    svc.enqueue_job("noop", {"n": 1})
    ended = svc.db.write_standalone(backend_pid)
    svc.db.write_standalone(lambda c: c.exec_driver_sql("SET idle_session_timeout = '50ms'"))
    with psycopg.connect(POSTGRES_URL or "", autocommit=True) as admin:
        wait_for(
            lambda: (
                not admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (ended,)
                ).fetchone()
            ),
            timeout=10,
            what="the server ending the idle session",
        )
    assert svc.enqueue_job("noop", {"n": 2}).params == {"n": 2}
    assert job_count(svc) == 2
    assert svc.db.write_standalone(backend_pid) != ended


def test_a_failed_statement_gives_up_the_kept_connection_and_the_next_enqueue_works(
    svc: SchedulerService,
) -> None:
    svc.enqueue_job("noop", external_id="run-1")
    with pytest.raises(DuplicateExternalIdError):
        svc.enqueue_job("noop", external_id="run-1")
    assert svc.enqueue_job("noop", external_id="run-2").external_id == "run-2"
    assert job_count(svc) == 2
    assert svc.db.write_standalone(in_autocommit)


def test_threads_enqueueing_at_once_each_write_every_job_once(svc: SchedulerService) -> None:
    threads, each = 8, 40
    start = threading.Barrier(threads)
    ids: list[int] = []
    errors: list[BaseException] = []

    def enqueue(t: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(each):
                ids.append(svc.enqueue_job("noop", {"t": t, "i": i}).job_id or 0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=enqueue, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors
    assert len(set(ids)) == threads * each
    assert job_count(svc) == threads * each


def test_closing_returns_the_kept_connection(tmp_path: Path) -> None:
    with fresh_database("postgres", tmp_path) as url:
        svc = SchedulerService.open(url)
        svc.register("noop", lambda p: None)
        svc.enqueue_job("noop")
        pool = svc.db.engine.pool
        assert pool.checkedout() == 1  # type: ignore[attr-defined]
        svc.close()
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
