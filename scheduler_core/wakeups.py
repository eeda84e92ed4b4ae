"""Wake-ups across processes: a worker learns of work queued, and of a slot freed, by
another process at once, not at its next poll (`poll_interval`).

- PostgreSQL: statement triggers on `job` (migrations.py) notify `CHANNEL` when jobs
  are inserted or become claimable, and when a RUNNING job's end frees what another
  worker may wait for (`_SLOT_FREED`), in the writer's transaction, so the
  notification arrives at its commit. Each worker LISTENs on a connection of its own.
- SQLite: each worker reads `PRAGMA data_version` on a connection of its own; it
  changes whenever another connection commits. On Linux a worker with a free slot
  reads it as soon as any process writes the database or its WAL (`FileWrites`,
  inotify), so a job queued or a group member released elsewhere starts within a
  millisecond or two. Elsewhere it is read every `SQLITE_INTERVAL` while the database
  changes, less often (up to `SQLITE_IDLE_INTERVAL`) while it does not: waking a
  thread 300 times a second costs an idle worker about 2% of a core.

A wake-up only makes the dispatcher try a claim, so none is sent while every slot of
the worker is busy (`wanted`): the changes then are mostly the worker's own commits, and
a slot that ends its job claims the next one itself (or wakes the dispatcher if it finds
none). The poll stays as the fallback. A
watcher that loses its connection (the database restarting) connects again after
`RETRY_SECONDS`, and until then the worker polls as before.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.statuses import JobStatus, ReservationStatus

log = logging.getLogger("scheduler_core.wakeups")

CHANNEL = "llmsched_wakeup"
SQLITE_INTERVAL = 0.003  # seconds between reads of data_version while the database changes
SQLITE_IDLE_INTERVAL = 0.05  # ... growing to this while it does not
LISTEN_TIMEOUT = 0.5  # seconds a LISTEN wait lasts before the stop flag is checked
RETRY_SECONDS = 1.0
CONNECT_TIMEOUT = 5

# The payload is the schema of the changed table: schedulers sharing one database in
# schemas of their own wake only their own workers.
_NOTIFY = f"PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA)"
_QUEUED, _RUNNING = JobStatus.QUEUED.value, JobStatus.RUNNING.value
# What another worker could claim for: jobs inserted, a job that became claimable (back
# in the queue, a group's next member released), and a RUNNING job's end when it frees
# a capped slot or a direct reservation waits for a slot. A claim, and the end of an
# uncapped job, change nothing another worker could use: they send nothing, so a busy
# worker's own commits do not wake every worker (each wake-up costs a thread switch).
_CLAIMABLE = f"(n.status = '{_QUEUED}' AND NOT n.held AND (o.status <> '{_QUEUED}' OR o.held))"
_SLOT_FREED = (
    f"(o.status = '{_RUNNING}' AND n.status <> '{_RUNNING}' AND ("
    "EXISTS (SELECT 1 FROM resource_class rc WHERE rc.name IN (o.resource, o.slot) "
    'AND rc."limit" IS NOT NULL) OR EXISTS (SELECT 1 FROM reservation r '
    f"WHERE r.status = '{ReservationStatus.ACTIVE.value}')))"
)
_TRIGGER = (
    "CREATE OR REPLACE FUNCTION llmsched_wakeup() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN {_NOTIFY}; RETURN NULL; END $$",
    "CREATE OR REPLACE FUNCTION llmsched_wakeup_on_update() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN IF EXISTS (SELECT 1 FROM new_rows n JOIN old_rows o "
    f"ON o.job_id = n.job_id WHERE {_CLAIMABLE} OR {_SLOT_FREED}) THEN {_NOTIFY}; "
    "END IF; RETURN NULL; END $$",
    "DROP TRIGGER IF EXISTS job_wakeup ON job",  # schema v6's: every insert and update
    "CREATE OR REPLACE TRIGGER job_wakeup_insert AFTER INSERT ON job "
    "FOR EACH STATEMENT EXECUTE FUNCTION llmsched_wakeup()",
    "CREATE OR REPLACE TRIGGER job_wakeup_update AFTER UPDATE ON job "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION llmsched_wakeup_on_update()",
)


def install_trigger(conn: Connection) -> None:
    """PostgreSQL: the trigger that notifies workers (a no-op on SQLite)."""
    if conn.dialect.name == "postgresql":
        for statement in _TRIGGER:
            conn.exec_driver_sql(statement)


class Wakeups:
    """A daemon thread that calls `notify` when another process changed the jobs."""

    def __init__(
        self, url: sa.URL, notify: Callable[[], None], wanted: Callable[[], bool] = lambda: True
    ) -> None:
        self.url = url
        self.notify = notify
        self.wanted = wanted
        self._stop = threading.Event()
        self._freed = threading.Event()  # a slot of this worker became free
        self._thread = threading.Thread(target=self._run, name="llmsched-wakeups", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def slot_freed(self) -> None:
        """A slot of this worker is free again: a watcher that stopped watching while
        every slot was busy looks at once (SQLite), instead of at its next timer."""
        self._freed.set()

    def stop(self) -> None:
        self._stop.set()
        self._freed.set()
        if self._thread.ident is not None:  # started (a failed start never did)
            self._thread.join(timeout=LISTEN_TIMEOUT + 1)

    def _run(self) -> None:
        watch = self._listen if self.url.get_backend_name() == "postgresql" else self._watch_file
        while not self._stop.is_set():
            try:
                watch()
            except Exception as exc:  # the database is away: poll until it is back
                log.debug("action=wakeups_reconnect error=%s", exc)
                self._stop.wait(RETRY_SECONDS)

    def _listen(self) -> None:
        import psycopg

        conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()
            mine = schema[0] if schema else None  # the schema our tables are found in
            conn.execute(f"LISTEN {CHANNEL}")
            self.notify()  # what changed while not listening
            while not self._stop.is_set():
                changed = any(
                    n.payload == mine for n in conn.notifies(timeout=LISTEN_TIMEOUT, stop_after=1)
                )
                if changed and self.wanted():
                    self.notify()

    def _watch_file(self) -> None:
        path = self.url.database or ""
        conn = sqlite3.connect(path, timeout=CONNECT_TIMEOUT)
        writes = FileWrites.open(path)
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            interval = SQLITE_INTERVAL
            while not self._stop.is_set():
                written = False
                if writes is not None and self.wanted():
                    written = writes.wait(interval)  # at once when a process writes
                else:
                    if writes is not None:
                        writes.pause()  # events cost every writer's write(): none while busy
                    self._freed.wait(interval)
                    self._freed.clear()
                    if self._stop.is_set():
                        break
                    if writes is not None and self.wanted():
                        writes.resume()  # before the read: no commit falls between the two
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if not self.wanted():  # every slot busy: nothing to claim for
                    version, interval = now, SQLITE_IDLE_INTERVAL
                elif now != version:
                    version, interval = now, SQLITE_INTERVAL
                    self.notify()
                elif written:  # the writes of a commit not yet visible: look again soon
                    interval = SQLITE_INTERVAL
                else:  # quiet: read less often, so an idle worker costs next to nothing
                    interval = min(interval * 1.5, SQLITE_IDLE_INTERVAL)
        finally:
            if writes is not None:
                writes.close()
            conn.close()


class FileWrites:
    """Linux: waits until any process writes the database file or its WAL (inotify), so
    a waiting worker wakes at another process's commit instead of at its next read of
    `data_version`. Elsewhere, or when inotify is unavailable, `open` gives None and
    the worker reads `data_version` on its timer."""

    def __init__(self, inotify: Any, directory: str, names: set[str]) -> None:
        self._inotify = inotify
        self._directory = directory
        self._names = names
        self._watch: int | None = None

    @classmethod
    def open(cls, database: str) -> FileWrites | None:
        try:
            from inotify_simple import INotify
        except ImportError:  # not Linux
            return None
        directory, name = os.path.split(os.path.abspath(database))
        try:
            inotify = INotify()
        except OSError as exc:  # e.g. the user's inotify instances are used up
            log.debug("action=inotify_unavailable error=%s", exc)
            return None
        writes = cls(inotify, directory, {name, f"{name}-wal"})
        try:
            writes.resume()
        except OSError as exc:
            writes.close()
            log.debug("action=inotify_unavailable error=%s", exc)
            return None
        return writes

    def resume(self) -> None:
        """Watch (again): the directory, not the files, since the WAL is deleted and
        made again."""
        if self._watch is None:
            from inotify_simple import flags

            self._watch = self._inotify.add_watch(self._directory, flags.MODIFY | flags.CREATE)

    def pause(self) -> None:
        """Stop watching: the caller reads `data_version` when it resumes."""
        if self._watch is not None:
            self._inotify.rm_watch(self._watch)
            self._watch = None

    def wait(self, seconds: float) -> bool:
        """Block until the database or its WAL is written (True) or `seconds` pass.

        A commit is several writes and is visible only after the last: the events of
        the next millisecond are read with the first."""
        self.resume()
        events = self._inotify.read(timeout=max(1, int(seconds * 1000)), read_delay=1)
        return any(event.name in self._names for event in events)

    def close(self) -> None:
        self._inotify.close()
