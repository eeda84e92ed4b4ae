"""The webhook API: endpoints, deliveries, redelivery, and installing the hooks on a service."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.values import utcnow
from scheduler_core.webhooks import deliveries
from scheduler_core.webhooks.attempt import url_refusal
from scheduler_core.webhooks.delivery import WebhookDispatcher
from scheduler_core.webhooks.errors import (
    InvalidWebhookError,
    InvalidWebhookUrlError,
    WebhookEndpointNotFoundError,
)
from scheduler_core.webhooks.events import check_filter
from scheduler_core.webhooks.models import (
    ENDPOINTS,
    DeliveryStatus,
    WebhookDeliveryView,
    WebhookEndpoint,
    create_tables,
)
from scheduler_core.webhooks.outbox import WebhooksPlugin, request_wake
from scheduler_core.webhooks.settings import WebhookSettings
from scheduler_core.webhooks.signing import generate_secret

if TYPE_CHECKING:  # the service may import this module to install webhooks itself
    from scheduler_core.service import SchedulerService

_installed: weakref.WeakKeyDictionary[SchedulerService, WebhookDispatcher] = (
    weakref.WeakKeyDictionary()
)


def install_webhooks(
    svc: SchedulerService, settings: WebhookSettings | None = None, **overrides: Any
) -> WebhookDispatcher:
    """Add the webhooks plugin to `svc` and return its (not yet started) sender.

    Idempotent: a second call returns the first dispatcher, with its settings replaced
    when new ones are given. Keyword overrides are WebhookSettings fields, e.g.
    ``timeout=2, backoff_seconds=0.1``.
    """
    merged = (settings or WebhookSettings()).model_dump()
    merged.update(overrides)
    resolved = WebhookSettings.model_validate(merged)
    existing = _installed.get(svc)
    if existing is not None:
        if settings is not None or overrides:
            existing.settings = resolved
        return existing
    create_tables(svc.db.engine)
    dispatcher = WebhookDispatcher(svc.db, settings=resolved, is_postgres=svc.store.is_postgres)
    svc.add_plugin(WebhooksPlugin(dispatcher))
    _installed[svc] = dispatcher
    return dispatcher


def _check_url(url: str) -> str:
    """The URL as stored, if the sender's HTTP client can send to it."""
    reason = url_refusal(url.strip()) if isinstance(url, str) else "not a string"
    if reason is not None:
        raise InvalidWebhookUrlError(
            f"webhook URL {url!r} is not an absolute http:// or https:// URL with a host "
            f"that the HTTP client accepts ({reason}), e.g. https://example.com/hooks/llmsched"
        )
    return url.strip()


def add_webhook_endpoint(
    svc: SchedulerService,
    url: str,
    *,
    secret: str | None = None,
    events: Sequence[str] | None = None,
) -> WebhookEndpoint:
    """Register a receiver. Without `secret` one is generated: read it from the result."""
    checked_url = _check_url(url)
    if isinstance(events, str):
        raise InvalidWebhookError(
            f"events must be a list of event names, got the string {events!r}"
        )
    filters = check_filter(list(events or []))
    if secret is not None and not secret.strip():
        raise InvalidWebhookError("webhook secret must not be empty; omit it to generate one")
    values = {
        "url": checked_url,
        "secret": secret or generate_secret(),
        "events": filters,
        "enabled": True,
        "created_at": utcnow(),
    }
    row = svc.db.write(
        lambda c: c.execute(sa.insert(ENDPOINTS).values(**values).returning(*ENDPOINTS.c)).one()
    )
    return WebhookEndpoint.model_validate(row._mapping)


def list_webhook_endpoints(svc: SchedulerService) -> list[WebhookEndpoint]:
    return svc.db.read(deliveries.list_endpoints)


def set_webhook_endpoint_enabled(
    svc: SchedulerService, endpoint_id: int, enabled: bool
) -> WebhookEndpoint:
    """A disabled endpoint gets no new events; its pending deliveries wait until re-enabled."""

    def tx(conn: Connection) -> Any:
        row = conn.execute(
            sa.update(ENDPOINTS)
            .where(ENDPOINTS.c.endpoint_id == endpoint_id)
            .values(enabled=enabled)
            .returning(*ENDPOINTS.c)
        ).first()
        if row is None:
            raise WebhookEndpointNotFoundError(f"webhook endpoint {endpoint_id} does not exist")
        request_wake(conn)
        return row

    return WebhookEndpoint.model_validate(svc.db.write(tx)._mapping)


def remove_webhook_endpoint(svc: SchedulerService, endpoint_id: int) -> None:
    """Delete an endpoint and its deliveries (pending ones are dropped, not sent)."""
    removed = svc.db.write(lambda c: deliveries.delete_endpoint_rows(c, endpoint_id))
    if not removed:
        raise WebhookEndpointNotFoundError(f"webhook endpoint {endpoint_id} does not exist")


def list_webhook_deliveries(
    svc: SchedulerService,
    status: DeliveryStatus | str | None = None,
    *,
    limit: int | None = None,
) -> list[WebhookDeliveryView]:
    wanted = _status(status)
    return svc.db.read(lambda c: deliveries.list_views(c, status=wanted, limit=limit))


def redeliver(svc: SchedulerService, delivery_id: int) -> WebhookDeliveryView:
    """Send a delivery again from its first attempt, whatever its status."""

    def tx(conn: Connection) -> WebhookDeliveryView:
        deliveries.reset_to_pending(conn, now=utcnow(), delivery_id=delivery_id)
        request_wake(conn)
        (view,) = deliveries.list_views(conn, delivery_id=delivery_id)
        return view

    return svc.db.write(tx)


def redeliver_failed(svc: SchedulerService) -> int:
    """Send every FAILED delivery again; the number reset."""

    def tx(conn: Connection) -> int:
        ids = deliveries.reset_to_pending(conn, now=utcnow())
        request_wake(conn)
        return len(ids)

    return svc.db.write(tx)


def _status(status: DeliveryStatus | str | None) -> DeliveryStatus | None:
    if status is None:
        return None
    try:
        return DeliveryStatus(status.upper() if isinstance(status, str) else status)
    except ValueError:
        valid = ", ".join(s.value for s in DeliveryStatus)
        raise InvalidWebhookError(f"unknown delivery status {status!r}; valid: {valid}") from None
