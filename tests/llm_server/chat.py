"""The request flow every protocol shares; a `Wire` supplies only its own shapes."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.llm_server.replies import Reply, is_missing
from tests.llm_server.state import ServerState


@dataclass(frozen=True)
class Chat:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    as_json: bool
    body: dict[str, Any]


class Wire(ABC):
    protocol: str
    media_type: str

    @abstractmethod
    def parse(self, body: dict[str, Any]) -> Chat: ...

    def refuse(self, request: Request, chat: Chat) -> Response | None:
        """The protocol's own rejection (missing key, invalid body), if any."""
        return None

    @abstractmethod
    def failure(self, status: int) -> Response: ...

    @abstractmethod
    def error(self, status: int, message: str) -> Response:
        """An error in this protocol's shape carrying `message`."""

    def received_key(self, request: Request) -> str:
        """The credential the request carried, as a careless server might echo it."""
        return request.headers.get("authorization", "").removeprefix("Bearer").strip()

    @abstractmethod
    def not_found(self, model: str) -> Response: ...

    @abstractmethod
    def whole(self, chat: Chat, reply: Reply, text: str) -> dict[str, Any]: ...

    def opening(self, chat: Chat, reply: Reply) -> list[str]:
        """Events sent before the first piece of text."""
        return []

    @abstractmethod
    def piece(self, chat: Chat, text: str) -> str: ...

    @abstractmethod
    def closing(self, chat: Chat, reply: Reply) -> list[str]:
        """Events that end a complete stream."""

    @abstractmethod
    def stream_error(self) -> str:
        """The event a server sends when it fails after the stream began."""


def chat_endpoint(wire: Wire) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state: ServerState = request.app.state.fake
        chat = wire.parse(await request.json())
        state.record(
            protocol=wire.protocol,
            model=chat.model,
            stream=chat.stream,
            json=chat.as_json,
            messages=list(chat.messages),
        )
        seen = state.stats.requests[-1]
        if refusal := wire.refuse(request, chat):
            return refusal
        if status := state.take_failure():
            return wire.failure(status)
        if hostile := _hostile_failure(wire, request, chat.model):
            return hostile
        if is_missing(chat.model):
            return wire.not_found(chat.model)
        reply = Reply.for_request(chat.model, chat.messages, as_json=chat.as_json)
        seen["usage"] = [reply.prompt_tokens, reply.output_tokens]  # what the reply reports
        await state.released()
        if not chat.stream:
            return JSONResponse(wire.whole(chat, reply, await reply.whole(state)))
        return StreamingResponse(_stream(wire, chat, reply, state), media_type=wire.media_type)

    return endpoint


HUGE_ERROR_BYTES = 20 * 1024 * 1024
_CRASH_LOG_LINE = "llama runner: CUDA error: out of memory at ggml-cuda.cu:1234; dumping state\n"


def _hostile_failure(wire: Wire, request: Request, model: str) -> Response | None:
    """Models named `hugeerror…` fail with HTTP 500 and a 20 MiB error body; `echokey-401…`
    and `echokey-500…` fail with that status and a body quoting the key they received,
    bare and as the Authorization header it came in."""
    if model.startswith("hugeerror"):
        log = _CRASH_LOG_LINE * (HUGE_ERROR_BYTES // len(_CRASH_LOG_LINE) + 1)
        return wire.error(500, f"the model crashed; its log follows:\n{log}")
    if model.startswith("echokey"):
        status = 401 if model.startswith("echokey-401") else 500
        key = wire.received_key(request)
        headers = f"Authorization: {request.headers.get('authorization', '')}"
        return wire.error(status, f"key {key} refused or failed (request had {headers})")
    return None


async def _stream(wire: Wire, chat: Chat, reply: Reply, state: ServerState) -> AsyncIterator[str]:
    for event in wire.opening(chat, reply):
        yield event
    async for text in reply.pieces(state):
        yield wire.piece(chat, text)
    if reply.ending == "error":
        yield wire.stream_error()
    elif reply.ending == "complete":
        for event in wire.closing(chat, reply):
            yield event


def text_of(content: Any) -> str:
    """Content may be a string or a list of typed blocks; the reply only needs the text."""
    if isinstance(content, list):
        return "\n".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return str(content or "")


def sse(data: dict[str, Any] | str, *, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def ndjson(data: dict[str, Any]) -> str:
    return json.dumps(data) + "\n"
