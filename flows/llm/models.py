"""Plain data passed between the public API and the providers."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar

from flows.llm.errors import LLMResponseError

Resource = Literal["ollama", "external", "local"]
"""What a model occupies while it runs: the scheduler admits one `ollama` job at a time."""

Message = Mapping[str, Any]
TokenCallback = Callable[[str], None]

DEFAULT_TIMEOUT = 120.0
"""Seconds the server may stay silent mid-generation; long, since local models load slowly."""

CALL_TIMEOUT_ENV = "LLMSCHED_LLM_CALL_TIMEOUT_SECONDS"
DEFAULT_CALL_TIMEOUT = 600.0
"""Seconds one whole call may take, however steadily the server streams: a server that never
stops would otherwise hold the job (and the one `ollama` slot) for ever."""

MAX_RESPONSE_BYTES_ENV = "LLMSCHED_LLM_MAX_RESPONSE_BYTES"
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Bytes of response body read before the call fails; a reply for a pipeline is far smaller."""

CHARS_PER_TOKEN = 16
"""The most characters a reply may average per token before it counts as over `max_tokens`.
Real tokens average about 4, so this only catches a server that ignores the limit."""

MAX_TEMPERATURE = 2.0
"""The widest range any provider accepts (OpenAI's); Anthropic's ends at 1."""

_N = TypeVar("_N", int, float)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    name: str
    resource: Resource

    def __str__(self) -> str:
        return f"{self.provider}/{self.name}"


def default_call_timeout() -> float:
    """`LLMSCHED_LLM_CALL_TIMEOUT_SECONDS`, else 600; read at each call."""
    return _positive_from_env(CALL_TIMEOUT_ENV, DEFAULT_CALL_TIMEOUT, float, "number of seconds")


def default_max_response_bytes() -> int:
    """`LLMSCHED_LLM_MAX_RESPONSE_BYTES`, else 4 MiB; read at each call."""
    return _positive_from_env(
        MAX_RESPONSE_BYTES_ENV, DEFAULT_MAX_RESPONSE_BYTES, int, "whole number of bytes"
    )


def _positive_from_env(name: str, default: _N, kind: Callable[[str], _N], what: str) -> _N:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not (0 < value < math.inf):
        raise ValueError(f"{name}={raw!r} is not a positive {what}; unset it for {default}")
    return value


class CompletionOptions(TypedDict, total=False):
    json_mode: bool
    max_tokens: int | None
    timeout: float
    call_timeout: float
    max_response_bytes: int
    on_token: TokenCallback | None
    base_url: str | None
    temperature: float | None


@dataclass(frozen=True)
class CompletionRequest:
    """One call. `timeout`: seconds the server may stay silent; `call_timeout`: seconds the
    whole call may take; `max_response_bytes`: body bytes read before the call fails;
    `max_tokens`: sent to the server and enforced on the reply (see `StreamState`);
    `base_url`: the server to call instead of the provider's configured one; `temperature`:
    sampling temperature, 0 to 2 (None: the server's default, and nothing is sent)."""

    spec: ModelSpec
    messages: Sequence[Message]
    json_mode: bool = False
    max_tokens: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    call_timeout: float = field(default_factory=default_call_timeout)
    max_response_bytes: int = field(default_factory=default_max_response_bytes)
    on_token: TokenCallback | None = None
    base_url: str | None = None
    temperature: float | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "call_timeout", "max_response_bytes", "max_tokens"):
            value = getattr(self, name)
            if value is not None and not (0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.temperature is not None and not (0 <= self.temperature <= MAX_TEMPERATURE):
            raise ValueError(
                f"temperature must be between 0 and {MAX_TEMPERATURE:g}, got {self.temperature!r}"
            )


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    provider: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None

    def json(self) -> Any:
        """Parse the reply, tolerating the Markdown fence some models wrap JSON in."""
        text = self.text.strip()
        if fenced := _FENCE.match(text):
            text = fenced.group(1)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise LLMResponseError(
                f"{self.model} returned invalid JSON ({exc}); retry, or use a model that "
                f"follows JSON instructions. Reply starts with {self.text[:80]!r}"
            ) from exc
