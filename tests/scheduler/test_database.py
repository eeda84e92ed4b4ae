"""The database layer: schema on first open, a locked database is waited out, bad URLs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from scheduler_core import (
    ConfigurationError,
    DatabaseUnavailableError,
    JobStatus,
    SchedulerService,
)
from scheduler_core.database import normalise_url
from tests.conftest import POSTGRES_URL, fresh_database, wait_for


def test_schema_is_created_on_first_open_and_reopen_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'jobs.db'}"
    with SchedulerService.open(url) as svc:
        svc.register("noop", lambda p: None)
        job = svc.enqueue_job("noop", {"x": 1})
    with SchedulerService.open(url) as svc:
        assert svc.get_job(job.job_id).params == {"x": 1}
        assert svc.resource_limits() == {"default": None}  # the core knows no class by name
    mode = sqlite3.connect(tmp_path / "nested" / "dir" / "jobs.db").execute("PRAGMA journal_mode")
    assert mode.fetchone()[0] == "wal"


def test_a_locked_sqlite_database_is_retried_not_reported_as_a_job_failure(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    with SchedulerService.open(f"sqlite:///{path}", retry_backoff_seconds=0) as svc:
        svc.register("noop", lambda p: None)
        job = svc.enqueue_job("noop", {})
        locker = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
        # Shorten SQLite's own busy wait so the scheduler's retry loop is what waits.
        sa.event.listen(
            svc.db.engine,
            "connect",
            lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA busy_timeout=20"),
        )
        svc.db.engine.dispose()
        locker.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(1.0, lambda: locker.execute("COMMIT"))
        release.start()
        done, run = svc.dispatch_one()
        release.join()
        assert done.job_id == job.job_id and done.status == JobStatus.COMPLETED
        assert run.error is None


def test_a_database_locked_past_the_retry_window_raises_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    with SchedulerService.open(f"sqlite:///{path}", db_retry_seconds=0.5) as svc:
        svc.register("noop", lambda p: None)
        locker = sqlite3.connect(path, isolation_level=None, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")
        try:

            @sa.event.listens_for(svc.db.engine, "connect")
            def short_busy(dbapi_conn, _rec) -> None:  # type: ignore[no-untyped-def]
                dbapi_conn.execute("PRAGMA busy_timeout=20")

            svc.db.engine.dispose()
            with pytest.raises(DatabaseUnavailableError, match="database unavailable"):
                svc.enqueue_job("noop", {})
        finally:
            locker.execute("COMMIT")
        assert svc.list_jobs() == []


@pytest.mark.parametrize("url", ["mysql://x/y", "jobs.db", "redis://localhost"])
def test_unsupported_database_url_is_refused_with_a_hint(url: str) -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        normalise_url(url)


def test_a_refused_database_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigurationError) as refused:
        normalise_url("mysql://admin:hunter2-secret@db.example/jobs")
    assert "hunter2" not in str(refused.value) and "db.example" in str(refused.value)


def test_postgres_urls_are_normalised_to_psycopg() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_each_thread_keeps_one_sqlite_connection_and_returns_it_when_it_ends(
    tmp_path: Path,
) -> None:
    with SchedulerService.open(f"sqlite:///{tmp_path / 'jobs.db'}") as svc:
        svc.register("noop", lambda p: None)
        svc.enqueue_job("noop")
        pool = svc.db.engine.pool
        held_by_main = pool.checkedout()  # type: ignore[attr-defined]
        n = 25  # more threads than the pool's size (10) plus SQLAlchemy's default overflow
        started, done = threading.Barrier(n + 1), threading.Barrier(n + 1)
        errors: list[BaseException] = []
        used: dict[int, set[int]] = {}

        def driver_connection(conn: sa.Connection) -> int:
            return id(conn.connection.dbapi_connection)

        def work(i: int) -> None:
            try:
                started.wait(timeout=30)
                ids = set()
                for _ in range(3):
                    svc.enqueue_job("noop")
                    svc.list_jobs(limit=1)
                    ids.add(svc.db.write(driver_connection))
                    ids.add(svc.db.read(driver_connection))
                used[i] = ids
                done.wait(timeout=30)  # hold on until the main thread has counted
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        started.wait(timeout=30)
        wait_for(lambda: len(used) + len(errors) == n, what="every thread's transactions")
        kept_while_alive = pool.checkedout()  # type: ignore[attr-defined]
        done.wait(timeout=30)
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        # One connection per thread, for reads and writes alike, none shared.
        assert all(len(ids) == 1 for ids in used.values())
        assert len(set().union(*used.values())) == n
        assert kept_while_alive == held_by_main + n
        assert len(svc.list_jobs()) == 1 + n * 3
        assert pool.checkedout() == held_by_main  # type: ignore[attr-defined]


def test_a_transaction_inside_another_uses_its_own_connection(tmp_path: Path) -> None:
    with SchedulerService.open(f"sqlite:///{tmp_path / 'jobs.db'}") as svc:
        svc.register("noop", lambda p: None)
        job = svc.enqueue_job("noop")

        def outer(conn: sa.Connection) -> int:
            inner = svc.get_job(job.job_id or 0)  # a read transaction while this one is open
            conn.exec_driver_sql("UPDATE job SET priority = 7")
            return inner.priority

        assert svc.db.write(outer) == 0
        assert svc.get_job(job.job_id or 0).priority == 7


@pytest.mark.parametrize("through", ["sqlalchemy", "driver"])
def test_a_failed_write_is_rolled_back_and_leaves_nothing_locked(
    tmp_path: Path, through: str
) -> None:
    path = tmp_path / "jobs.db"
    with SchedulerService.open(f"sqlite:///{path}") as svc:
        svc.register("noop", lambda p: None)
        job = svc.enqueue_job("noop")

        def fail(conn: sa.Connection) -> None:
            if through == "sqlalchemy":
                conn.exec_driver_sql("UPDATE job SET priority = 9")
            else:
                conn.connection.dbapi_connection.execute("UPDATE job SET priority = 9")  # type: ignore[union-attr]
            raise RuntimeError("handler bug")

        with pytest.raises(RuntimeError, match="handler bug"):
            svc.db.write(fail)
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if a lock leaked
        other.execute("ROLLBACK")
        other.close()
        assert svc.get_job(job.job_id or 0).priority == 0
        assert svc.enqueue_job("noop").job_id == (job.job_id or 0) + 1


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SCHEDULER_TEST_POSTGRES_URL")
def test_postgres_transactions_in_turn_reuse_the_connection_returned_last(tmp_path: Path) -> None:
    """A slot's transactions run on one pooled connection (and one server backend), not in
    turn on each connection the pool has opened (create_engine: the pool is LIFO)."""
    with fresh_database("postgres", tmp_path) as url, SchedulerService.open(url) as svc:

        def driver_connection(conn: sa.Connection) -> int:
            return id(conn.connection.dbapi_connection)

        # Three connections in the pool: transactions open inside one another.
        opened = svc.db.write(
            lambda a: {
                driver_connection(a),
                *svc.db.write(lambda b: {driver_connection(b), svc.db.read(driver_connection)}),
            }
        )
        assert len(opened) == 3
        used = [svc.db.write(driver_connection) for _ in range(6)]
        used += [svc.db.read(driver_connection) for _ in range(6)]
        assert len(set(used)) == 1, used
        assert used[0] in opened
