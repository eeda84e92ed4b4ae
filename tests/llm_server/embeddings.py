"""The embedding endpoints: Ollama's `/api/embed` and OpenAI's `/v1/embeddings`.

A vector is a hashed bag of words (each lowercased word adds ±1 to one of `DIMENSION`
components, then the vector is scaled to unit length), so equal texts get equal vectors,
texts sharing most words get close ones, and unrelated texts nearly orthogonal ones.

The model name picks hostile behaviour as for chat (`missing…`, `hugeerror…`, `echokey…`),
plus: `flood…` (a 50 MiB JSON body), `ragged…` (each vector of a reply one component shorter
than the one before), `wrongdim…` (vectors of `WRONG_DIMENSION` components) and `notjson…` (HTTP 200
with an HTML page).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from flows.llm import synthesis
from tests.llm_server.chat import Chat, Wire, _hostile_failure
from tests.llm_server.ollama_wire import OllamaWire
from tests.llm_server.openai_wire import OpenAIWire
from tests.llm_server.replies import FLOOD_BYTES, is_missing
from tests.llm_server.state import ServerState

DIMENSION = 256
WRONG_DIMENSION = 32
_WORD = re.compile(r"\w+")


def vector(text: str, *, dimension: int = DIMENSION) -> list[float]:
    """The text's unit-length hashed bag-of-words vector (a fixed one for a text without
    words, as a real model returns some vector for anything)."""
    values = [0.0] * dimension
    for word in _WORD.findall(text.lower()):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        values[digest % dimension] += 1.0 if (digest >> 32) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0:
        return [1.0] + [0.0] * (dimension - 1)
    return [round(v / norm, 7) for v in values]


def _texts(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(t, str) for t in raw):
        return list(raw)
    raise ValueError("'input' must be a string or a list of strings")


def _vectors(model: str, texts: list[str]) -> list[list[float]]:
    if model.startswith("wrongdim"):
        return [vector(t, dimension=WRONG_DIMENSION) for t in texts]
    vectors = [vector(t) for t in texts]
    if model.startswith("ragged"):
        return [v[: DIMENSION - index] for index, v in enumerate(vectors)]
    return vectors


def _tokens(texts: list[str]) -> int:
    return sum(synthesis.count_tokens(t) for t in texts)


async def _flood(head: str) -> AsyncIterator[bytes]:
    """A JSON body that starts well and goes on for `FLOOD_BYTES`."""
    yield head.encode()
    piece = b"0.1234567, " * 6000
    for _ in range(FLOOD_BYTES // len(piece) + 1):
        yield piece


def _endpoint(wire: Wire, answer: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        state: ServerState = request.app.state.fake
        body = await request.json()
        model = str(body.get("model", ""))
        try:
            texts = _texts(body)
        except ValueError as exc:
            return wire.error(400, str(exc))
        state.record(protocol=wire.protocol, endpoint="embed", model=model, inputs=len(texts))
        if refusal := wire.refuse(request, Chat(model, [], False, False, body)):
            return refusal
        if status := state.take_failure():
            return wire.failure(status)
        if hostile := _hostile_failure(wire, request, model):
            return hostile
        if is_missing(model):
            return wire.not_found(model)
        await state.released()
        if model.startswith("notjson"):
            return HTMLResponse("<html><body><h1>Welcome to nginx!</h1></body></html>")
        if model.startswith("flood"):
            return StreamingResponse(_flood(answer.flood_head), media_type="application/json")
        return JSONResponse(answer(model, texts, body))

    return endpoint


class _Ollama:
    flood_head = '{"model": "flood", "embeddings": [['

    def __call__(self, model: str, texts: list[str], body: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": model,
            "embeddings": _vectors(model, texts),
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": _tokens(texts),
        }


class _OpenAI:
    flood_head = '{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": ['

    def __call__(self, model: str, texts: list[str], body: dict[str, Any]) -> dict[str, Any]:
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _base64(v) if as_base64 else v,
            }
            for index, v in enumerate(_vectors(model, texts))
        ]
        tokens = _tokens(texts)
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _base64(values: list[float]) -> str:
    """The official client asks for base64: little-endian float32s, as OpenAI sends them."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def routes() -> list[Route]:
    return [
        Route("/api/embed", _endpoint(OllamaWire(), _Ollama()), methods=["POST"]),
        Route("/v1/embeddings", _endpoint(OpenAIWire(), _OpenAI()), methods=["POST"]),
    ]
