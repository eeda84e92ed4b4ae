"""One exception tree for every provider, so callers and retry policies need not know which
wire protocol failed. Each message names the problem and the fix, and is redacted: it goes
into run errors, logs and webhooks, so no credential and no megabyte of server output may."""

from __future__ import annotations

from scheduler_core.redaction import redact


class LLMError(Exception):
    """Root of all LLM failures; `retryable` tells a scheduler whether trying again can help.

    The message is passed through `scheduler_core.redaction.redact`: URL userinfo, keys and
    registered secrets are masked, and it is cut to 4096 characters.
    """

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class UnknownModelError(LLMError):
    """The model string is malformed, names no known provider, or the server lacks the model."""


class AuthenticationError(LLMError):
    """No API key was found, or the server rejected it (HTTP 401/403)."""


class LLMConnectionError(LLMError):
    """The server could not be reached at the configured base URL."""

    retryable = True


class LLMTimeoutError(LLMError):
    """The server went silent for longer than the read timeout, or the whole call took longer
    than its deadline (`call_timeout`)."""

    retryable = True


class LLMResponseError(LLMError):
    """The server failed (5xx, 429), sent a response that cannot be understood, or sent more
    than `max_response_bytes`."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = status_code is None or retryable_status(status_code)


def retryable_status(status_code: int) -> bool:
    """Rate limits and server faults pass; other client errors repeat on every try."""
    return status_code == 429 or status_code >= 500
