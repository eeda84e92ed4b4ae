"""What a model call costs: USD per million input and output tokens, per `provider/model`.

The defaults are the providers' list prices as published in late 2025 (docs/outputs.md
gives the table and the date); prices change, so check them and correct or extend them
in a file named by LLMSCHED_PRICES_FILE. Local providers (Ollama, offline) cost nothing;
a hosted model with no known price costs None (unknown), with one warning per model and
process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.library.errors import PricesError
from flows.llm import resolve_model
from flows.llm.providers import PROVIDERS

log = logging.getLogger(__name__)

PRICES_FILE_ENV = "LLMSCHED_PRICES_FILE"
PRICES_FILE_MAX_BYTES = 1024 * 1024
"""A price table is a few kilobytes; a file larger than 1 MiB is refused unread."""
PRICES_TAKEN = "2025-11"
"""When the default prices were taken from the providers' pricing pages."""


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


FREE = Price(0.0, 0.0)

DEFAULT_PRICES: dict[str, Price] = {
    "openai/gpt-5": Price(1.25, 10.00),
    "openai/gpt-5-mini": Price(0.25, 2.00),
    "openai/gpt-5-nano": Price(0.05, 0.40),
    "openai/gpt-4.1": Price(2.00, 8.00),
    "openai/gpt-4.1-mini": Price(0.40, 1.60),
    "openai/gpt-4.1-nano": Price(0.10, 0.40),
    "openai/gpt-4o": Price(2.50, 10.00),
    "openai/gpt-4o-mini": Price(0.15, 0.60),
    "openai/o3": Price(2.00, 8.00),
    "openai/o3-mini": Price(1.10, 4.40),
    "openai/o4-mini": Price(1.10, 4.40),
    "anthropic/claude-opus-4-5": Price(5.00, 25.00),
    "anthropic/claude-opus-4-1": Price(15.00, 75.00),
    "anthropic/claude-opus-4-0": Price(15.00, 75.00),
    "anthropic/claude-sonnet-4-5": Price(3.00, 15.00),
    "anthropic/claude-sonnet-4-0": Price(3.00, 15.00),
    "anthropic/claude-3-7-sonnet": Price(3.00, 15.00),
    "anthropic/claude-haiku-4-5": Price(1.00, 5.00),
    "anthropic/claude-3-5-haiku": Price(0.80, 4.00),
}
"""List prices in USD per million tokens, taken PRICES_TAKEN; see the module docstring."""

_VERSION_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
"""A dated snapshot or alias of a priced model: `claude-sonnet-4-5-20250929`,
`gpt-4o-2024-08-06`, `claude-3-5-haiku-latest` cost what the model costs."""

_warned: set[str] = set()
_cache: dict[tuple[str, int, int], dict[str, Price]] = {}
_lock = threading.Lock()


def is_hosted(model: str) -> bool:
    """A paid API (OpenAI, Anthropic) rather than a local model (Ollama, offline)."""
    return resolve_model(model).resource == "external"


def price_of(model: str) -> Price | None:
    """The price of `model` (`provider/name`): FREE for a local provider; the prices
    file's entry, else the default; None for a hosted model priced nowhere."""
    if not is_hosted(model):
        return FREE
    prices = {**DEFAULT_PRICES, **file_prices()}
    found = prices.get(model)
    if found is None:
        found = prices.get(_VERSION_SUFFIX.sub("", model))
    return found


def cost_usd(model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
    """What a call cost, or None when the model's price is unknown (warned once)."""
    price = price_of(model)
    if price is None:
        if model not in _warned:
            _warned.add(model)
            log.warning(
                "action=price_unknown model=%s fix='add its price to the file named by %s'",
                model,
                PRICES_FILE_ENV,
            )
        return None
    return price.cost(input_tokens or 0, output_tokens or 0)


def file_prices() -> dict[str, Price]:
    """The entries of the LLMSCHED_PRICES_FILE file ({} when unset), read again only
    when the file changes."""
    name = os.environ.get(PRICES_FILE_ENV, "").strip()
    if not name:
        return {}
    path = Path(name).expanduser()
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc.strerror or exc}") from None
    key = (str(path), info.st_mtime_ns, info.st_size)
    with _lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = parse_prices(_read(path), path)
        return _cache[key]


def _read(path: Path) -> str:
    """The file's text; anything but a regular file of at most PRICES_FILE_MAX_BYTES of
    UTF-8 is refused without reading on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a directory, FIFO or device
        os.close(fd)
        raise _bad(path, "is not a regular file: name a YAML or JSON file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(PRICES_FILE_MAX_BYTES + 1)
    if len(data) > PRICES_FILE_MAX_BYTES:
        raise _bad(path, f"is larger than {PRICES_FILE_MAX_BYTES} bytes: a price table is small")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(path, "is not UTF-8 text: write YAML or JSON") from None


def parse_prices(text: str, path: Path) -> dict[str, Price]:
    """A mapping `provider/model: {input: USD, output: USD}` (per million tokens)."""
    import yaml

    try:
        data: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _bad(path, f"is not valid YAML or JSON ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _bad(path, f"must be a mapping of models to prices, got {type(data).__name__}")
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        prices[_model_key(model, path)] = _price(model, entry, path)
    return prices


def _model_key(model: object, path: Path) -> str:
    if not isinstance(model, str):
        raise _bad(path, f"key {model!r} is not a 'provider/model' string")
    provider, sep, name = model.partition("/")
    if not sep or not name.strip() or provider not in PROVIDERS:
        raise _bad(
            path,
            f"key {model!r} is not 'provider/model' with a provider among "
            f"{', '.join(sorted(PROVIDERS))}",
        )
    return model


def _price(model: str, entry: object, path: Path) -> Price:
    if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
        raise _bad(path, f"{model!r} must map to exactly {{input: USD, output: USD}}")
    values = []
    for side in ("input", "output"):
        value = entry[side]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0:
            raise _bad(path, f"{model!r} {side} price {value!r} is not a number of USD at least 0")
        values.append(float(value))
    return Price(*values)


def _bad(path: Path, problem: str) -> PricesError:
    return PricesError(
        f"prices file {str(path)!r} ({PRICES_FILE_ENV}) {problem}; expected e.g. "
        "'openai/gpt-4o-mini: {input: 0.15, output: 0.60}' (USD per million tokens)"
    )
