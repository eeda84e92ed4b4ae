"""SQL on outbox rows: write events, claim due deliveries under a lease, record results.

Every function takes an open transaction and stays short: no HTTP happens inside one,
so a slow receiver never holds a database lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.columns import JSONType
from scheduler_core.webhooks.errors import WebhookDeliveryNotFoundError
from scheduler_core.webhooks.events import Event
from scheduler_core.webhooks.models import (
    DELIVERIES as D,
)
from scheduler_core.webhooks.models import (
    ENDPOINTS as EP,
)
from scheduler_core.webhooks.models import (
    EVENTS as EV,
)
from scheduler_core.webhooks.models import (
    DeliveryStatus,
    WebhookDeliveryView,
    WebhookEndpoint,
)
from scheduler_core.webhooks.targets import redact_url

_P = sa.bindparam
_PENDING = DeliveryStatus.PENDING.value
_LEASE_FREE = sa.or_(D.c.locked_until.is_(None), D.c.locked_until <= _P("now"))

_ENABLED = EP.c.enabled == sa.true()
ENABLED_ENDPOINTS = sa.select(EP.c.endpoint_id, EP.c.events).where(_ENABLED)
# The same as one JSON value, `[[endpoint_id, events], ...]`, for a run's end statement to
# return (plugins.py `reads_with_end`), per dialect.
ENABLED_ENDPOINTS_JSON = {
    "postgresql": sa.select(
        sa.func.coalesce(
            sa.func.jsonb_agg(sa.func.jsonb_build_array(EP.c.endpoint_id, EP.c.events)),
            sa.text("'[]'::jsonb"),
            type_=JSONType,
        )
    )
    .where(_ENABLED)
    .scalar_subquery(),
    "sqlite": sa.select(
        sa.func.json_group_array(
            sa.func.json_array(EP.c.endpoint_id, sa.func.json(EP.c.events)), type_=JSONType
        )
    )
    .where(_ENABLED)
    .scalar_subquery(),
}

# Whether a run's end may write an event: an endpoint is enabled (plugins.py
# `writes_with_end`).
ANY_ENABLED = sa.exists(sa.select(EP.c.endpoint_id).where(_ENABLED))

# A delivery of the same endpoint in flight: a live lease (the row being judged has none).
_BUSY = D.alias("busy")
_ENDPOINT_BUSY = (
    sa.select(_BUSY.c.delivery_id)
    .where(
        _BUSY.c.endpoint_id == D.c.endpoint_id,
        _BUSY.c.status == _PENDING,
        _BUSY.c.locked_until > _P("now"),
    )
    .exists()
)

# Due, not leased, and its endpoint has nothing in flight: a slow endpoint occupies one
# sender at most, the others keep serving the rest. `skip`: endpoints found busy by a
# concurrent claim (PostgreSQL, below).
_DUE = (
    sa.select(
        D.c.delivery_id,
        D.c.attempts,
        D.c.endpoint_id,
        EV.c.event_id,
        EV.c.event_type,
        EV.c.idempotency_key,
        EV.c.body,
        EP.c.url,
        EP.c.secret,
    )
    .join(EV, EV.c.event_id == D.c.event_id)
    .join(EP, EP.c.endpoint_id == D.c.endpoint_id)
    .where(
        D.c.status == _PENDING,
        D.c.next_attempt_at <= _P("now"),
        _LEASE_FREE,
        _ENABLED,
        ~_ENDPOINT_BUSY,
        D.c.endpoint_id.not_in(_P("skip", expanding=True)),
    )
    .order_by(D.c.next_attempt_at, D.c.delivery_id)
    .limit(1)
)
# PostgreSQL: concurrent senders skip each other's candidate instead of queueing on it.
_DUE_SKIP_LOCKED = _DUE.with_for_update(skip_locked=True, of=D)

# PostgreSQL: claims of one endpoint take turns on its row. FOR NO KEY UPDATE does not
# block the FOR KEY SHARE that inserting a delivery takes; SKIP LOCKED never waits.
_LOCK_ENDPOINT = (
    sa.select(EP.c.endpoint_id)
    .where(EP.c.endpoint_id == _P("b_endpoint"))
    .with_for_update(key_share=True, skip_locked=True)
)
_IN_FLIGHT = (
    sa.select(D.c.delivery_id)
    .where(
        D.c.endpoint_id == _P("b_endpoint"),
        D.c.status == _PENDING,
        D.c.locked_until > _P("now"),
    )
    .limit(1)
)
# Each failed candidate excludes one endpoint; this bounds the transaction regardless.
_CLAIM_TRIES = 8

_TAKE_LEASE = (
    sa.update(D)
    .where(D.c.delivery_id == _P("b_id"), D.c.status == _PENDING, _LEASE_FREE)
    .values(
        attempts=D.c.attempts + 1,
        locked_until=_P("b_until"),
        lease_token=_P("b_token"),
        updated_at=_P("now"),
    )
)

# When the next delivery may become claimable: its due time, or later the end of the
# lease in flight on its endpoint (its own lease included).
_BUSY_UNTIL = (
    sa.select(_BUSY.c.endpoint_id, sa.func.max(_BUSY.c.locked_until).label("lease_end"))
    .where(_BUSY.c.status == _PENDING, _BUSY.c.locked_until.is_not(None))
    .group_by(_BUSY.c.endpoint_id)
    .subquery("busy_until")
)
_NEXT_WAKE = (
    sa.select(
        sa.func.min(
            sa.case(
                (_BUSY_UNTIL.c.lease_end > D.c.next_attempt_at, _BUSY_UNTIL.c.lease_end),
                else_=D.c.next_attempt_at,
            )
        )
    )
    .select_from(D)
    .join(EP, EP.c.endpoint_id == D.c.endpoint_id)
    .outerjoin(_BUSY_UNTIL, _BUSY_UNTIL.c.endpoint_id == D.c.endpoint_id)
    .where(D.c.status == _PENDING, _ENABLED)
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this sender holds a lease on, with everything needed to send it."""

    delivery_id: int
    attempt: int
    lease_token: str
    endpoint_id: int
    event_id: str
    event_type: str
    idempotency_key: str
    body: str
    url: str
    secret: str = field(repr=False)  # as stored: maybe encrypted (sealing.unseal)


