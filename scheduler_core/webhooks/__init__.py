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
    InvalidWebhookSecretError,
    InvalidWebhookUrlError,
    UnknownWebhookEventError,
    WebhookDeliveryNotFoundError,
    WebhookEndpointNotFoundError,
    WebhookError,
    WebhookSecretKeyError,
    WebhookTargetRefusedError,
)
from scheduler_core.webhooks.events import EVENT_TYPES
from scheduler_core.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryView,
    WebhookEndpoint,
)
from scheduler_core.webhooks.settings import WebhookSettings
from scheduler_core.webhooks.signing import MIN_SECRET_LENGTH, verify

__all__ = [
    "EVENT_TYPES",
    "MIN_SECRET_LENGTH",
    "DeliveryStatus",
    "InvalidWebhookError",
    "InvalidWebhookSecretError",
    "InvalidWebhookUrlError",
    "UnknownWebhookEventError",
    "WebhookDelivery",
    "WebhookDeliveryNotFoundError",
    "WebhookDeliveryView",
    "WebhookDispatcher",
    "WebhookEndpoint",
    "WebhookEndpointNotFoundError",
    "WebhookError",
    "WebhookSecretKeyError",
    "WebhookSettings",
    "WebhookTargetRefusedError",
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
