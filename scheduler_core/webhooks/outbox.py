"""Webhooks as a plugin: an event and its deliveries are written in the state change's
transaction.

So a run can not end without its event, and an event never exists for a change that
rolled back. The sender is woken only once the transaction has ended, so it never looks
before the rows are visible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Connection

from scheduler_core.plugins import Plugin
from scheduler_core.prepared import prepared
from scheduler_core.values import Job, JobGroup, JobRun
from scheduler_core.webhooks import deliveries
from scheduler_core.webhooks.delivery import WebhookDispatcher
from scheduler_core.webhooks.events import (
    Event,
    group_event,
    group_event_type,
    matches,
    run_event,
    run_event_type,
)

_WAKE = "scheduler_core.webhooks.wake"
_ENDPOINTS = "scheduler_core.webhooks.endpoints"  # read once per transaction
_READ = "webhook_endpoints"  # read by a run's end statement (reads_with_end)


def request_wake(conn: Connection) -> None:
    """Wake this process's sender once `conn`'s transaction has ended."""
    conn.info[_WAKE] = True


def _endpoints(conn: Connection) -> list[tuple[int, list[str]]]:
    """The enabled endpoints and their filters: as a run's end statement returned them,
    else as read earlier in this transaction (slots' ends share one), else read now."""
    read = conn.info.get(_READ)
    if read is not None:
        endpoints = conn.info[_ENDPOINTS] = [(int(i), list(e)) for i, e in read]
        return endpoints
    found: list[tuple[int, list[str]]] | None = conn.info.get(_ENDPOINTS)
    if found is None:
        rows = prepared(conn, deliveries.ENABLED_ENDPOINTS).all(conn)
        found = conn.info[_ENDPOINTS] = [(r.endpoint_id, r.events) for r in rows]
    return found


def _write(conn: Connection, build: Callable[[], Event], event_type: str) -> None:
    targets = [i for i, events in _endpoints(conn) if matches(event_type, events)]
    if not targets:
        return
    deliveries.insert_event(conn, build(), targets)
    request_wake(conn)


class WebhooksPlugin(Plugin):
    """Writes run and group events to the outbox and drives the sender threads."""

    def __init__(self, sender: WebhookDispatcher) -> None:
        self.sender = sender

    def reads_with_end(self, dialect: str) -> Mapping[str, Any]:
        return {_READ: deliveries.ENABLED_ENDPOINTS_JSON[dialect]}

    def writes_with_end(self, dialect: str) -> Any:
        return deliveries.ANY_ENABLED

    def on_terminal_run_in_tx(self, conn: Connection, job: Job, run: JobRun) -> None:
        _write(conn, lambda: run_event(job, run), run_event_type(run))

    def on_group_end_in_tx(self, conn: Connection, group: JobGroup) -> None:
        _write(conn, lambda: group_event(group), group_event_type(group))

    def after_write(self, conn: Connection, committed: bool) -> None:
        conn.info.pop(_ENDPOINTS, None)
        if conn.info.pop(_WAKE, False):
            self.sender.wake()  # a rolled-back transaction wakes it too: it finds nothing

    def start(self) -> None:
        self.sender.start()

    def stop(self, timeout: float) -> None:
        self.sender.stop(timeout=timeout)
