"""The ASGI app: the three protocols and their embedding endpoints, plus the `/_control` and
`/_stats` test hooks."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.llm_server import anthropic_wire, embeddings, ollama_wire, openai_wire
from tests.llm_server.state import ServerState

OLLAMA_WORK = frozenset({"/api/chat", "/api/embed"})


class OllamaInFlight:
    """Counts an Ollama chat or embedding call as in flight until its last byte is sent,
    streamed or not: the server runs one workload at a time, whichever kind."""

    def __init__(self, app: ASGIApp, *, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in OLLAMA_WORK:
            with self.state.ollama_in_flight():
                await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _control(request: Request) -> Response:
    try:
        return JSONResponse(request.app.state.fake.control(await request.json()))
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, 400)


async def _stats(request: Request) -> Response:
    return JSONResponse(request.app.state.fake.snapshot())


def create_app() -> Starlette:
    state = ServerState()
    app = Starlette(
        routes=[
            *ollama_wire.routes(),
            *openai_wire.routes(),
            *anthropic_wire.routes(),
            *embeddings.routes(),
            Route("/_control", _control, methods=["POST"]),
            Route("/_stats", _stats),
        ],
        middleware=[Middleware(OllamaInFlight, state=state)],
    )
    app.state.fake = state
    return app
