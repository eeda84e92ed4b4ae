"""The sender: background threads that POST due deliveries, apart from dispatching.

Each sender loops: claim one due delivery under a lease (a short transaction), POST it
with no transaction open, record the result (another short transaction). It sleeps
until woken by a local commit, until the next delivery falls due, or for the fallback
poll interval (events written by other processes).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import httpx
from sqlalchemy.engine import Connection

from scheduler_core.database import Database
from scheduler_core.signal import Signal
from scheduler_core.values import utcnow
from scheduler_core.webhooks import deliveries
from scheduler_core.webhooks.backoff import AttemptResult, next_state, parse_retry_after
from scheduler_core.webhooks.deliveries import Claimed
from scheduler_core.webhooks.settings import WebhookSettings
from scheduler_core.webhooks.signing import signed_headers

log = logging.getLogger("scheduler_core.webhooks")

USER_AGENT = "prefect-llm-scheduler-webhooks/1"


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
        with httpx.Client(
            timeout=self.settings.timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        ) as client:
            while not stopping.is_set():
                seen = self.signal.version
                try:
                    claimed = self.db.write(self._claim)
                    if claimed is not None:
                        self._deliver(client, claimed)
                        continue
                    wait = self._idle_seconds()
                except Exception:
                    log.exception("action=webhook_loop_error")
                    wait = self.settings.poll_interval
                self.signal.wait(seen, wait)

    def _claim(self, conn: Connection) -> Claimed | None:
        return deliveries.claim_due(
            conn,
            is_postgres=self.is_postgres,
            lease_seconds=self.settings.lease_seconds,
            now=utcnow(),
        )

    def _idle_seconds(self) -> float:
        due = self.db.read(deliveries.next_wake)
        if due is None:
            return self.settings.poll_interval
        # A floor, so a row another sender is claiming right now is not spun on.
        return max(0.01, min(self.settings.poll_interval, (due - utcnow()).total_seconds()))

    def _deliver(self, client: httpx.Client, claimed: Claimed) -> None:
        result = self._post(client, claimed)
        now = utcnow()
        status, next_at = next_state(
            result, attempts=claimed.attempt, settings=self.settings, now=now
        )
        kept = self.db.write(
            lambda c: deliveries.record_attempt(
                c,
                claimed,
                status=status,
                next_attempt_at=next_at,
                status_code=result.status_code,
                error=result.error,
                now=now,
            )
        )
        log.info(
            "action=deliver delivery_id=%s event_id=%s event=%s endpoint_id=%s attempt=%s "
            "http_status=%s status=%s retry_in=%s%s",
            claimed.delivery_id,
            claimed.event_id,
            claimed.event_type,
            claimed.endpoint_id,
            claimed.attempt,
            result.status_code,
            status.value,
            _seconds_until(next_at, now),
            "" if kept else " lease_lost=true",
        )

    def _post(self, client: httpx.Client, claimed: Claimed) -> AttemptResult:
        body = claimed.body.encode()
        headers = signed_headers(
            claimed.secret,
            event_id=claimed.event_id,
            event_type=claimed.event_type,
            idempotency_key=claimed.idempotency_key,
            body=body,
        )
        try:
            response = client.post(claimed.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return AttemptResult(status_code=None, error=f"{type(exc).__name__}: {exc}")
        code = response.status_code
        if 200 <= code < 300:
            return AttemptResult(status_code=code)
        return AttemptResult(
            status_code=code,
            error=f"HTTP {code}: {response.text[:200]}",
            retry_after=parse_retry_after(response.headers.get("retry-after"), now=utcnow()),
        )


def _seconds_until(when: datetime | None, now: datetime) -> str:
    return "-" if when is None else f"{(when - now).total_seconds():.3f}"
