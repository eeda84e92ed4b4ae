"""This process as a worker: its registration, its heartbeat (which also keeps its
reservations alive), and its goodbye. Crash recovery judges other workers by these."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from scheduler_core.database import Database
from scheduler_core.liveness import HOST, process_started_at
from scheduler_core.statuses import WorkerStatus
from scheduler_core.store import Store
from scheduler_core.threads import started_once
from scheduler_core.values import Worker, utcnow

log = logging.getLogger("scheduler_core")


class Membership:
    def __init__(self, db: Database, store: Store, *, heartbeat_interval: float) -> None:
        self.db = db
        self.store = store
        self.worker_id = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.slots: int | None = None  # None until registered
        self._interval = heartbeat_interval
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._closing = threading.Event()
        # Told when a heartbeat fails (the service pauses dispatch on it).
        self.on_fault: Callable[[Exception], None] | None = None

    def register(self, *, slots: int) -> None:
        """Record this process as a worker with `slots` (once per change), and keep its
        heartbeat going."""
        with self._lock:
            if self.slots == slots:
                return
            now = utcnow()
            worker = Worker(
                worker_id=self.worker_id,
                host=HOST,
                pid=os.getpid(),
                process_started_at=process_started_at(),
                slots=slots,
                status=WorkerStatus.RUNNING,
                started_at=now,
                heartbeat_at=now,
            )
            self.db.write(lambda c: self.store.upsert_worker(c, worker))
            self.slots = slots
            self._heartbeat = started_once(self._heartbeat, self._beat, "llmsched-heartbeat")

    def _beat(self) -> None:
        while not self._closing.wait(self._interval):
            try:
                self.db.write(self._beat_once)
            except Exception as exc:  # the next beat tries again; the thread never ends
                if self.on_fault is not None:
                    self.on_fault(exc)
                log.warning(
                    "action=heartbeat_failed worker_id=%s error=%s: %s",
                    self.worker_id,
                    type(exc).__name__,
                    exc,
                )

    def _beat_once(self, conn: Any) -> None:
        now = utcnow()
        self.store.heartbeat(conn, self.worker_id, now=now)
        self.store.extend_reservations(conn, worker_id=self.worker_id, now=now)

    def leave(self) -> None:
        """Stop the heartbeat; if registered, mark this worker STOPPED and release its
        reservations."""
        self._closing.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self.slots is None:
            return

        def stopped(conn: Any) -> None:
            now = utcnow()
            self.store.set_worker_status(conn, self.worker_id, WorkerStatus.STOPPED, now=now)
            self.store.release_reservations_of(conn, [self.worker_id], now=now)

        self.db.write(stopped)
