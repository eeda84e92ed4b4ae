"""Anthropic's `/v1/messages`, streamed as named SSE events."""

from __future__ import annotations

import os
from typing import Any

from flows.llm.errors import LLMResponseError
from flows.llm.models import CompletionRequest
from flows.llm.providers.base import (
    ErrorDetail,
    HTTPProvider,
    StreamState,
    WireEvent,
    WireRequest,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""The API requires a limit; this one leaves room for long drafts."""


class AnthropicProvider(HTTPProvider):
    name = "anthropic"
    resource = "external"
    framing = "sse"
    base_url_env = "ANTHROPIC_BASE_URL"
    key_env = "ANTHROPIC_API_KEY"
    secret_block = "anthropic-api-key"
    max_temperature = 1.0

    def base_url(self) -> str:
        return (os.environ.get(self.base_url_env) or DEFAULT_BASE_URL).rstrip("/")

    def token_limit(self, request: CompletionRequest) -> int | None:
        return request.max_tokens or DEFAULT_MAX_TOKENS

    def build(self, request: CompletionRequest, *, base_url: str, key: str | None) -> WireRequest:
        """System prompts travel in their own field: the API accepts no `system` role."""
        system = [str(m["content"]) for m in request.messages if m.get("role") == "system"]
        body: dict[str, Any] = {
            "model": request.spec.name,
            "max_tokens": self.token_limit(request),
            "messages": [dict(m) for m in request.messages if m.get("role") != "system"],
            "stream": True,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return WireRequest(
            url=f"{base_url}/v1/messages",
            body=body,
            headers={
                "x-api-key": key or "",
                "anthropic-version": API_VERSION,
                "Accept": "text/event-stream",
            },
        )

    def handle(self, event: WireEvent, state: StreamState) -> None:
        data = event.json()
        kind, delta = data.get("type"), data.get("delta") or {}
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage") or {}
            state.input_tokens = usage.get("input_tokens")
        elif kind == "content_block_delta" and delta.get("type") == "text_delta":
            state.emit(delta.get("text"))
        elif kind == "message_delta":
            state.finish_reason = delta.get("stop_reason")
            state.output_tokens = (data.get("usage") or {}).get("output_tokens")
        elif kind == "message_stop":
            state.finished = True
        elif kind == "error":
            raise LLMResponseError(f"anthropic failed mid-reply: {self.error_detail(data).message}")

    def error_detail(self, payload: Any) -> ErrorDetail:
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return ErrorDetail(str(payload))
        return ErrorDetail(
            f"{error.get('type')}: {error.get('message')}",
            model_not_found=error.get("type") == "not_found_error"
            and str(error.get("message")).startswith("model:"),
        )

    def missing_model_fix(self, model: str) -> str:
        return "Check the model name against Anthropic's model list."
