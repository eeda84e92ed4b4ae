"""Wake-ups across processes: a worker learns of work queued, and of a slot freed, by
another process at once, not at its next poll (`poll_interval`).

- PostgreSQL: a statement trigger on `job` (migrations.py) notifies `CHANNEL` whenever
  jobs are inserted or change status or hold, in the writer's transaction, so the
  notification arrives at its commit. Each worker LISTENs on a connection of its own.
- SQLite: each worker reads `PRAGMA data_version` on a connection of its own; it
  changes whenever another connection commits. It is read every `SQLITE_INTERVAL`
  while the database changes, less often (up to `SQLITE_IDLE_INTERVAL`) while it does
  not: waking a thread 300 times a second costs an idle worker about 2% of a core.

A wake-up only makes the dispatcher try a claim, so none is sent while every slot of
the worker is busy (`wanted`): the changes then are mostly the worker's own commits, and
a slot that ends its job claims the next one itself (or wakes the dispatcher if it finds
none). The poll stays as the fallback. A
watcher that loses its connection (the database restarting) connects again after
`RETRY_SECONDS`, and until then the worker polls as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

log = logging.getLogger("scheduler_core.wakeups")

CHANNEL = "llmsched_wakeup"
SQLITE_INTERVAL = 0.003  # seconds between reads of data_version while the database changes
SQLITE_IDLE_INTERVAL = 0.05  # ... growing to this while it does not
LISTEN_TIMEOUT = 0.5  # seconds a LISTEN wait lasts before the stop flag is checked
RETRY_SECONDS = 1.0
CONNECT_TIMEOUT = 5

_TRIGGER = (
    "CREATE OR REPLACE FUNCTION llmsched_wakeup() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER job_wakeup AFTER INSERT OR UPDATE OF status, held ON job "
    "FOR EACH STATEMENT EXECUTE FUNCTION llmsched_wakeup()",
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
        self._thread = threading.Thread(target=self._run, name="llmsched-wakeups", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
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
            conn.execute(f"LISTEN {CHANNEL}")
            self.notify()  # what changed while not listening
            while not self._stop.is_set():
                changed = any(True for _ in conn.notifies(timeout=LISTEN_TIMEOUT, stop_after=1))
                if changed and self.wanted():
                    self.notify()

    def _watch_file(self) -> None:
        conn = sqlite3.connect(self.url.database or "", timeout=CONNECT_TIMEOUT)
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            interval = SQLITE_INTERVAL
            while not self._stop.wait(interval):
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if not self.wanted():  # every slot busy: nothing to claim for
                    version, interval = now, SQLITE_IDLE_INTERVAL
                elif now != version:
                    version, interval = now, SQLITE_INTERVAL
                    self.notify()
                else:  # quiet: read less often, so an idle worker costs next to nothing
                    interval = min(interval * 1.5, SQLITE_IDLE_INTERVAL)
        finally:
            conn.close()
