"""Ollama's native `/api/chat`, streamed as NDJSON."""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
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

DEFAULT_PORT = 11434


def ollama_base_url(host: str | None) -> str:
    """Read OLLAMA_HOST the way the Ollama CLI and client do: scheme and port are optional."""
    host = (host or "").strip()
    scheme, _, hostport = host.partition("://")
    port = DEFAULT_PORT
    if not hostport:
        scheme, hostport = "http", host
    elif scheme in ("http", "https"):
        port = 80 if scheme == "http" else 443
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    hostname = split.hostname or "127.0.0.1"
    try:
        if ipaddress.ip_address(hostname).version == 6:
            hostname = f"[{hostname}]"
    except ValueError:
        pass
    base = f"{scheme}://{hostname}:{split.port or port}"
    path = split.path.strip("/")
    return f"{base}/{path}" if path else base


class OllamaProvider(HTTPProvider):
    name = "ollama"
    resource = "ollama"
    framing = "ndjson"
    base_url_env = "OLLAMA_HOST"

    def base_url(self) -> str:
        return ollama_base_url(os.environ.get(self.base_url_env))

    def build(self, request: CompletionRequest, *, base_url: str, key: str | None) -> WireRequest:
        body: dict[str, Any] = {
            "model": request.spec.name,
            "messages": [dict(m) for m in request.messages],
            "stream": True,
        }
        if request.json_mode:
            body["format"] = "json"
        options: dict[str, Any] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if options:
            body["options"] = options
        return WireRequest(url=f"{base_url}/api/chat", body=body)

    def handle(self, event: WireEvent, state: StreamState) -> None:
        data = event.json()
        if error := data.get("error"):
            raise LLMResponseError(f"ollama failed mid-reply: {error}")
        state.emit((data.get("message") or {}).get("content"))
        if data.get("done"):
            state.finished = True
            state.finish_reason = data.get("done_reason")
            state.input_tokens = data.get("prompt_eval_count")
            state.output_tokens = data.get("eval_count")

    def error_detail(self, payload: Any) -> ErrorDetail:
        message = str(payload.get("error", payload) if isinstance(payload, dict) else payload)
        return ErrorDetail(message, model_not_found="model" in message and "not found" in message)

    def missing_model_fix(self, model: str) -> str:
        return f"Pull it with `ollama pull {model}`, or pick one that `ollama list` shows."

    def connect_fix(self, base_url: str) -> str:
        return (
            f"Start Ollama (`ollama serve`), or set {self.base_url_env} to the address it "
            f"listens on (now {base_url})."
        )
