"""The sender: background threads that POST due deliveries, apart from dispatching.

Each sender loops: claim one due delivery under a lease (a short transaction), POST it
with no transaction open, record the result (another short transaction). It sleeps
until woken by a local commit, until the next delivery falls due, or for the fallback
poll interval (events written by other processes).

An attempt ends by its deadline (`attempt_deadline`, cut shorter if the lease would
otherwise run out first), so the lease always outlives it: no other sender takes a
delivery over while it is being sent. A claim passes over endpoints that have a
delivery in flight, so a slow receiver holds one sender, not all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from datetime import datetime

import httpx
from sqlalchemy.engine import Connection

from scheduler_core.database import Database, is_transient
from scheduler_core.errors import InfrastructureError
from scheduler_core.signal import Signal
from scheduler_core.values import utcnow
from scheduler_core.webhooks import deliveries
from scheduler_core.webhooks.attempt import attempt, new_client
from scheduler_core.webhooks.backoff import next_state
from scheduler_core.webhooks.deliveries import Claimed
from scheduler_core.webhooks.settings import RECORD_SECONDS, WebhookSettings

log = logging.getLogger("scheduler_core.webhooks")


class WebhookDispatcher:
    """Owns the sender threads; start() and stop() are safe to call more than once."""

    def __init__(self, db: Database, *, settings: WebhookSettings, is_postgres: bool) -> None:
        self.db = db
        self.settings = settings
        self.is_postgres = is_postgres
        self.signal = Signal()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wake(self) -> None:
        self.signal.notify()

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            # A fresh event per start: a thread abandoned by an earlier stop() (stuck on
            # a receiver) still sees its own stop request and never rejoins.
            self._stopping = threading.Event()
            self._threads = [
                threading.Thread(
                    target=self._loop,
                    args=(self._stopping,),
                    name=f"llmsched-webhook-{i}",
                    daemon=True,
                )
                for i in range(self.settings.senders)
            ]
            for thread in self._threads:
                thread.start()
        log.info("action=webhooks_start senders=%s", self.settings.senders)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after in-flight attempts; True if every sender ended within `timeout`.

        A sender still stuck on a receiver is abandoned (daemon thread); its lease runs
        out and the delivery is retried, by this process or another.
        """
        self._stopping.set()
        self.wake()
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)
        stopped = not any(t.is_alive() for t in threads)
        log.info("action=webhooks_stop stopped=%s", stopped)
        return stopped

    # ------------------------------------------------------------------ the loop

    def _loop(self, stopping: threading.Event) -> None:
        # Each sender has its own event loop, on which its attempts run one at a time.
        with asyncio.Runner() as runner:
            # Made at the first delivery: a client's TLS set-up costs about 40 ms of CPU,
            # which a worker whose jobs have no endpoint would pay at every start, beside
            # its first jobs. The setting is read at each connection: install_webhooks
            # may replace it.
            client: httpx.AsyncClient | None = None
            try:
                held: tuple[Claimed, float] | None = None
                while held is not None or not stopping.is_set():
                    seen = self.signal.version
                    try:
                        if held is None:
                            held = self.db.write(self._claim)
                        if held is not None:
                            if client is None:
                                client = new_client(lambda: self.settings.allow_private)
                            held = self._deliver(runner, client, *held, stopping=stopping)
                            continue
                        wait = self._idle_seconds()
                    except Exception as exc:
                        held = None  # a failed transaction claimed nothing
                        if isinstance(exc, InfrastructureError) or is_transient(exc):
                            # The database is down or locked: waited out, no traceback.
                            log.warning(
                                "action=webhook_loop_paused error=%s: %s", type(exc).__name__, exc
                            )
                        else:
                            log.exception("action=webhook_loop_error")
                        wait = self.settings.poll_interval
                    self.signal.wait(seen, wait)
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        runner.run(client.aclose())

    def _claim(self, conn: Connection) -> tuple[Claimed, float] | None:
        """The claimed delivery, and a monotonic time no later than its lease's end."""
        lease = self.settings.lease_seconds
        lease_ends = time.monotonic() + lease  # taken before the lease's start: earlier
        claimed = deliveries.claim_due(
            conn, is_postgres=self.is_postgres, lease_seconds=lease, now=utcnow()
        )
        return None if claimed is None else (claimed, lease_ends)

    def _idle_seconds(self) -> float:
        due = self.db.read(deliveries.next_wake)
        if due is None:
            return self.settings.poll_interval
        # A floor, so a row another sender is claiming right now is not spun on.
        return max(0.01, min(self.settings.poll_interval, (due - utcnow()).total_seconds()))

    def _deliver(
        self,
        runner: asyncio.Runner,
        client: httpx.AsyncClient,
        claimed: Claimed,
        lease_ends: float,
        *,
        stopping: threading.Event,
    ) -> tuple[Claimed, float] | None:
        """Send `claimed`, record the result, and claim the next delivery in the same
        transaction (one commit less per delivery) unless the sender is stopping."""
        settings = self.settings
        started = time.monotonic()
        # The attempt ends in time to record its result while the lease still holds.
        budget = min(settings.attempt_deadline, lease_ends - RECORD_SECONDS - started)
        result = runner.run(attempt(client, claimed, settings=settings, budget=budget))
        elapsed = time.monotonic() - started
        now = utcnow()
        status, next_at = next_state(result, attempts=claimed.attempt, settings=settings, now=now)

        def record(conn: Connection) -> tuple[bool, tuple[Claimed, float] | None]:
            kept = deliveries.record_attempt(
                conn,
                claimed,
                status=status,
                next_attempt_at=next_at,
                status_code=result.status_code,
                error=result.error,
                now=now,
            )
            return kept, None if stopping.is_set() else self._claim(conn)

        kept, following = self.db.write(record)
        log.log(
            logging.WARNING if result.refused else logging.INFO,
            "action=deliver delivery_id=%s event_id=%s event=%s endpoint_id=%s attempt=%s "
            "http_status=%s status=%s retry_in=%s elapsed=%.3f%s%s",
            claimed.delivery_id,
            claimed.event_id,
            claimed.event_type,
            claimed.endpoint_id,
            claimed.attempt,
            result.status_code,
            status.value,
            _seconds_until(next_at, now),
            elapsed,
            "" if kept else " lease_lost=true",
            "" if result.error is None else f" error={result.error[:200]!r}",
        )
        return following


def _seconds_until(when: datetime | None, now: datetime) -> str:
    return "-" if when is None else f"{(when - now).total_seconds():.3f}"
