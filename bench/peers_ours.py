"""Worker processes for ours and for the raw baseline, each draining one database.

    python -m bench.peers_ours ours URL HOME SLOTS OUT [ONLY]   (ONLY: one ALTERNATING type)
    python -m bench.peers_ours raw  URL-OR-FILE KIND SLOTS OUT   (KIND: noop or exclusive)

Ours is the real worker loop: `start(concurrency=SLOTS)` until SIGTERM, then `stop()`.
The raw baseline is the least any queue on this database does: SLOTS threads, each
with its own connection, claiming the head (priority desc, id) in one transaction and
marking it done in a second; on PostgreSQL with FOR UPDATE SKIP LOCKED, on SQLite in WAL
under BEGIN IMMEDIATE. The exclusive limit is a NOT EXISTS on running exclusive jobs,
checked under the write lock (SQLite) or a transaction advisory lock (PostgreSQL).
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.peers_common import ALTERNATING, EXCLUSIVE, Recorder

RAW_TABLE = (
    "CREATE TABLE raw_job (id {pk}, n INT NOT NULL, priority INT NOT NULL, "
    "seconds REAL NOT NULL, exclusive INT NOT NULL, status TEXT NOT NULL)"
)
RAW_INDEX = "CREATE INDEX raw_job_queue ON raw_job (status, priority DESC, id)"
RAW_INSERT = (
    "INSERT INTO raw_job (n, priority, seconds, exclusive, status) "
    "VALUES ({p}, {p}, {p}, {p}, 'QUEUED')"
)
RAW_HEAD = (
    "SELECT {cols} FROM raw_job WHERE status = 'QUEUED' AND (exclusive = 0 OR NOT "
    "EXISTS (SELECT 1 FROM raw_job r WHERE r.status = 'RUNNING' AND r.exclusive = 1)) "
    "ORDER BY priority DESC, id LIMIT 1"
)
IDLE = 0.001  # the raw loop's poll when nothing is claimable


def register(svc: Any, rec: Recorder | None, only: str | None = None) -> None:
    """Our job types; the parent registers them too (without a recorder) to enqueue.
    `only`: register just that one of ALTERNATING (a worker of the cross-process drain)."""

    def noop(params: dict[str, Any]) -> None:
        if rec:
            rec.run(params["n"])

    def exclusive(params: dict[str, Any]) -> None:
        if rec:
            rec.run(params["n"], params["seconds"])

    if only is None:
        svc.register("noop", noop)
        svc.register(EXCLUSIVE, exclusive, resource=EXCLUSIVE)
    for name in ALTERNATING:
        if only in (None, name):
            svc.register(name, exclusive, resource=EXCLUSIVE)


def ours(url: str, home: str, slots: int, out: str, only: str | None = None) -> None:
    from scheduler_core import SchedulerService

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    svc = SchedulerService.open(url, home=Path(home), retry_backoff_seconds=0)
    register(svc, Recorder(out), only)
    svc.start(concurrency=slots)
    stop.wait()
    svc.stop(timeout=30)
    svc.close()


def raw_sqlite_claim(db: sqlite3.Connection) -> tuple[int, int, float] | None:
    db.execute("BEGIN IMMEDIATE")
    row = db.execute(RAW_HEAD.format(cols="id, n, seconds")).fetchone()
    if row is not None:
        db.execute("UPDATE raw_job SET status='RUNNING' WHERE id=?", (row[0],))
    db.execute("COMMIT")
    return row


def raw_loop(target: str, out: str, stop: threading.Event, exclusive: bool) -> None:
    rec = Recorder(out)
    if target.startswith("postgresql"):
        import psycopg

        pg = psycopg.connect(target, autocommit=True)

        def claim() -> tuple[int, int, float] | None:
            with pg.transaction():
                if exclusive:  # one claimer at a time, so NOT EXISTS holds
                    pg.execute("SELECT pg_advisory_xact_lock(42)")
                return pg.execute(
                    f"UPDATE raw_job SET status='RUNNING' WHERE id = ({RAW_HEAD.format(cols='id')} "
                    "FOR UPDATE "
                    "SKIP LOCKED) RETURNING id, n, seconds"
                ).fetchone()

        def finish(job_id: int) -> None:
            pg.execute("UPDATE raw_job SET status='DONE' WHERE id=%s", (job_id,))
    else:
        db = sqlite3.connect(target, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")

        def claim() -> tuple[int, int, float] | None:
            return raw_sqlite_claim(db)

        def finish(job_id: int) -> None:
            db.execute("UPDATE raw_job SET status='DONE' WHERE id=?", (job_id,))

    while not stop.is_set():
        row = claim()
        if row is None:
            time.sleep(IDLE)
            continue
        rec.run(row[1], row[2])
        finish(row[0])


def raw(target: str, slots: int, out: str, exclusive: bool) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [
        threading.Thread(target=raw_loop, args=(target, out, stop, exclusive)) for _ in range(slots)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    kind, target, home, slots, out = sys.argv[1:6]
    if kind == "ours":
        ours(target, home, int(slots), out, *sys.argv[6:7])
    else:
        raw(target, int(slots), out, home == EXCLUSIVE)