# Built once: this runs inside every terminal transaction, on the dispatch path.
_INSERT_EVENT = sa.insert(EV)
_INSERT_DELIVERIES = sa.insert(D)


def insert_event(conn: Connection, event: Event, endpoint_ids: Sequence[int]) -> None:
    conn.execute(
        _INSERT_EVENT,
        {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "idempotency_key": event.idempotency_key,
            "body": event.body,
            "created_at": event.created_at,
        },
    )
    conn.execute(
        _INSERT_DELIVERIES,
        [
            {
                "event_id": event.event_id,
                "endpoint_id": endpoint_id,
                "status": _PENDING,
                "attempts": 0,
                "next_attempt_at": event.created_at,
                "created_at": event.created_at,
                "updated_at": event.created_at,
            }
            for endpoint_id in endpoint_ids
        ],
    )


def claim_due(
    conn: Connection, *, is_postgres: bool, lease_seconds: float, now: datetime
) -> Claimed | None:
    """Lease the most overdue delivery whose endpoint has none in flight.

    SQLite: write transactions run one at a time (BEGIN IMMEDIATE), so the query sees
    every lease. PostgreSQL: a concurrent claim's lease may be invisible to the query's
    snapshot; so the candidate's endpoint row is locked (claims of one endpoint take
    turns) and its leases are looked at again by a new statement, whose READ COMMITTED
    snapshot sees any claim committed before the lock was had. The conditional UPDATE
    makes one sender win a delivery.
    """
    skip: list[int] = []
    for _ in range(_CLAIM_TRIES):
        params = {"now": now, "skip": skip}
        row = conn.execute(_DUE_SKIP_LOCKED if is_postgres else _DUE, params).first()
        if row is None:
            return None
        if is_postgres:
            endpoint = {"b_endpoint": row.endpoint_id, "now": now}
            locked = conn.execute(_LOCK_ENDPOINT, endpoint).first() is not None
            if not locked or conn.execute(_IN_FLIGHT, endpoint).first() is not None:
                skip.append(row.endpoint_id)  # being claimed, or just claimed, elsewhere
                continue
        return _take(conn, row, lease_seconds=lease_seconds, now=now)
    return None


