"""Webhooks: signed, at-least-once delivery of run and group events through an outbox."""

from scheduler_core.webhooks.api import (
    add_webhook_endpoint,
    install_webhooks,
    list_webhook_deliveries,
    list_webhook_endpoints,
    redeliver,
    redeliver_failed,
    remove_webhook_endpoint,
    set_webhook_endpoint_enabled,
)
from scheduler_core.webhooks.delivery import WebhookDispatcher
from scheduler_core.webhooks.errors import (
    InvalidWebhookError,
    InvalidWebhookUrlError,
    UnknownWebhookEventError,
    WebhookDeliveryNotFoundError,
    WebhookEndpointNotFoundError,
    WebhookError,
)
from scheduler_core.webhooks.events import EVENT_TYPES
from scheduler_core.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryView,
    WebhookEndpoint,
)
from scheduler_core.webhooks.settings import WebhookSettings
from scheduler_core.webhooks.signing import verify

__all__ = [
    "EVENT_TYPES",
    "DeliveryStatus",
    "InvalidWebhookError",
    "InvalidWebhookUrlError",
    "UnknownWebhookEventError",
    "WebhookDelivery",
    "WebhookDeliveryNotFoundError",
    "WebhookDeliveryView",
    "WebhookDispatcher",
    "WebhookEndpoint",
    "WebhookEndpointNotFoundError",
    "WebhookError",
    "WebhookSettings",
    "add_webhook_endpoint",
    "install_webhooks",
    "list_webhook_deliveries",
    "list_webhook_endpoints",
    "redeliver",
    "redeliver_failed",
    "remove_webhook_endpoint",
    "set_webhook_endpoint_enabled",
    "verify",
]
