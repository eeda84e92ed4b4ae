"""Fresh databases for the rows: a new SQLite file, or a new PostgreSQL schema dropped after.

Each database also offers the raw-driver queue that the baselines use, so a baseline
runs on exactly the storage the product runs on.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import psycopg

from scheduler_core import SchedulerService

RAW_TABLE = (
    "CREATE TABLE raw_job (id {pk}, status TEXT NOT NULL, priority INT NOT NULL, "
    "params TEXT NOT NULL, created_at TEXT NOT NULL)"
)
RAW_INDEX = "CREATE INDEX raw_job_queue ON raw_job (status, priority DESC, id)"
RAW_INSERT = (
    "INSERT INTO raw_job (status, priority, params, created_at) VALUES ('QUEUED', 0, '{{}}', {now})"
)
RAW_HEAD = "SELECT id FROM raw_job WHERE status = 'QUEUED' ORDER BY priority DESC, id LIMIT 1"


class RawQueue(Protocol):
    """The floor any queue on this database can reach: the same transactions, no product."""

    def insert_one(self) -> None: ...
    def insert_many(self, n: int) -> None: ...
    def claim_and_finish(self) -> None: ...
    def close(self) -> None: ...


class RawSqlite:
    """sqlite3 in WAL mode with synchronous=NORMAL, the product's own settings."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(RAW_TABLE.format(pk="INTEGER PRIMARY KEY"))
        self.conn.execute(RAW_INDEX)
        self.insert = RAW_INSERT.format(now="datetime('now')")

    def insert_one(self) -> None:
        self.conn.execute(self.insert)  # autocommit: one transaction

    def insert_many(self, n: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.insert, ((),) * n)
        self.conn.execute("COMMIT")

    def claim_and_finish(self) -> None:
        db = self.conn
        db.execute("BEGIN IMMEDIATE")
        (job_id,) = db.execute(RAW_HEAD).fetchone()
        db.execute("UPDATE raw_job SET status='RUNNING' WHERE id=? AND status='QUEUED'", (job_id,))
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE raw_job SET status='DONE' WHERE id=? AND status='RUNNING'", (job_id,))
        db.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class RawPostgres:
    """psycopg 3 with the claim every PostgreSQL queue uses: FOR UPDATE SKIP LOCKED."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(RAW_TABLE.format(pk="BIGSERIAL PRIMARY KEY"))
        self.conn.execute(RAW_INDEX)
        self.insert = RAW_INSERT.format(now="now()::text")

    def insert_one(self) -> None:
        self.conn.execute(self.insert)

    def insert_many(self, n: int) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(self.insert, [()] * n)

    def claim_and_finish(self) -> None:
        with self.conn.transaction():
            row = self.conn.execute(
                "UPDATE raw_job SET status='RUNNING' "
                f"WHERE id = ({RAW_HEAD} FOR UPDATE SKIP LOCKED) RETURNING id"
            ).fetchone()
        assert row is not None
        self.conn.execute("UPDATE raw_job SET status='DONE' WHERE id=%s AND status='RUNNING'", row)

    def close(self) -> None:
        self.conn.close()


class Db:
    """One fresh database: its URL for the product, a home for its logs, its raw queue.

    Whatever is opened through it is closed when the database goes away.
    """

    def __init__(self, url: str, home: Path, backend: str) -> None:
        self.url = url
        self.home = home
        self.backend = backend
        self._opened: list[SchedulerService | RawQueue] = []

    def raw_queue(self) -> RawQueue:
        if self.backend == "sqlite":
            raw: RawQueue = RawSqlite(self.home / "raw.db")
        else:
            raw = RawPostgres(self.url)
        self._opened.append(raw)
        return raw

    def open_service(self, **overrides: Any) -> SchedulerService:
        """The service as a user opens it; retries without backoff so no row waits on one."""
        settings: dict[str, Any] = {"home": self.home, "retry_backoff_seconds": 0}
        svc = SchedulerService.open(self.url, **{**settings, **overrides})
        self._opened.append(svc)
        return svc

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()


def fill(svc: SchedulerService, n: int, *, batch: int = 5000, job_type: str = "noop") -> None:
    """Queue `n` jobs with `enqueue_jobs`, `batch` per transaction, as a bulk submitter would."""
    for first in range(0, n, batch):
        svc.enqueue_jobs([{"job_type": job_type}] * min(batch, n - first))


class Backend:
    """Hands out fresh databases on SQLite files, or on PostgreSQL schemas if given a URL."""

    def __init__(self, name: str, root: Path, postgres_url: str | None = None) -> None:
        self.name = name
        self.root = root
        self.postgres_url = postgres_url

    @contextmanager
    def database(self) -> Iterator[Db]:
        home = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.root))
        try:
            if self.postgres_url is None:
                yield from _closing(Db(f"sqlite:///{home / 'jobs.db'}", home, "sqlite"))
            else:
                with _schema(self.postgres_url) as url:
                    yield from _closing(Db(url, home, "postgres"))
        finally:
            shutil.rmtree(home, ignore_errors=True)


def _closing(db: Db) -> Iterator[Db]:
    try:
        yield db
    finally:
        db.close()


@contextmanager
def _schema(url: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
