"""What all providers share: one streaming loop over httpx, bounded in time (`call_timeout`),
in bytes (`max_response_bytes`) and in tokens (`max_tokens`), and one translation of transport
and HTTP failures into `LLMError`s whose messages say what to fix."""

from __future__ import annotations

import asyncio
import json
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn

import httpx

from flows.llm.errors import (
    AuthenticationError,
    LLMConnectionError,
    LLMResponseError,
    LLMTimeoutError,
    UnknownModelError,
    retryable_status,
)
from flows.llm.keys import api_key
from flows.llm.models import (
    CALL_TIMEOUT_ENV,
    CHARS_PER_TOKEN,
    DEFAULT_CALL_TIMEOUT,
    MAX_RESPONSE_BYTES_ENV,
    MAX_TEMPERATURE,
    Completion,
    CompletionRequest,
    Resource,
    TokenCallback,
)
from flows.llm.providers.framing import (
    ERROR_BODY_LIMIT,
    ByteBudget,
    NDJSONFrames,
    ResponseTooLargeError,
    SSEFrames,
    error_body_head,
    event_stream_content_type,
    records,
)
from scheduler_core.redaction import redact

CONNECT_TIMEOUT = 5.0
"""Short, because a server that does not accept a connection quickly is not there."""

ERROR_DETAIL_LIMIT = 1024
"""Characters of a server's error message quoted in an `LLMError`."""


class Provider(ABC):
    name: ClassVar[str]
    resource: ClassVar[Resource]
    max_temperature: ClassVar[float] = MAX_TEMPERATURE
    """The highest `temperature` the API accepts; a higher one fails before any request."""

    def check_temperature(self, temperature: float | None) -> None:
        if temperature is not None and temperature > self.max_temperature:
            raise ValueError(
                f"temperature {temperature:g} is above {self.max_temperature:g}, the most "
                f"{self.name} models accept: pass a temperature between 0 and "
                f"{self.max_temperature:g}, such as 0.7"
            )

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
    """The reply so far. With `max_tokens` set, a reply that goes past it is cut there and
    marked `truncated`: it counts as over the limit when it has more text pieces than
    `max_tokens` (servers stream about one token per piece) or more than
    `max_tokens * CHARS_PER_TOKEN` characters (a bound no honest reply reaches)."""

    on_token: TokenCallback | None
    max_tokens: int | None = None
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    finished: bool = False
    truncated: bool = False

    def emit(self, text: str | None) -> None:
        if not text or self.truncated:
            return
        if self.max_tokens is not None:
            room = self.max_tokens * CHARS_PER_TOKEN - self.chars
            if len(self.parts) >= self.max_tokens:
                self.truncated, text = True, ""
            elif len(text) > room:
                self.truncated, text = True, text[:room]
        if text:
            self.parts.append(text)
            self.chars += len(text)
            if self.on_token is not None:
                self.on_token(text)

    def tokens(self) -> int:
        """The reply's length in tokens as this layer counts them (see the class doc)."""
        return max(len(self.parts), math.ceil(self.chars / CHARS_PER_TOKEN))

    def end_truncated(self) -> None:
        """Finish a reply cut at `max_tokens`, whatever the server said after the cut."""
        self.finished = True
        self.finish_reason = "length"
        self.output_tokens = self.tokens()


@dataclass(frozen=True)
class ErrorDetail:
    message: str
    model_not_found: bool = False


