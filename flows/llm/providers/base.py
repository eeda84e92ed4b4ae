"""What all providers share: one streaming loop over httpx, and one translation of transport
and HTTP failures into `LLMError`s whose messages say what to fix."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn

import httpx
from httpx_sse import EventSource, SSEError

from flows.llm.errors import (
    AuthenticationError,
    LLMConnectionError,
    LLMResponseError,
    LLMTimeoutError,
    UnknownModelError,
    retryable_status,
)
from flows.llm.keys import api_key
from flows.llm.models import Completion, CompletionRequest, Resource, TokenCallback

CONNECT_TIMEOUT = 5.0
"""Short, because a server that does not accept a connection quickly is not there."""


class Provider(ABC):
    name: ClassVar[str]
    resource: ClassVar[Resource]

    @abstractmethod
    async def complete(self, request: CompletionRequest) -> Completion: ...


@dataclass(frozen=True)
class WireRequest:
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WireEvent:
    """The data of one NDJSON line or one SSE event."""

    data: str

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except json.JSONDecodeError as exc:
            raise LLMResponseError(f"malformed stream event {self.data[:80]!r}: {exc}") from exc


@dataclass
class StreamState:
    on_token: TokenCallback | None
    parts: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    finished: bool = False

    def emit(self, text: str | None) -> None:
        if text:
            self.parts.append(text)
            if self.on_token is not None:
                self.on_token(text)


@dataclass(frozen=True)
class ErrorDetail:
    message: str
    model_not_found: bool = False


class HTTPProvider(Provider):
    """A provider reached over HTTP that streams its reply as NDJSON or SSE."""

    framing: ClassVar[Literal["ndjson", "sse"]]
    base_url_env: ClassVar[str]
    key_env: ClassVar[str | None] = None
    secret_block: ClassVar[str | None] = None

    @abstractmethod
    def base_url(self) -> str: ...

    @abstractmethod
    def build(self, request: CompletionRequest, *, base_url: str, key: str | None) -> WireRequest:
        """The streaming request for this protocol."""

    @abstractmethod
    def handle(self, event: WireEvent, state: StreamState) -> None:
        """Fold one event into `state`, setting `finished` on the protocol's last event."""

    @abstractmethod
    def error_detail(self, payload: Any) -> ErrorDetail:
        """Read this protocol's error body (parsed JSON, or text if it was not JSON)."""

    @abstractmethod
    def missing_model_fix(self, model: str) -> str: ...

    def connect_fix(self, base_url: str) -> str:
        return f"Check {self.base_url_env} (now {base_url})."

    async def complete(self, request: CompletionRequest) -> Completion:
        base_url = self.base_url()
        wire = self.build(request, base_url=base_url, key=await self._key())
        state = StreamState(on_token=request.on_token)
        with self._translated_errors(request, wire=wire, base_url=base_url):
            await self._stream(wire, state, timeout=request.timeout)
        if not state.finished:
            raise LLMResponseError(
                f"the stream from {self.name} at {wire.url} ended before its final event; the "
                "server closed it early. Retry; if it keeps happening, check the server's logs."
            )
        return Completion(
            text="".join(state.parts),
            model=str(request.spec),
            provider=self.name,
            input_tokens=state.input_tokens,
            output_tokens=state.output_tokens,
            finish_reason=state.finish_reason,
        )

    async def _key(self) -> str | None:
        if not (self.key_env and self.secret_block):
            return None
        return await api_key(
            provider=self.name, env_var=self.key_env, secret_block=self.secret_block
        )

    async def _stream(self, wire: WireRequest, state: StreamState, *, timeout: float) -> None:
        limits = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
        async with (
            httpx.AsyncClient(timeout=limits) as client,
            client.stream("POST", wire.url, json=wire.body, headers=wire.headers) as response,
        ):
            if response.is_error:
                await response.aread()
                response.raise_for_status()
            async for event in self._events(response):
                self.handle(event, state)
                if state.finished:
                    return

    @contextmanager
    def _translated_errors(
        self, request: CompletionRequest, *, wire: WireRequest, base_url: str
    ) -> Iterator[None]:
        try:
            yield
        except httpx.HTTPStatusError as exc:
            self._raise_for_status(exc, request=request, base_url=base_url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise LLMConnectionError(
                f"cannot connect to {self.name} at {wire.url}: {exc}. {self.connect_fix(base_url)}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise LLMTimeoutError(
                f"{self.name} at {wire.url} sent nothing for {request.timeout:g}s while "
                f"generating with {str(request.spec)!r}. Pass a larger timeout or reduce the "
                "load on the server."
            ) from exc
        except SSEError as exc:
            raise LLMResponseError(
                f"{self.name} at {wire.url} did not answer with an event stream ({exc}). "
                f"{self.connect_fix(base_url)}"
            ) from exc
        except httpx.HTTPError as exc:
            raise LLMResponseError(
                f"the connection to {self.name} at {wire.url} broke mid-reply: {exc!r}. Retry; "
                "if it keeps happening, check the server's logs."
            ) from exc

    async def _events(self, response: httpx.Response) -> AsyncIterator[WireEvent]:
        if self.framing == "sse":
            async for sse in EventSource(response).aiter_sse():
                yield WireEvent(sse.data)
        else:
            async for line in response.aiter_lines():
                if line.strip():
                    yield WireEvent(line)

    def _raise_for_status(
        self, exc: httpx.HTTPStatusError, *, request: CompletionRequest, base_url: str
    ) -> NoReturn:
        response = exc.response
        status = response.status_code
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text
        detail = self.error_detail(payload)
        model = str(request.spec)
        if status in (401, 403):
            raise AuthenticationError(
                f"{self.name} rejected the API key (HTTP {status}: {detail.message}). Set "
                f"{self.key_env} or the Prefect Secret block {self.secret_block!r} to a valid key."
            ) from exc
        if status == 404 and detail.model_not_found:
            raise UnknownModelError(
                f"{self.name} has no model {request.spec.name!r} ({detail.message}). "
                f"{self.missing_model_fix(request.spec.name)}"
            ) from exc
        if status == 404:
            raise LLMResponseError(
                f"{response.url} does not exist (HTTP 404: {detail.message}). "
                f"{self.connect_fix(base_url)}",
                status_code=status,
            ) from exc
        hint = "Retry later." if retryable_status(status) else "Check the request and the model."
        raise LLMResponseError(
            f"{self.name} answered HTTP {status} for {model!r}: {detail.message}. {hint}",
            status_code=status,
        ) from exc
