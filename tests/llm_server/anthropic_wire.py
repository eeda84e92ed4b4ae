"""Anthropic's Messages API: `/v1/messages`, streaming named SSE events."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.llm_server.chat import Chat, Wire, chat_endpoint, sse, text_of
from tests.llm_server.replies import Reply

FAILURES = {
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def error(status: int, kind: str, message: str) -> Response:
    return JSONResponse(error_body(kind, message), status)


class AnthropicWire(Wire):
    protocol = "anthropic"
    media_type = "text/event-stream"

    def parse(self, body: dict[str, Any]) -> Chat:
        """The separate `system` field becomes a system message, as the reply logic expects."""
        messages = [{**m, "content": text_of(m.get("content"))} for m in body.get("messages") or []]
        if system := text_of(body.get("system")):
            messages.insert(0, {"role": "system", "content": system})
        return Chat(
            model=str(body.get("model", "")),
            messages=messages,
            stream=bool(body.get("stream", False)),
            as_json=False,
            body=body,
        )

    def refuse(self, request: Request, chat: Chat) -> Response | None:
        """Keys arrive as `x-api-key` or, from newer official clients, as a Bearer token."""
        bearer = request.headers.get("authorization", "").removeprefix("Bearer")
        key = (request.headers.get("x-api-key") or bearer).strip()
        if not key:
            return error(401, "authentication_error", "x-api-key header is required")
        if key.startswith("bad"):
            return error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in request.headers:
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        if "max_tokens" not in chat.body:
            return error(400, "invalid_request_error", "max_tokens: Field required")
        return None

    def failure(self, status: int) -> Response:
        return error(status, *FAILURES.get(status, ("api_error", "Internal server error")))

    def error(self, status: int, message: str) -> Response:
        kind = "authentication_error" if status == 401 else "api_error"
        return error(status, kind, message)

    def received_key(self, request: Request) -> str:
        return request.headers.get("x-api-key") or super().received_key(request)

    def not_found(self, model: str) -> Response:
        return error(404, "not_found_error", f"model: {model}")

    def whole(self, chat: Chat, reply: Reply, text: str) -> dict[str, Any]:
        return _message(chat, reply) | {
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": _usage(reply, output_tokens=reply.output_tokens),
        }

    def opening(self, chat: Chat, reply: Reply) -> list[str]:
        start = _message(chat, reply) | {"content": [], "usage": _usage(reply, output_tokens=1)}
        block = {"type": "text", "text": ""}
        return [
            _event({"type": "message_start", "message": start}),
            _event({"type": "content_block_start", "index": 0, "content_block": block}),
            _event({"type": "ping"}),
        ]

    def piece(self, chat: Chat, text: str) -> str:
        delta = {"type": "text_delta", "text": text}
        return _event({"type": "content_block_delta", "index": 0, "delta": delta})

    def closing(self, chat: Chat, reply: Reply) -> list[str]:
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        return [
            _event({"type": "content_block_stop", "index": 0}),
            _event(
                {
                    "type": "message_delta",
                    "delta": delta,
                    "usage": {"output_tokens": reply.output_tokens},
                }
            ),
            _event({"type": "message_stop"}),
        ]

    def stream_error(self) -> str:
        return _event(error_body(*FAILURES[529]))


def _event(data: dict[str, Any]) -> str:
    return sse(data, event=data["type"])


def _message(chat: Chat, reply: Reply) -> dict[str, Any]:
    digest = hashlib.sha256(repr(chat.messages).encode()).hexdigest()[:24]
    return {
        "id": f"msg_{digest}",
        "type": "message",
        "role": "assistant",
        "model": chat.model,
        "stop_reason": None,
        "stop_sequence": None,
    }


def _usage(reply: Reply, *, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def routes() -> list[Route]:
    return [Route("/v1/messages", chat_endpoint(AnthropicWire()), methods=["POST"])]
