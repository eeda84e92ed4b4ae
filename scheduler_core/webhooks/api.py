"""The webhook API: endpoints, deliveries, redelivery, and installing the hooks on a service."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.values import utcnow
from scheduler_core.webhooks import deliveries
from scheduler_core.webhooks.delivery import WebhookDispatcher
from scheduler_core.webhooks.errors import (
    InvalidWebhookError,
    InvalidWebhookSecretError,
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
from scheduler_core.webhooks.sealing import PREFIX, seal
from scheduler_core.webhooks.settings import WebhookSettings
from scheduler_core.webhooks.signing import MAX_SECRET_LENGTH, MIN_SECRET_LENGTH, generate_secret
from scheduler_core.webhooks.targets import check_target, check_url, redact_url

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


def check_secret(secret: object) -> str:
    """The secret as given, or one InvalidWebhookSecretError naming its problem.

    Anyone who knows or guesses the secret can forge events, so it must be long: at
    least MIN_SECRET_LENGTH characters (a generated one has 49).
    """
    if not isinstance(secret, str):
        raise InvalidWebhookSecretError(
            f"webhook secret must be a string, not {type(secret).__name__}"
        )
    if not secret.strip():
        raise InvalidWebhookSecretError(
            "webhook secret must not be empty; omit it to have one generated"
        )
    # The messages below never repeat the secret, only what is wrong with it.
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in secret) or secret != secret.strip():
        raise InvalidWebhookSecretError(
            "webhook secret must be one line without control characters or surrounding "
            "spaces (a secret file holds just the secret, one trailing newline allowed)"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidWebhookSecretError(
            f"webhook secret is too short ({len(secret)} characters): use at least "
            f"{MIN_SECRET_LENGTH} random characters so it can not be guessed, or omit it "
            "to have one generated"
        )
    if len(secret) > MAX_SECRET_LENGTH:
        raise InvalidWebhookSecretError(
            f"webhook secret is too long ({len(secret)} characters): use at most "
            f"{MAX_SECRET_LENGTH}"
        )
    if secret.startswith(PREFIX):
        raise InvalidWebhookSecretError(
            f"webhook secret must not start with {PREFIX!r} (it marks an encrypted secret)"
        )
    return secret


def _settings(svc: SchedulerService) -> WebhookSettings:
    dispatcher = _installed.get(svc)
    return dispatcher.settings if dispatcher is not None else WebhookSettings()


def add_webhook_endpoint(
    svc: SchedulerService,
    url: str,
    *,
    secret: str | None = None,
    events: Sequence[str] | None = None,
) -> WebhookEndpoint:
    """Register a receiver. Without `secret` one is generated: read it from the result.

    Every check runs before anything is written. Unless the `allow_private` setting is
    on, a host that is or resolves to a non-global address is refused.
    """
    checked_url = check_url(url)
    if isinstance(events, str):
        raise InvalidWebhookError(
            f"events must be a list of event names, got the string {events!r}"
        )
    filters = check_filter(list(events or []))
    plain = generate_secret() if secret is None else check_secret(secret)
    if not _settings(svc).allow_private:
        check_target(checked_url)
    values = {
        "url": checked_url,
        "secret": seal(plain),
        "events": filters,
        "enabled": True,
        "created_at": utcnow(),
    }
    row = svc.db.write(
        lambda c: c.execute(sa.insert(ENDPOINTS).values(**values).returning(*ENDPOINTS.c)).one()
    )
    return WebhookEndpoint.model_validate({**row._mapping, "secret": plain})


def list_webhook_endpoints(svc: SchedulerService) -> list[WebhookEndpoint]:
    """Endpoints with `secret` None and no credentials in `url`: safe to show."""
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

    row = svc.db.write(tx)._mapping
    return WebhookEndpoint.model_validate({**row, "secret": None, "url": redact_url(row["url"])})


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
