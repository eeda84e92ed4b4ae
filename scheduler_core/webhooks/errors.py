"""Webhook errors, inside the scheduler's one hierarchy."""

from __future__ import annotations

from scheduler_core.errors import ConfigurationError, NotFoundError, SchedulerError


class WebhookError(SchedulerError):
    """A webhook operation was refused."""


class InvalidWebhookError(WebhookError, ValueError):
    """A webhook endpoint request is invalid; nothing was written."""


class InvalidWebhookUrlError(InvalidWebhookError):
    """A webhook URL must be an absolute http:// or https:// URL with a host."""


class UnknownWebhookEventError(InvalidWebhookError):
    """The event filter names an event that is never emitted."""


class WebhookEndpointNotFoundError(NotFoundError):
    """No webhook endpoint with this id."""


class WebhookDeliveryNotFoundError(NotFoundError):
    """No webhook delivery with this id."""


class InvalidWebhookSecretError(InvalidWebhookError):
    """A webhook secret must be long enough not to be guessed, on one line, without
    control characters."""


class WebhookTargetRefusedError(InvalidWebhookUrlError):
    """The URL's host is, or resolves to, a loopback, private, link-local or other
    non-global address, and LLMSCHED_WEBHOOK_ALLOW_PRIVATE is not set."""


class WebhookSecretKeyError(WebhookError, ConfigurationError):
    """An endpoint's secret is encrypted and LLMSCHED_SECRET_KEY can not decrypt it."""
