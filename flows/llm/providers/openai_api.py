"""OpenAI's `/chat/completions`, streamed as SSE; also fits OpenAI-compatible servers."""

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

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(HTTPProvider):
    name = "openai"
    resource = "external"
    framing = "sse"
    base_url_env = "OPENAI_BASE_URL"
    key_env = "OPENAI_API_KEY"
    secret_block = "openai-api-key"

    def base_url(self) -> str:
        """Like the official client, the base already ends in the API version (`/v1`)."""
        return (os.environ.get(self.base_url_env) or DEFAULT_BASE_URL).rstrip("/")

    def build(self, request: CompletionRequest, *, base_url: str, key: str | None) -> WireRequest:
        body: dict[str, Any] = {
            "model": request.spec.name,
            "messages": [dict(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.json_mode:
            body["response_format"] = {"type": "json_object"}
        if request.max_tokens is not None:
            body["max_completion_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return WireRequest(
            url=f"{base_url}/chat/completions",
            body=body,
            headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"},
        )

    def handle(self, event: WireEvent, state: StreamState) -> None:
        if event.data.strip() == "[DONE]":
            state.finished = True
            return
        data = event.json()
        if "error" in data:
            raise LLMResponseError(f"openai failed mid-reply: {self.error_detail(data).message}")
        for choice in data.get("choices") or []:
            state.emit((choice.get("delta") or {}).get("content"))
            state.finish_reason = choice.get("finish_reason") or state.finish_reason
        if usage := data.get("usage"):
            state.input_tokens = usage.get("prompt_tokens")
            state.output_tokens = usage.get("completion_tokens")

    def error_detail(self, payload: Any) -> ErrorDetail:
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return ErrorDetail(str(payload))
        return ErrorDetail(
            str(error.get("message")), model_not_found=error.get("code") == "model_not_found"
        )

    def missing_model_fix(self, model: str) -> str:
        return (
            f"Check the model name, or {self.base_url_env} if {model!r} lives on an "
            "OpenAI-compatible server."
        )
