"""Ollama's native API: `/api/chat` streams NDJSON unless `stream` is false."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.llm_server.chat import Chat, Wire, chat_endpoint, ndjson, text_of
from tests.llm_server.replies import Reply

VERSION = "0.12.6"
LISTED_MODELS = ("qwen3:30b", "llama3.2:1b")
RUNNER_CRASH = "llama runner process has terminated: exit status 2"


class OllamaWire(Wire):
    protocol = "ollama"
    media_type = "application/x-ndjson"

    def parse(self, body: dict[str, Any]) -> Chat:
        messages = [{**m, "content": text_of(m.get("content"))} for m in body.get("messages") or []]
        return Chat(
            model=str(body.get("model", "")),
            messages=messages,
            stream=body.get("stream", True),
            as_json=bool(body.get("format")),
            body=body,
        )

    def failure(self, status: int) -> Response:
        return JSONResponse({"error": RUNNER_CRASH}, status)

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status)

    def not_found(self, model: str) -> Response:
        return JSONResponse({"error": f"model '{model}' not found"}, 404)

    def whole(self, chat: Chat, reply: Reply, text: str) -> dict[str, Any]:
        return _message(chat.model, text) | _final_counts(reply)

    def piece(self, chat: Chat, text: str) -> str:
        return ndjson(_message(chat.model, text, done=False))

    def closing(self, chat: Chat, reply: Reply) -> list[str]:
        return [ndjson(_message(chat.model, "") | _final_counts(reply))]

    def stream_error(self) -> str:
        return ndjson({"error": RUNNER_CRASH})


def _message(model: str, content: str, *, done: bool = True) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "message": {"role": "assistant", "content": content},
        "done": done,
    }


def _final_counts(reply: Reply) -> dict[str, Any]:
    return {
        "done": True,
        "done_reason": "stop",
        "total_duration": 1_000_000,
        "load_duration": 100_000,
        "prompt_eval_count": reply.prompt_tokens,
        "prompt_eval_duration": 200_000,
        "eval_count": reply.output_tokens,
        "eval_duration": 700_000,
    }


async def _tags(request: Request) -> Response:
    return JSONResponse(
        {
            "models": [
                {
                    "name": name,
                    "model": name,
                    "modified_at": "2025-01-01T00:00:00Z",
                    "size": 1_000_000,
                    "digest": f"{index:064x}",
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": name.split(":")[0],
                        "families": [name.split(":")[0]],
                        "parameter_size": name.split(":")[1].upper(),
                        "quantization_level": "Q4_K_M",
                    },
                }
                for index, name in enumerate(LISTED_MODELS)
            ]
        }
    )


async def _version(request: Request) -> Response:
    return JSONResponse({"version": VERSION})


async def _root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


def routes() -> list[Route]:
    return [
        Route("/", _root, methods=["GET", "HEAD"]),
        Route("/api/chat", chat_endpoint(OllamaWire()), methods=["POST"]),
        Route("/api/tags", _tags),
        Route("/api/version", _version),
    ]
