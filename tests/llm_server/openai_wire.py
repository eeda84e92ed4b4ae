"""OpenAI's chat completions API under `/v1`, streaming SSE chunks then `data: [DONE]`."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.llm_server.chat import Chat, Wire, chat_endpoint, sse, text_of
from tests.llm_server.replies import Reply

LISTED_MODELS = ("gpt-4o-mini", "gpt-4o")
FINGERPRINT = "fp_fake0001"
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
    "blank username) if you're accessing the API from your browser and are prompted for a "
    "username. You can obtain an API key from https://platform.openai.com/account/api-keys."
)


def error_body(message: str, *, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error(status: int, message: str, *, kind: str, code: str | None = None) -> Response:
    return JSONResponse(error_body(message, kind=kind, code=code), status)


class OpenAIWire(Wire):
    protocol = "openai"
    media_type = "text/event-stream"

    def parse(self, body: dict[str, Any]) -> Chat:
        messages = [{**m, "content": text_of(m.get("content"))} for m in body.get("messages") or []]
        response_format = (body.get("response_format") or {}).get("type")
        return Chat(
            model=str(body.get("model", "")),
            messages=messages,
            stream=bool(body.get("stream", False)),
            as_json=response_format in ("json_object", "json_schema"),
            body=body,
        )

    def refuse(self, request: Request, chat: Chat) -> Response | None:
        key = request.headers.get("authorization", "").removeprefix("Bearer").strip()
        if not key:
            return error(401, NO_KEY, kind="invalid_request_error")
        if key.startswith("bad"):
            return error(
                401,
                f"Incorrect API key provided: {key[:3]}****. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                kind="invalid_request_error",
                code="invalid_api_key",
            )
        mentions_json = any("json" in str(m["content"]).lower() for m in chat.messages)
        if chat.body.get("response_format", {}).get("type") == "json_object" and not mentions_json:
            return error(
                400,
                "'messages' must contain the word 'json' in some form, to use 'response_format' "
                "of type 'json_object'.",
                kind="invalid_request_error",
            )
        return None

    def failure(self, status: int) -> Response:
        if status == 429:
            return error(
                429, "Rate limit reached for requests", kind="requests", code="rate_limit_exceeded"
            )
        return error(status, SERVER_ERROR, kind="server_error")

    def error(self, status: int, message: str) -> Response:
        if status == 401:
            return error(401, message, kind="invalid_request_error", code="invalid_api_key")
        return error(status, message, kind="server_error")

    def not_found(self, model: str) -> Response:
        return error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            kind="invalid_request_error",
            code="model_not_found",
        )

    def whole(self, chat: Chat, reply: Reply, text: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": [],
        }
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return _envelope(chat, "chat.completion") | {
            "choices": [choice],
            "usage": _usage(reply),
        }

    def opening(self, chat: Chat, reply: Reply) -> list[str]:
        return [sse(_chunk(chat, {"role": "assistant", "content": "", "refusal": None}))]

    def piece(self, chat: Chat, text: str) -> str:
        return sse(_chunk(chat, {"content": text}))

    def closing(self, chat: Chat, reply: Reply) -> list[str]:
        events = [sse(_chunk(chat, {}, finish_reason="stop"))]
        if (chat.body.get("stream_options") or {}).get("include_usage"):
            usage = {"choices": [], "usage": _usage(reply)}
            events.append(sse(_envelope(chat, "chat.completion.chunk") | usage))
        return [*events, sse("[DONE]")]

    def stream_error(self) -> str:
        return sse(error_body(SERVER_ERROR, kind="server_error"))


def _envelope(chat: Chat, kind: str) -> dict[str, Any]:
    digest = hashlib.sha256(repr(chat.messages).encode()).hexdigest()[:24]
    return {
        "id": f"chatcmpl-{digest}",
        "object": kind,
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": FINGERPRINT,
        "service_tier": "default",
    }


def _chunk(
    chat: Chat, delta: dict[str, Any], *, finish_reason: str | None = None
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return _envelope(chat, "chat.completion.chunk") | {"choices": [choice]}


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.prompt_tokens + reply.output_tokens,
    }


async def _models(request: Request) -> Response:
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
                for name in LISTED_MODELS
            ],
        }
    )


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat_endpoint(OpenAIWire()), methods=["POST"]),
        Route("/v1/models", _models),
    ]
