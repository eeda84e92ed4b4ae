"""The entry points flows call: pick the provider from the model string, then complete."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Unpack

from flows.llm.errors import UnknownModelError
from flows.llm.models import Completion, CompletionOptions, CompletionRequest, Message, ModelSpec
from flows.llm.providers import PROVIDERS

JSON_INSTRUCTION = "Reply with one valid JSON object and nothing else."


def resolve_model(model: str) -> ModelSpec:
    provider, sep, name = model.partition("/")
    if not sep or not name.strip() or provider not in PROVIDERS:
        known = ", ".join(sorted(PROVIDERS))
        raise UnknownModelError(
            f"cannot use model {model!r}: write it as 'provider/model' with a provider among "
            f"{known}, e.g. 'ollama/qwen3:30b' or 'offline/demo'."
        )
    return ModelSpec(provider=provider, name=name, resource=PROVIDERS[provider].resource)


async def acomplete(
    model: str, messages: Sequence[Message], **options: Unpack[CompletionOptions]
) -> Completion:
    """Stream a reply from `model` (`provider/name`).

    Options: `json_mode` (ask for and check a JSON object); `max_tokens` (sent to the server and
    enforced: a reply that goes past it is cut there, with `finish_reason="length"`);
    `timeout` (seconds the server may stay silent, default 120); `call_timeout` (seconds the
    whole call may take, default `LLMSCHED_LLM_CALL_TIMEOUT_SECONDS` or 600);
    `max_response_bytes` (body bytes read before the call fails, default
    `LLMSCHED_LLM_MAX_RESPONSE_BYTES` or 4 MiB); `on_token` (called with each text piece as it
    arrives); `base_url` (the server to call, instead of the provider's environment variable);
    `temperature` (0 to 2, Anthropic 0 to 1; None sends none, so the server's default holds).
    """
    spec = resolve_model(model)
    if options.get("json_mode"):
        messages = _with_json_instruction(messages)
    request = CompletionRequest(spec=spec, messages=messages, **options)
    completion = await PROVIDERS[spec.provider].complete(request)
    if request.json_mode:
        completion.json()
    return completion


def complete(
    model: str, messages: Sequence[Message], **options: Unpack[CompletionOptions]
) -> Completion:
    """Blocking form of `acomplete` for sync tasks; async code must await `acomplete`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop: run one (outside this handler, so no error chains onto this one)
    else:
        raise RuntimeError(
            "complete() blocks, so it cannot run in an event loop: await acomplete()"
        )
    return asyncio.run(acomplete(model, messages, **options))


def _with_json_instruction(messages: Sequence[Message]) -> list[Message]:
    """Every protocol needs the request in words too (OpenAI refuses JSON mode without it)."""
    if any("json" in str(m.get("content", "")).lower() for m in messages):
        return list(messages)
    return [{"role": "system", "content": JSON_INSTRUCTION}, *messages]
