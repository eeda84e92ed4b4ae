"""Outbox tables: endpoints, events (one per state change) and deliveries (event x endpoint).

An event's body is stored as the exact bytes that are signed and sent, so every
attempt and every endpoint receives an identical payload.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from scheduler_core.columns import JSONType, UTCDateTime
from scheduler_core.values import utcnow


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


# A receiver of events; `events` empty means every event. `secret` is the signing
# secret only as returned by add_webhook_endpoint (shown once); listings carry None, and
# the stored column may hold it encrypted (sealing.py). Never in a repr.
class WebhookEndpoint(SQLModel):
    endpoint_id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_type=sa.Text, nullable=False)
    secret: str | None = Field(default=None, repr=False, sa_type=sa.Text, nullable=False)
    events: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    enabled: bool = Field(default=True, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# One emitted event, written in the transaction of the state change it reports.
class WebhookEvent(SQLModel):
    event_id: str = Field(primary_key=True, sa_type=sa.String(36))
    event_type: str = Field(sa_type=sa.String(64), nullable=False)
    idempotency_key: str = Field(sa_type=sa.String(64), nullable=False)
    body: str = Field(sa_type=sa.Text, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# The state of sending one event to one endpoint; survives restarts.
class WebhookDelivery(SQLModel):
    delivery_id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="webhook_event.event_id", sa_type=sa.String(36))
    endpoint_id: int = Field(foreign_key="webhook_endpoint.endpoint_id", nullable=False)
    status: DeliveryStatus = Field(
        default=DeliveryStatus.PENDING, sa_type=sa.String(16), nullable=False
    )
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # A sender's lease: while it is in the future the delivery is in flight; after a
    # crash it runs out and any process may take the delivery over.
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_token: str | None = Field(default=None, sa_type=sa.String(36))
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookDeliveryView(WebhookDelivery):
    """A delivery with the event and endpoint it belongs to, for listings."""

    event_type: str
    idempotency_key: str
    url: str


class WebhookEndpointRecord(WebhookEndpoint, table=True):
    __tablename__ = "webhook_endpoint"


class WebhookEventRecord(WebhookEvent, table=True):
    __tablename__ = "webhook_event"


class WebhookDeliveryRecord(WebhookDelivery, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_delivery_event", "event_id"),
        sa.Index("ix_webhook_delivery_endpoint", "endpoint_id"),
        # Whether an endpoint has a delivery in flight, asked on every claim.
        sa.Index("ix_webhook_delivery_endpoint_status", "endpoint_id", "status"),
    )


ENDPOINTS: sa.Table = WebhookEndpointRecord.__table__  # type: ignore[attr-defined]
EVENTS: sa.Table = WebhookEventRecord.__table__  # type: ignore[attr-defined]
DELIVERIES: sa.Table = WebhookDeliveryRecord.__table__  # type: ignore[attr-defined]
TABLES = (ENDPOINTS, EVENTS, DELIVERIES)


def create_tables(engine: sa.Engine) -> None:
    """Create the outbox tables and their indexes if missing; safe on every open.

    create_all adds indexes only with a new table; an index added by a later release is
    created here on tables that exist already, and an old secret column widened.
    """
    SQLModel.metadata.create_all(engine, tables=list(TABLES))
    with engine.connect() as conn:
        present = {i["name"] for i in sa.inspect(conn).get_indexes(DELIVERIES.name)}
        secret = next(
            c for c in sa.inspect(conn).get_columns(ENDPOINTS.name) if c["name"] == "secret"
        )
    # Releases before encryption at rest stored secrets as VARCHAR(128): too short for
    # an encrypted one on PostgreSQL (SQLite does not enforce lengths).
    if engine.dialect.name == "postgresql" and getattr(secret["type"], "length", None):
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {ENDPOINTS.name} ALTER COLUMN secret TYPE TEXT"))
    missing = [i for i in DELIVERIES.indexes if i.name not in present]
    if missing:
        with engine.begin() as conn:
            for index in missing:
                conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
