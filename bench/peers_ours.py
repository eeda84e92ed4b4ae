"""Worker processes for ours and for the raw baseline, each draining one database.

    python -m bench.peers_ours ours URL HOME SLOTS OUT [ONLY]   (ONLY: one ALTERNATING type)
    python -m bench.peers_ours raw  URL-OR-FILE KIND SLOTS OUT   (KIND: noop or exclusive)
    python -m bench.peers_ours ours_sql URL HOME SLOTS OUT         (no-op jobs)

Ours is the real worker loop: `start(concurrency=SLOTS)` until SIGTERM, then `stop()`.
The raw baseline is the least any queue on this database does: SLOTS threads, each
with its own connection, claiming the head (priority desc, id) in one transaction and
marking it done in a second; on PostgreSQL with FOR UPDATE SKIP LOCKED, on SQLite in WAL
under BEGIN IMMEDIATE. The exclusive limit is a NOT EXISTS on running exclusive jobs,
checked under the write lock (SQLite) or a transaction advisory lock (PostgreSQL).

Ours' SQL alone runs ours' own statements for a no-op job, compiled by ours, through the
raw driver with nothing else: the end of the slot's last run and job and the next claim
(head, start, run) in one transaction, as the worker loop writes them. What it drains
is what our data model costs the database; the rest of ours' time is the product's
Python around it.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.peers_common import ALTERNATING, EXCLUSIVE, Recorder
from scheduler_core.store.hot import end_binds, run_values, start_binds, value_binds

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


def ours_sql(url: str, home: str, slots: int, out: str) -> None:
    from scheduler_core import SchedulerService

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    svc = SchedulerService.open(url, home=Path(home), retry_backoff_seconds=0)
    postgres = svc.store.is_postgres
    loop = (ours_sql_postgres if postgres else ours_sql_sqlite)(svc, Recorder(out), stop)
    svc.close()
    threads = [threading.Thread(target=loop, args=(f"ours_sql:{i}",)) for i in range(slots)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def noop_binds(svc: Any, job_id: int, worker_id: str, now: Any, params: Any) -> dict[str, Any]:
    """A no-op job's new run's bind values, as ours builds them (store/claims.py)."""
    job = SimpleNamespace(job_type="noop", job_id=job_id, attempt=1)
    log_path = svc.store.log_path_for(job)
    return value_binds(
        run_values(job_id, now=now, worker_id=worker_id, params=params, log_path=log_path)
    )


def noop_end(run_id: int, job_id: int, now: Any) -> dict[str, Any]:
    """A no-op job's end's bind values, as ours builds them (store/finish.py)."""
    return end_binds(
        run_id, job_id, status="COMPLETED", now=now, exit_code=0, error=None, artifacts=[]
    )


def ours_sql_sqlite(svc: Any, rec: Recorder, stop: threading.Event) -> Any:
    """A slot's loop: BEGIN IMMEDIATE; the last run's end and its job's; the first head;
    its start; its run; COMMIT; the job."""
    from scheduler_core.prepared import prepared
    from scheduler_core.store.hot import Hot, ending, first_head, run_end, type_params
    from scheduler_core.values import utcnow

    reads = svc.store.plugins.end_reads("sqlite")
    statements = (ending(run_end, reads), Hot.finish_job, first_head(1), Hot.start_job)
    made = svc.db.read(lambda conn: [prepared(conn, s) for s in (*statements, Hot.insert_run)])
    end_run, end_job, head, start, insert = made
    path = str(svc.db.engine.url.database)

    def loop(worker_id: str) -> None:
        db = raw_sqlite(path)
        db.execute("PRAGMA foreign_keys=ON")  # as ours' connections have it
        ran: tuple[int, int] | None = None  # the last job's run and id, ended with the next claim
        while not stop.is_set():
            now = utcnow()
            db.execute("BEGIN IMMEDIATE")
            if ran is not None:
                ended = noop_end(*ran, now)
                db.execute(end_run.sql, end_run.arguments(ended)).fetchall()
                db.execute(end_job.sql, end_job.arguments(ended))
                ran = None
            found = db.execute(
                head.sql, head.arguments({**type_params(["noop"]), "now": now})
            ).fetchone()
            if found is None:
                db.execute("COMMIT")
                time.sleep(IDLE)
                continue
            job_id = found[0]
            claim = start_binds(job_id, now=now, worker_id=worker_id, slot=found[1])
            params = start.convert(db.execute(start.sql, start.arguments(claim)).fetchone()).params
            run = noop_binds(svc, job_id, worker_id, now, params)
            run_id = db.execute(insert.sql, insert.arguments(run)).fetchone()[0]
            db.execute("COMMIT")
            rec.run(params["n"])
            ran = (run_id, job_id)
        db.close()

    return loop


def ours_sql_postgres(svc: Any, rec: Recorder, stop: threading.Event) -> Any:
    """A slot's loop: the last run's end and the next claim as one call of ours' cycle
    function (store/cycle.py), outside a transaction, as ours makes it; the job. The
    first claim, and one after the call found nothing, is ours' claim statements in a
    transaction: the shared dispatch lock, the heads (FOR UPDATE SKIP LOCKED), the first
    one's start with its run."""
    import psycopg

    from scheduler_core.prepared import prepared
    from scheduler_core.rules.ordering import dispatch_key
    from scheduler_core.store.cycle import STARTED
    from scheduler_core.store.hot import DISPATCH_LOCK_KEY, Hot, heads_skip_locked, type_params
    from scheduler_core.values import utcnow

    statements = (Hot.dispatch_lock_shared, heads_skip_locked(1), Hot.start_job_with_run)

    def make(conn: Any) -> Any:
        made = svc.store.cycle(conn, n_types=1, bindings=())
        assert made is not None, "the cycle function could not be created"
        return [prepared(conn, s) for s in (*statements, made.call)]

    lock, heads, start, call = svc.db.write(make)
    dsn = svc.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def loop(worker_id: str) -> None:
        db = psycopg.connect(dsn, autocommit=True)
        cur = db.cursor()
        ran: tuple[int, int] | None = None  # the last job's run and id, ended with the next claim
        while not stop.is_set():
            now = utcnow()
            if ran is not None:
                args = svc.store.cycle_args(
                    noop_end(*ran, now), worker_id=worker_id, job_types=["noop"], now=now
                )
                cur.execute(call.sql, call.arguments({**args, "p_alone": True}))
                row = call.convert(cur.fetchone())
                ran = None
                if row.o_code == STARTED:
                    rec.run(row.o_j_params["n"])
                    ran = (row.o_run_id, row.o_j_job_id)
                continue
            with db.transaction():
                cur.execute(lock.sql, lock.arguments({"key": DISPATCH_LOCK_KEY}))
                cur.fetchall()
                cur.execute(
                    heads.sql, heads.arguments({**type_params(["noop"]), "now": now, "n": 1})
                )
                found = sorted(
                    (r for r in map(heads.convert, cur.fetchall()) if r.job_id is not None),
                    key=dispatch_key,
                )
                if found:
                    job_id, params = found[0].job_id, found[0].params
                    claim = noop_binds(svc, job_id, worker_id, now, params)
                    slot = found[0].resource
                    claim.update(start_binds(job_id, now=now, worker_id=worker_id, slot=slot))
                    cur.execute(start.sql, start.arguments(claim))
                    ran = (start.convert(cur.fetchone()).run_id, job_id)
            if not found:
                time.sleep(IDLE)
                continue
            rec.run(params["n"])
        db.close()

    return loop


def raw_sqlite(path: str) -> sqlite3.Connection:
    """A driver connection in autocommit (transactions begun by hand), WAL, NORMAL sync."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


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
        db = raw_sqlite(target)

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
    elif kind == "ours_sql":
        ours_sql(target, home, int(slots), out)
    else:
        raw(target, int(slots), out, home == EXCLUSIVE)
