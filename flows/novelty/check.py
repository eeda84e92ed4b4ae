"""Is a new text a repeat of an earlier output? The public calls: `acheck_novelty` before an
output is accepted, `aremember` once it is (and their blocking forms).

The method: the embedding model `model` (else LLMSCHED_EMBED_MODEL), or the offline
MinHash when none is set. Every remembered item also gets a MinHash signature, so the
fallback always has the whole history. An embedding call that fails (server down, model
missing, bad reply) does not fail the job: the check falls back to MinHash, logs why, and
says so in the verdict. A model string that cannot embed at all is a configuration error.

An Ollama embedding call holds the Ollama server's one slot (`flows.guard.ollama_slot`),
as a chat does, so call these outside any slot the caller holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Coroutine
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from flows.guard import ensure_ollama_limit_once, ollama_slot
from flows.llm import LLMError, LLMResponseError, UnknownModelError, aembed, resolve_model
from flows.llm.embeddings import EMBEDDING_PROVIDERS
from flows.llm.providers.ollama_api import ollama_base_url
from flows.novelty.index import DimensionMismatchError, Nearest, NoveltyIndex, novelty_index
from flows.novelty.settings import novelty_settings
from flows.novelty.signatures import (
    MINHASH,
    Method,
    embedding_method,
    embedding_signature,
    minhash_signature,
)
from flows.novelty.table import ITEM_ID_LENGTH
from flows.ollama_servers import named_server, ollama_slot_name

log = logging.getLogger("flows.novelty")
T = TypeVar("T")

KINDS = ("story", "research")
"""What is compared with what: stories with stories, research cards with research cards."""

OFFLINE = "offline"
"""As a model: the offline MinHash, whatever LLMSCHED_EMBED_MODEL says."""

RECENT_EMBEDDINGS = 64
"""Embeddings kept from checks, so remembering a text just checked costs no second call."""


@dataclass(frozen=True)
class NoveltyVerdict:
    """The nearest earlier item of the same kind (None if there was none), its similarity in
    [0, 1] under `method`, and whether that reaches `threshold`. `fallback_reason` says why
    MinHash was used although an embedding model was asked for."""

    kind: str
    method: str
    threshold: float
    nearest_item_id: str | None
    similarity: float
    duplicate: bool
    compared: int
    fallback_reason: str | None = None


async def acheck_novelty(
    kind: str,
    text: str,
    *,
    model: str | None = None,
    ollama_host: str | None = None,
    index: NoveltyIndex | None = None,
) -> NoveltyVerdict:
    """Compare `text` with every earlier item of `kind` (see the module doc for the method).

    `model`: an embedding model (`ollama/…`, `openai/…`), `"offline"` for MinHash, or None
    for LLMSCHED_EMBED_MODEL; `ollama_host`: the Ollama server a job named (as `call_model`
    takes it); `index`: the index to search, default the worker's database's.
    """
    kind, text = _checked(kind, text)
    embed_model = _embedding_model(model)
    settings = novelty_settings()
    index = await _index(index)
    reason = None
    if embed_model is not None:
        method = embedding_method(embed_model)
        try:
            signature = await _embedding(embed_model, text, ollama_host=ollama_host)
            nearest = await asyncio.to_thread(
                _nearest_embedding, index, kind=kind, method=method, signature=signature
            )
        except LLMError as exc:
            reason = str(exc)
            log.warning(
                "action=novelty_fallback kind=%s model=%s method=%s reason=%s",
                kind,
                embed_model,
                MINHASH.name,
                reason,
            )
        else:
            return _verdict(kind, method, settings.novelty_threshold, nearest)
    nearest = await asyncio.to_thread(
        lambda: index.nearest(kind=kind, method=MINHASH, signature=minhash_signature(text))
    )
    return _verdict(kind, MINHASH, settings.novelty_minhash_threshold, nearest, reason)


async def aremember(
    item_id: int | str,
    kind: str,
    text: str,
    *,
    model: str | None = None,
    ollama_host: str | None = None,
    index: NoveltyIndex | None = None,
) -> tuple[str, ...]:
    """Store `text`'s signatures for `item_id` (the output's id): MinHash always, and the
    embedding of `model` (as in `acheck_novelty`) unless its call fails, which is logged.
    Returns the methods the item is stored under; remembering an item again adds nothing."""
    key = _item_key(item_id)
    kind, text = _checked(kind, text)
    embed_model = _embedding_model(model)
    index = await _index(index)
    stored = [MINHASH.name]
    await asyncio.to_thread(
        lambda: index.add(item_id=key, kind=kind, method=MINHASH, signature=minhash_signature(text))
    )
    if embed_model is not None:
        method = embedding_method(embed_model)
        try:
            signature = await _embedding(embed_model, text, ollama_host=ollama_host)
            await asyncio.to_thread(
                _add_embedding, index, item_id=key, kind=kind, method=method, signature=signature
            )
        except LLMError as exc:
            log.warning(
                "action=novelty_remember_without_embedding item_id=%s kind=%s model=%s reason=%s",
                key,
                kind,
                embed_model,
                exc,
            )
        else:
            stored.append(method.name)
    log.info("action=novelty_remember item_id=%s kind=%s methods=%s", key, kind, stored)
    return tuple(stored)


def check_novelty(
    kind: str,
    text: str,
    *,
    model: str | None = None,
    ollama_host: str | None = None,
    index: NoveltyIndex | None = None,
) -> NoveltyVerdict:
    """Blocking form of `acheck_novelty`; async code must await that."""
    return _run(
        acheck_novelty(kind, text, model=model, ollama_host=ollama_host, index=index),
        "check_novelty",
    )


def remember(
    item_id: int | str,
    kind: str,
    text: str,
    *,
    model: str | None = None,
    ollama_host: str | None = None,
    index: NoveltyIndex | None = None,
) -> tuple[str, ...]:
    """Blocking form of `aremember`; async code must await that."""
    return _run(
        aremember(item_id, kind, text, model=model, ollama_host=ollama_host, index=index),
        "remember",
    )


def _run(coroutine: Coroutine[Any, Any, T], name: str) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise RuntimeError(f"{name}() blocks, so it cannot run in an event loop: await a{name}()")


async def _index(index: NoveltyIndex | None) -> NoveltyIndex:
    return index if index is not None else await asyncio.to_thread(novelty_index)


def _checked(kind: str, text: str) -> tuple[str, str]:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must not be empty: pass the output's text to compare")
    return kind, text


def _item_key(item_id: int | str) -> str:
    """Ids are stored as text: an output's integer id, or a caller's own string key."""
    if isinstance(item_id, bool) or not isinstance(item_id, int | str):
        raise ValueError(f"item_id must be an int or a str, got {type(item_id).__name__}")
    key = str(item_id).strip()
    if not key or len(key) > ITEM_ID_LENGTH:
        raise ValueError(f"item_id must have 1 to {ITEM_ID_LENGTH} characters, got {key!r}")
    return key


def _embedding_model(model: str | None) -> str | None:
    """The embedding model to use, None for MinHash; a model that cannot embed is refused
    here, before any work, as no retry or fallback would make it right."""
    chosen = (model if model is not None else novelty_settings().embed_model) or ""
    chosen = chosen.strip()
    if not chosen or chosen == OFFLINE or chosen.startswith(f"{OFFLINE}/"):
        return None
    spec = resolve_model(chosen)
    if spec.provider not in EMBEDDING_PROVIDERS:
        raise UnknownModelError(
            f"{spec.provider} offers no embeddings, so {chosen!r} cannot be the novelty "
            "check's model: set LLMSCHED_EMBED_MODEL to an ollama/… or openai/… embedding "
            f"model, or to {OFFLINE!r} (or unset) for the offline MinHash"
        )
    return str(spec)


_recent: OrderedDict[tuple[str, str | None, str], np.ndarray] = OrderedDict()
_recent_lock = threading.Lock()


async def _embedding(model: str, text: str, *, ollama_host: str | None) -> np.ndarray:
    """The text's unit embedding; an Ollama call holds its server's slot."""
    key = (model, ollama_host, hashlib.sha256(text.encode()).hexdigest())
    with _recent_lock:
        if (found := _recent.get(key)) is not None:
            _recent.move_to_end(key)
            return found
    spec = resolve_model(model)
    server = named_server(ollama_host) if ollama_host and spec.resource == "ollama" else None
    if server is not None:
        await ensure_ollama_limit_once(ollama_slot_name(server))
    slot = ollama_slot(server=server) if spec.resource == "ollama" else nullcontext()
    async with slot:
        embeddings = await aembed(
            model, [text], base_url=ollama_base_url(ollama_host) if server else None
        )
    try:
        signature = embedding_signature(embeddings.vectors[0])
    except ValueError as exc:
        raise LLMResponseError(f"{model} returned an unusable embedding: {exc}") from exc
    with _recent_lock:
        _recent[key] = signature
        while len(_recent) > RECENT_EMBEDDINGS:
            _recent.popitem(last=False)
    return signature


def _nearest_embedding(
    index: NoveltyIndex, *, kind: str, method: Method, signature: np.ndarray
) -> Nearest:
    try:
        return index.nearest(kind=kind, method=method, signature=signature)
    except DimensionMismatchError as exc:  # the model changed: its vectors are unusable
        raise LLMResponseError(str(exc)) from exc


def _add_embedding(
    index: NoveltyIndex, *, item_id: str, kind: str, method: Method, signature: np.ndarray
) -> None:
    try:
        index.add(item_id=item_id, kind=kind, method=method, signature=signature)
    except DimensionMismatchError as exc:
        raise LLMResponseError(str(exc)) from exc


def _verdict(
    kind: str, method: Method, threshold: float, nearest: Nearest, reason: str | None = None
) -> NoveltyVerdict:
    return NoveltyVerdict(
        kind=kind,
        method=method.name,
        threshold=threshold,
        nearest_item_id=nearest.item_id,
        similarity=nearest.similarity,
        duplicate=nearest.item_id is not None and nearest.similarity >= threshold,
        compared=nearest.compared,
        fallback_reason=reason,
    )
