"""Plain data passed between the public API and the providers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from flows.llm.errors import LLMResponseError

Resource = Literal["ollama", "external", "local"]
"""What a model occupies while it runs: the scheduler admits one `ollama` job at a time."""

Message = Mapping[str, Any]
TokenCallback = Callable[[str], None]

DEFAULT_TIMEOUT = 120.0
"""Seconds the server may stay silent mid-generation; long, since local models load slowly."""

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    name: str
    resource: Resource

    def __str__(self) -> str:
        return f"{self.provider}/{self.name}"


class CompletionOptions(TypedDict, total=False):
    json_mode: bool
    max_tokens: int | None
    timeout: float
    on_token: TokenCallback | None


@dataclass(frozen=True)
class CompletionRequest:
    spec: ModelSpec
    messages: Sequence[Message]
    json_mode: bool = False
    max_tokens: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    on_token: TokenCallback | None = None


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
