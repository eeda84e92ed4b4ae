"""Text embeddings from the providers that offer them: Ollama's `/api/embed` and OpenAI's
`/embeddings`. The same base URLs, keys, deadlines, byte limit and error translation as the
chat calls (providers/base.py), so an embedding server that misbehaves fails the same way.

An Ollama embedding call occupies the server like a chat does: callers inside a flow must
hold its slot (`flows.guard.ollama_slot`); `flows.novelty` does that for its checks.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from flows.llm.client import resolve_model
from flows.llm.errors import LLMResponseError, LLMTimeoutError, UnknownModelError
from flows.llm.models import (
    CALL_TIMEOUT_ENV,
    DEFAULT_TIMEOUT,
    MAX_RESPONSE_BYTES_ENV,
    CompletionRequest,
)
from flows.llm.providers import PROVIDERS
from flows.llm.providers.base import HTTPProvider, WireRequest, post
from flows.llm.providers.framing import ByteBudget, ResponseTooLargeError

EMBEDDING_PROVIDERS = ("ollama", "openai")
"""Providers with an embedding endpoint; Anthropic has none, the offline one needs none."""

MAX_TEXTS = 256
"""Texts per call: enough for any batch a pipeline makes, few enough that the reply of a
1536-dimension model stays within the default 4 MiB response limit."""


@dataclass(frozen=True)
class Embeddings:
    """One vector per input text, in input order, all of one dimension."""

    vectors: list[list[float]]
    model: str
    provider: str
    input_tokens: int | None = None

    @property
    def dimension(self) -> int:
        return len(self.vectors[0])


async def aembed(
    model: str,
    texts: Sequence[str],
    *,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    call_timeout: float | None = None,
    max_response_bytes: int | None = None,
) -> Embeddings:
    """Embed `texts` with `model` (`ollama/<name>` or `openai/<name>`).

    `timeout`: seconds the server may stay silent; `call_timeout`: seconds the whole call may
    take (default `LLMSCHED_LLM_CALL_TIMEOUT_SECONDS` or 600); `max_response_bytes`: body
    bytes read before the call fails (default `LLMSCHED_LLM_MAX_RESPONSE_BYTES` or 4 MiB);
    `base_url`: the server to call instead of the provider's environment variable.
    """
    spec = resolve_model(model)
    if spec.provider not in EMBEDDING_PROVIDERS:
        raise UnknownModelError(
            f"{spec.provider} offers no embeddings, so {model!r} cannot embed text: use an "
            "'ollama/<model>' (e.g. ollama/nomic-embed-text) or 'openai/<model>' (e.g. "
            "openai/text-embedding-3-small) model, or leave the embedding model unset"
        )
    if not texts or len(texts) > MAX_TEXTS:
        raise ValueError(f"texts must hold 1 to {MAX_TEXTS} strings, got {len(texts)}")
    options: dict[str, Any] = {"base_url": base_url, "timeout": timeout}
    if call_timeout is not None:
        options["call_timeout"] = call_timeout
    if max_response_bytes is not None:
        options["max_response_bytes"] = max_response_bytes
    request = CompletionRequest(spec=spec, messages=(), **options)
    provider = PROVIDERS[spec.provider]
    assert isinstance(provider, HTTPProvider)
    return await _call(provider, request, list(texts))


def embed(model: str, texts: Sequence[str], **options: Any) -> Embeddings:
    """Blocking form of `aembed`, for code outside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("embed() blocks, so it cannot run in an event loop: await aembed()")
    return asyncio.run(aembed(model, texts, **options))