@asynccontextmanager
async def post(wire: WireRequest, *, timeout: float) -> AsyncIterator[httpx.Response]:
    """POST `wire` and give its response, body unread, once its status is a success; an
    error status is an `ErrorResponse` carrying the head of its body (read within limits),
    which the provider translates into an `LLMError`."""
    limits = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
    async with (
        httpx.AsyncClient(timeout=limits) as client,
        client.stream("POST", wire.url, json=wire.body, headers=wire.headers) as response,
    ):
        if response.is_error:
            head, cut = await error_body_head(response)
            raise ErrorResponse(response, head=head, cut=cut)
        yield response


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

    def token_limit(self, request: CompletionRequest) -> int | None:
        """The `max_tokens` this protocol sends, which the reply is held to."""
        return request.max_tokens

    async def complete(self, request: CompletionRequest) -> Completion:
        self.check_temperature(request.temperature)
        base_url = request.base_url or self.base_url()
        where = base_url
        state = StreamState(on_token=request.on_token, max_tokens=self.token_limit(request))
        budget = ByteBudget(request.max_response_bytes)
        deadline = asyncio.timeout(request.call_timeout)
        try:
            async with deadline:
                wire = self.build(request, base_url=base_url, key=await self._key())
                where = wire.url
                with self._translated_errors(request, wire=wire, base_url=base_url):
                    await self._stream(wire, state, budget, timeout=request.timeout)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise LLMTimeoutError(
                f"{self.name} at {where} did not finish {str(request.spec)!r} within the call "
                f"deadline of {request.call_timeout:g}s ({state.chars} characters of reply, "
                f"{budget.used} bytes received); the call was stopped there. If the model needs "
                f"longer, raise the deadline with call_timeout=<seconds> or {CALL_TIMEOUT_ENV} "
                f"(default {DEFAULT_CALL_TIMEOUT:g}s)."
            ) from exc
        if not state.finished:
            raise LLMResponseError(
                f"the stream from {self.name} at {where} ended before its final event; the "
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

    async def _stream(
        self, wire: WireRequest, state: StreamState, budget: ByteBudget, *, timeout: float
    ) -> None:
        async with post(wire, timeout=timeout) as response:
            if self.framing == "sse":
                if (content_type := event_stream_content_type(response)) is not None:
                    raise NotAnEventStreamError(content_type)
                framing: SSEFrames | NDJSONFrames = SSEFrames()
            else:
                framing = NDJSONFrames()
            async with aclosing(records(response, framing=framing, budget=budget)) as events:
                async for data in events:
                    self.handle(WireEvent(data), state)
                    if state.truncated:
                        state.end_truncated()
                    if state.finished:
                        return

    @contextmanager
    def _translated_errors(
        self, request: CompletionRequest, *, wire: WireRequest, base_url: str
    ) -> Iterator[None]:
        try:
            yield
        except ErrorResponse as exc:
            self._raise_for_status(exc, request=request, base_url=base_url)
        except ResponseTooLargeError as exc:
            raise LLMResponseError(
                f"{self.name} at {wire.url} sent more than {exc.limit} bytes for "
                f"{str(request.spec)!r} without finishing; reading stopped there. A reply that "
                "long is a server fault (ignoring max_tokens, or looping). If it is expected, "
                f"raise the cap with max_response_bytes=<bytes> or {MAX_RESPONSE_BYTES_ENV}; "
                "to keep the start of a long reply instead, pass max_tokens."
            ) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            error = LLMConnectionError(
                f"cannot send to {self.name} at {wire.url}: {exc}. {self.connect_fix(base_url)}"
            )
            error.retryable = False
            raise error from exc
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
        except NotAnEventStreamError as exc:
            raise LLMResponseError(
                f"{self.name} at {wire.url} did not answer with an event stream ({exc}). "
                f"{self.connect_fix(base_url)}"
            ) from exc
        except httpx.HTTPError as exc:
            raise LLMResponseError(
                f"the connection to {self.name} at {wire.url} broke mid-reply: {exc!r}. Retry; "
                "if it keeps happening, check the server's logs."
            ) from exc

    def _raise_for_status(
        self, exc: ErrorResponse, *, request: CompletionRequest, base_url: str
    ) -> NoReturn:
        response = exc.response
        status = response.status_code
        payload: Any = exc.head
        if not exc.cut:
            with suppress(ValueError):
                payload = json.loads(exc.head)
        detail = self.error_detail(payload)
        message = redact(detail.message, limit=ERROR_DETAIL_LIMIT)
        if exc.cut:
            message += f" [only the first {ERROR_BODY_LIMIT} bytes of the body were read]"
        model = str(request.spec)
        if status in (401, 403):
            raise AuthenticationError(
                f"{self.name} rejected the API key (HTTP {status}: {message}). Set "
                f"{self.key_env} or the Prefect Secret block {self.secret_block!r} to a valid key."
            ) from exc
        if status == 404 and detail.model_not_found:
            raise UnknownModelError(
                f"{self.name} has no model {request.spec.name!r} ({message}). "
                f"{self.missing_model_fix(request.spec.name)}"
            ) from exc
        if status == 404:
            raise LLMResponseError(
                f"{response.url} does not exist (HTTP 404: {message}). "
                f"{self.connect_fix(base_url)}",
                status_code=status,
            ) from exc
        hint = "Retry later." if retryable_status(status) else "Check the request and the model."
        raise LLMResponseError(
            f"{self.name} answered HTTP {status} for {model!r}: {message}. {hint}",
            status_code=status,
        ) from exc


class ErrorResponse(httpx.HTTPStatusError):
    """An HTTP error status with at most `ERROR_BODY_LIMIT` bytes of its body read (`head`);
    `cut` tells whether more followed. Its own message is redacted like an `LLMError`'s."""

    def __init__(self, response: httpx.Response, *, head: str, cut: bool) -> None:
        request = response.request
        super().__init__(
            redact(f"HTTP {response.status_code} {response.reason_phrase} for {request.url}"),
            request=request,
            response=response,
        )
        self.head, self.cut = head, cut


class NotAnEventStreamError(Exception):
    def __init__(self, content_type: str) -> None:
        super().__init__(f"expected Content-Type text/event-stream, got {content_type!r}")
