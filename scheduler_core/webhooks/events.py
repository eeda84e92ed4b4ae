"""Event names, endpoint filters and the payload of each event."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from scheduler_core.representation import group_to_dict, iso, run_to_dict
from scheduler_core.values import Job, JobGroup, JobRun, utcnow
from scheduler_core.webhooks.errors import UnknownWebhookEventError

RUN_EVENTS = ("job.run.completed", "job.run.failed", "job.run.skipped", "job.run.cancelled")
GROUP_EVENTS = (
    "job.group.completed",
    "job.group.partial",
    "job.group.failed",
    "job.group.cancelled",
)
EVENT_TYPES = RUN_EVENTS + GROUP_EVENTS


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    event_type: str
    idempotency_key: str
    body: str
    created_at: datetime


def check_filter(events: list[str] | None) -> list[str]:
    """An endpoint's filter: event names or patterns (`job.run.*`); empty means all."""
    checked = [e.strip() for e in events or [] if e.strip()]
    for pattern in checked:
        if not any(fnmatchcase(name, pattern) for name in EVENT_TYPES):
            raise UnknownWebhookEventError(
                f"event filter {pattern!r} matches no event; events are: " + ", ".join(EVENT_TYPES)
            )
    return checked


def matches(event_type: str, filters: list[str]) -> bool:
    return not filters or any(fnmatchcase(event_type, f) for f in filters)


def _event(event_type: str, key: str, when: datetime | None, body: dict[str, Any]) -> Event:
    event_id = str(uuid.uuid4())
    created = when or utcnow()
    payload = {"event": event_type, "event_id": event_id, "timestamp": iso(created), **body}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return Event(event_id, event_type, key, text, created)


def run_event_type(run: JobRun) -> str:
    return f"job.run.{run.status.value.lower()}"


def group_event_type(group: JobGroup) -> str:
    return f"job.group.{group.status.value.lower()}"


def run_event(job: Job, run: JobRun) -> Event:
    """`run_id` is the receiver's idempotency key: a run ends exactly once."""
    body = {"run": run_to_dict(job, run)}
    return _event(run_event_type(run), str(run.run_id), run.finished_at, body)


def group_event(group: JobGroup) -> Event:
    # Prefixed so that a receiver keying on X-Idempotency-Key alone never confuses
    # group 7 with run 7.
    key = f"group-{group.group_id}"
    body = {"group": group_to_dict(group)}
    return _event(group_event_type(group), key, group.finished_at, body)
