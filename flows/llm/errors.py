"""One exception tree for every provider, so callers and retry policies need not know which
wire protocol failed. Each message names the problem and the fix."""

from __future__ import annotations


class LLMError(Exception):
    """Root of all LLM failures; `retryable` tells a scheduler whether trying again can help."""

    retryable: bool = False


class UnknownModelError(LLMError):
    """The model string is malformed, names no known provider, or the server lacks the model."""


class AuthenticationError(LLMError):
    """No API key was found, or the server rejected it (HTTP 401/403)."""


class LLMConnectionError(LLMError):
    """The server could not be reached at the configured base URL."""

    retryable = True


class LLMTimeoutError(LLMError):
    """The server went silent for longer than the read timeout."""

    retryable = True


class LLMResponseError(LLMError):
    """The server failed (5xx, 429) or sent a response that cannot be understood."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = status_code is None or retryable_status(status_code)


def retryable_status(status_code: int) -> bool:
    """Rate limits and server faults pass; other client errors repeat on every try."""
    return status_code == 429 or status_code >= 500