def _take(conn: Connection, row: Any, *, lease_seconds: float, now: datetime) -> Claimed | None:
    token = str(uuid.uuid4())
    taken = conn.execute(
        _TAKE_LEASE,
        {
            "b_id": row.delivery_id,
            "b_until": now + timedelta(seconds=lease_seconds),
            "b_token": token,
            "now": now,
        },
    )
    if taken.rowcount != 1:
        return None
    return Claimed(
        delivery_id=row.delivery_id,
        attempt=row.attempts + 1,
        lease_token=token,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        idempotency_key=row.idempotency_key,
        body=row.body,
        url=row.url,
        secret=row.secret,
    )


def next_wake(conn: Connection) -> datetime | None:
    value: datetime | None = conn.execute(_NEXT_WAKE).scalar()
    return value


def record_attempt(
    conn: Connection,
    claimed: Claimed,
    *,
    status: DeliveryStatus,
    next_attempt_at: datetime | None,
    status_code: int | None,
    error: str | None,
    now: datetime,
) -> bool:
    """Write an attempt's result if this sender still holds the lease (else: False)."""
    values: dict[str, Any] = {
        "status": status.value,
        "locked_until": None,
        "lease_token": None,
        "last_status_code": status_code,
        "last_error": error,
        "updated_at": now,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if status == DeliveryStatus.DELIVERED:
        values["delivered_at"] = now
    result = conn.execute(
        sa.update(D)
        .where(
            D.c.delivery_id == claimed.delivery_id,
            D.c.lease_token == claimed.lease_token,
            D.c.status == _PENDING,
        )
        .values(**values)
    )
    return result.rowcount == 1


_LISTED = [c for c in EP.c if c.name != "secret"]


def list_endpoints(conn: Connection) -> list[WebhookEndpoint]:
    """Endpoints without their secrets, and without credentials in their URLs (added
    before URLs with credentials were refused)."""
    rows = conn.execute(sa.select(*_LISTED).order_by(EP.c.endpoint_id))
    return [WebhookEndpoint.model_validate({**r._mapping, "url": redact_url(r.url)}) for r in rows]


def list_views(
    conn: Connection,
    *,
    status: DeliveryStatus | None = None,
    delivery_id: int | None = None,
    limit: int | None = None,
) -> list[WebhookDeliveryView]:
    stmt = (
        sa.select(D, EV.c.event_type, EV.c.idempotency_key, EP.c.url)
        .join(EV, EV.c.event_id == D.c.event_id)
        .join(EP, EP.c.endpoint_id == D.c.endpoint_id)
        .order_by(D.c.delivery_id)
    )
    if status is not None:
        stmt = stmt.where(D.c.status == status.value)
    if delivery_id is not None:
        stmt = stmt.where(D.c.delivery_id == delivery_id)
    if limit:
        stmt = stmt.limit(limit)
    return [
        WebhookDeliveryView.model_validate({**r._mapping, "url": redact_url(r.url)})
        for r in conn.execute(stmt)
    ]


def reset_to_pending(
    conn: Connection, *, now: datetime, delivery_id: int | None = None
) -> list[int]:
    """Send again from attempt one: one delivery (any status), or every FAILED one."""
    cond = (
        D.c.delivery_id == delivery_id
        if delivery_id is not None
        else D.c.status == DeliveryStatus.FAILED.value
    )
    rows = conn.execute(
        sa.update(D)
        .where(cond)
        .values(
            status=_PENDING,
            attempts=0,
            next_attempt_at=now,
            locked_until=None,
            lease_token=None,
            updated_at=now,
        )
        .returning(D.c.delivery_id)
    ).all()
    if delivery_id is not None and not rows:
        raise WebhookDeliveryNotFoundError(f"webhook delivery {delivery_id} does not exist")
    return [r.delivery_id for r in rows]


def delete_endpoint_rows(conn: Connection, endpoint_id: int) -> int:
    """Remove an endpoint with its deliveries, and the events no other endpoint awaits."""
    event_ids = list(
        conn.execute(sa.select(D.c.event_id).where(D.c.endpoint_id == endpoint_id)).scalars()
    )
    conn.execute(sa.delete(D).where(D.c.endpoint_id == endpoint_id))
    if event_ids:
        awaited = sa.select(D.c.event_id).where(D.c.event_id == EV.c.event_id).exists()
        conn.execute(sa.delete(EV).where(EV.c.event_id.in_(event_ids), ~awaited))
    return conn.execute(sa.delete(EP).where(EP.c.endpoint_id == endpoint_id)).rowcount
