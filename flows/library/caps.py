"""Spending caps for hosted APIs: a call that would take the day's or the group's hosted
spending past its cap is refused before it is made (SpendingCapReached), so a nightly
batch cannot run up a bill. Local models (Ollama, offline) are never capped.

The check compares what was spent (the usage table) plus this call's estimate with the
cap. Calls running at the same moment on other workers are not yet in the table, so
the cap can be passed by at most what those calls cost.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date

from flows.library.context import RunContext, current_run_context
from flows.library.errors import SpendingCapReached, UnknownPriceError
from flows.library.prices import PRICES_FILE_ENV, is_hosted, price_of
from flows.library.usage import hosted_spent
from flows.llm import Message
from scheduler_core.errors import ConfigurationError
from scheduler_core.values import utcnow

DAILY_CAP_ENV = "LLMSCHED_DAILY_SPEND_CAP_USD"
GROUP_CAP_ENV = "LLMSCHED_GROUP_SPEND_CAP_USD"
CHARS_PER_TOKEN = 4
"""The estimate's input tokens: a prompt's characters / 4, about right for English."""
DEFAULT_OUTPUT_TOKENS = 4096
"""The estimate's output tokens for a call that sets no `max_tokens`."""


@dataclass(frozen=True, slots=True)
class SpendingCaps:
    daily_usd: float | None = None
    group_usd: float | None = None


def spending_caps() -> SpendingCaps:
    """The caps set in the environment (unset or blank: no cap); read at each check."""
    return SpendingCaps(daily_usd=_cap(DAILY_CAP_ENV), group_usd=_cap(GROUP_CAP_ENV))


def _cap(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(
            f"{name}={raw!r} is not an amount of USD: set a number at least 0, such as "
            "5 or 0.50, or unset it for no cap"
        )
    return value


def prompt_chars(messages: Sequence[Message]) -> int:
    return sum(len(str(message.get("content", ""))) for message in messages)


def estimate_usd(model: str, *, prompt_chars: int, max_tokens: int | None) -> float | None:
    """A call's cost at most, roughly: prompt characters / 4 in, `max_tokens` out (4096
    when unset); 0 for local models, None when the hosted model's price is unknown."""
    price = price_of(model)
    if price is None:
        return None
    input_tokens = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    return price.cost(input_tokens, DEFAULT_OUTPUT_TOKENS if max_tokens is None else max_tokens)


def check_spending(
    model: str,
    *,
    group_id: int | None,
    estimate_usd: float | None,
    today: date | None = None,
    db: str | None = None,
) -> None:
    """Refuse a hosted call that would pass a cap: SpendingCapReached names the cap, what
    was spent and the setting; UnknownPriceError when a cap is set and the model has no
    price. Nothing is read when the model is local or no cap is set."""
    if not is_hosted(model):
        return
    caps = spending_caps()
    if caps.daily_usd is None and (caps.group_usd is None or group_id is None):
        return
    if estimate_usd is None:
        setting = DAILY_CAP_ENV if caps.daily_usd is not None else GROUP_CAP_ENV
        raise UnknownPriceError(
            f"no price is known for {model}, so its cost cannot be counted against the "
            f"spending cap {setting}; the call was not made: add its price to the file "
            f"named by {PRICES_FILE_ENV}, e.g. '{model}: {{input: 1.0, output: 4.0}}' "
            "(USD per million tokens)"
        )
    day = today or utcnow().astimezone(UTC).date()
    if caps.daily_usd is not None:
        spent = hosted_spent(day=day, db=db)
        _check(
            spent,
            estimate_usd,
            caps.daily_usd,
            what=f"the daily spending cap ({day.isoformat()}, UTC)",
            setting=DAILY_CAP_ENV,
            model=model,
            fix="raise the cap, or wait for the next UTC day",
        )
    if caps.group_usd is not None and group_id is not None:
        spent = hosted_spent(group_id=group_id, db=db)
        _check(
            spent,
            estimate_usd,
            caps.group_usd,
            what=f"the spending cap of group {group_id}",
            setting=GROUP_CAP_ENV,
            model=model,
            fix="raise the cap",
        )


def _check(
    spent: float, estimate: float, cap: float, *, what: str, setting: str, model: str, fix: str
) -> None:
    if spent < cap and spent + estimate <= cap:
        return
    raise SpendingCapReached(
        f"{what} is reached: ${spent:.4f} spent on hosted APIs, and this {model} call, "
        f"estimated at ${estimate:.4f}, would pass {setting}=${cap:.4f}; the call was not "
        f"made: {fix}"
    )


def guard_call(
    model: str,
    messages: Sequence[Message],
    *,
    max_tokens: int | None,
    context: RunContext | None = None,
    db: str | None = None,
) -> float | None:
    """Estimate a call and check it against the caps (see check_spending) for the group of
    `context`, else of the current flow run; returns the estimate."""
    ctx = context if context is not None else current_run_context()
    estimate = estimate_usd(model, prompt_chars=prompt_chars(messages), max_tokens=max_tokens)
    check_spending(model, group_id=ctx.group_id, estimate_usd=estimate, db=db)
    return estimate