async def _call(provider: HTTPProvider, request: CompletionRequest, texts: list[str]) -> Embeddings:
    base_url = request.base_url or provider.base_url()
    where = base_url
    deadline = asyncio.timeout(request.call_timeout)
    try:
        async with deadline:
            wire = _wire(provider, base_url=base_url, model=request.spec.name, texts=texts)
            wire = WireRequest(wire.url, wire.body, {**wire.headers, **await _auth(provider)})
            where = wire.url
            with provider._translated_errors(request, wire=wire, base_url=base_url):
                payload = await _post(wire, request)
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise LLMTimeoutError(
            f"{provider.name} at {where} did not return embeddings from {str(request.spec)!r} "
            f"within the call deadline of {request.call_timeout:g}s. If the model needs longer "
            f"(a first call loads it), raise {CALL_TIMEOUT_ENV}."
        ) from exc
    vectors, tokens = _read(provider.name, payload, count=len(texts), where=where)
    return Embeddings(
        vectors=vectors, model=str(request.spec), provider=provider.name, input_tokens=tokens
    )


def _wire(provider: HTTPProvider, *, base_url: str, model: str, texts: list[str]) -> WireRequest:
    if provider.name == "ollama":
        return WireRequest(f"{base_url}/api/embed", {"model": model, "input": texts})
    body = {"model": model, "input": texts, "encoding_format": "float"}
    return WireRequest(f"{base_url}/embeddings", body)


async def _auth(provider: HTTPProvider) -> dict[str, str]:
    key = await provider._key()
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _post(wire: WireRequest, request: CompletionRequest) -> Any:
    """The JSON body, read within `max_response_bytes`; an error status becomes the
    provider's `ErrorResponse`, translated like a chat call's."""
    budget = ByteBudget(request.max_response_bytes)
    body = bytearray()
    async with post(wire, timeout=request.timeout) as response:
        try:
            async with aclosing(response.aiter_bytes()) as chunks:
                async for chunk in chunks:
                    budget.take(len(chunk))
                    body += chunk
        except ResponseTooLargeError as exc:
            raise LLMResponseError(
                f"{wire.url} sent more than {exc.limit} bytes of embeddings for "
                f"{str(request.spec)!r}; reading stopped there. Embed fewer texts per call, or "
                f"raise {MAX_RESPONSE_BYTES_ENV} if the model's vectors are that large."
            ) from exc
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LLMResponseError(
            f"{wire.url} answered with something that is not JSON ({exc}; it starts with "
            f"{bytes(body[:80])!r}); check that the base URL points at the embedding API."
        ) from exc


def _read(
    provider: str, payload: Any, *, count: int, where: str
) -> tuple[list[list[float]], int | None]:
    """The vectors and input token count of a reply, checked: one finite, non-empty vector
    per text, all of one dimension. Anything else is a server fault named as such."""

    def bad(problem: str) -> LLMResponseError:
        return LLMResponseError(
            f"{provider} at {where} returned unusable embeddings: {problem}. Check that the "
            "model is an embedding model and the server speaks the embedding API."
        )

    if not isinstance(payload, dict):
        raise bad(f"expected a JSON object, got {type(payload).__name__}")
    if provider == "ollama":
        raw = payload.get("embeddings")
        tokens = payload.get("prompt_eval_count")
    else:
        data = payload.get("data")
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise bad("no 'data' list of embedding objects")
        raw = [d.get("embedding") for d in sorted(data, key=lambda d: _index(d.get("index")))]
        tokens = (payload.get("usage") or {}).get("prompt_tokens")
    if not isinstance(raw, list) or len(raw) != count:
        got = len(raw) if isinstance(raw, list) else "no"
        raise bad(f"{got} vectors for {count} texts")
    vectors = [_vector(item, bad) for item in raw]
    dimensions = sorted({len(v) for v in vectors})
    if len(dimensions) > 1:
        raise bad(f"vectors of different dimensions {dimensions} in one reply")
    return vectors, tokens if isinstance(tokens, int) and tokens >= 0 else None


def _index(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _vector(item: Any, bad: Callable[[str], LLMResponseError]) -> list[float]:
    if not isinstance(item, list) or not item:
        raise bad("a vector is empty or not a list of numbers")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in item):
        raise bad("a vector holds something other than numbers")
    vector = [float(x) for x in item]
    if not all(math.isfinite(x) for x in vector):
        raise bad("a vector holds NaN or infinity")
    return vector
