"""The library's errors, each in the tree its caller already handles: a lookup or a bad
setting is a `SchedulerError` (the CLI's exit 2), spending refused before a model call is
an `LLMError` (it fails the run, like any other model failure)."""

from __future__ import annotations

from flows.llm.errors import LLMError
from scheduler_core.errors import ConfigurationError, InvalidJobError, NotFoundError


class OutputNotFoundError(NotFoundError):
    """No output with this id in the library."""


class InvalidQueryError(InvalidJobError):
    """A library query's argument is not usable (an unknown kind, a bad limit, ...)."""


class PricesError(ConfigurationError):
    """The prices file (LLMSCHED_PRICES_FILE) cannot be read or is not a valid price table."""


class SpendingCapReached(LLMError):
    """A hosted-API call would pass a spending cap; it was not made.

    Not `retryable`: the scheduler still applies its retry rule to every failure, and each
    automatic attempt is refused the same way before any model call, at no cost, until
    the day turns (daily cap) or the cap is raised."""

    retryable = False


class UnknownPriceError(LLMError):
    """A spending cap is set, and the hosted model's price is unknown, so the call's cost
    cannot be counted against it; the call was not made."""

    retryable = False
