"""What the story and research pipelines share: the model call, parameter checks, output files
and the run's summary artifact."""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.guard import ensure_ollama_limit_once, ollama_slot
from flows.library import guard_call, record_completion
from flows.llm import Completion, Message, acomplete, resolve_model
from flows.llm.providers.ollama_api import ollama_base_url
from flows.ollama_servers import named_server, ollama_slot_name
from flows.outputs import note_output, prepare_output_dir
from scheduler_core.files import open_private

SLUG_LENGTH = 40

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def output_root(output_dir: str | None) -> Path:
    """`output_dir` inside the artifacts directory (`$LLMSCHED_HOME/artifacts`, or a root
    in LLMSCHED_OUTPUT_ROOTS), else that directory; checked with symlinks resolved and
    created private, so a first run needs no set-up (outputs.py)."""
    return prepare_output_dir(output_dir)


def slugify(text: str) -> str:
    """Lowercase letters, digits and dashes only: safe in file names and Prefect artifact keys."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")
    return slug[:SLUG_LENGTH].rstrip("-") or "untitled"


def require_text(value: str, *, name: str, example: str) -> str:
    """The stripped value; a blank one fails before any model time is spent on it."""
    if not value or not value.strip():
        raise ValueError(f"{name} must not be empty: pass a {name} such as {example!r}")
    return value.strip()


def write_output(directory: Path, *, kind: str, about: str, suffix: str, text: str) -> Path:
    """Write under a fresh `<kind>-<slug of about>-<short-id>` name; exclusive, so no run
    overwrites another's output."""
    path = directory / f"{kind}-{slugify(about)}-{uuid.uuid4().hex[:8]}.{suffix}"
    note_output(path)  # before writing: a cancel mid-write removes what was written
    with open_private(path, "x") as file:
        file.write(text)
    return path


@task(name="call-model", retries=0, cache_policy=NO_CACHE)
async def call_model(
    model: str,
    messages: Sequence[Message],
    *,
    json_mode: bool = False,
    max_tokens: int | None = None,
    ollama_host: str | None = None,
    temperature: float | None = None,
) -> Completion:
    """One completion; a local Ollama model is only called while holding its server's slot
    (`ollama_host`, if the operator allows it, else the worker's OLLAMA_HOST). Every call's
    tokens and cost are recorded for the current run, and a hosted call that would pass a
    spending cap is refused before it is made (flows/library)."""
    logger = get_run_logger()
    spec = resolve_model(model)
    # A hosted call that would pass a spending cap fails here, before any cost (caps.py).
    await asyncio.to_thread(guard_call, model, messages, max_tokens=max_tokens)
    server = named_server(ollama_host) if ollama_host and spec.resource == "ollama" else None
    logger.info("calling %s (resource %s%s)", spec, spec.resource, f" on {server}" * bool(server))
    started = time.perf_counter()
    if server is not None:  # a worker creates its own server's limit at start; this one now
        await ensure_ollama_limit_once(ollama_slot_name(server))
    slot = ollama_slot(server=server) if spec.resource == "ollama" else nullcontext()
    base_url = ollama_base_url(ollama_host) if server else None
    async with slot:
        completion = await acomplete(
            model,
            messages,
            json_mode=json_mode,
            max_tokens=max_tokens,
            base_url=base_url,
            temperature=temperature,
        )
    await asyncio.to_thread(record_completion, completion)  # usage and cost, on the run
    logger.info(
        "%s/%s answered in %.2fs: %s input tokens, %s output tokens, finish %s",
        completion.provider,
        spec.name,
        time.perf_counter() - started,
        completion.input_tokens,
        completion.output_tokens,
        completion.finish_reason,
    )
    return completion


@task(name="publish-artifact", retries=0, cache_policy=NO_CACHE)
async def publish_artifact(*, kind: str, about: str, markdown: str, description: str) -> str:
    """A Markdown summary in the Prefect UI under `<kind>-<slug of about>`; returns the key."""
    key = f"{kind}-{slugify(about)}"
    await acreate_markdown_artifact(markdown=markdown, key=key, description=description)
    get_run_logger().info("published artifact %s", key)
    return key
