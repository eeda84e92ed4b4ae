"""The LLM layer: one call for Ollama, OpenAI, Anthropic and an offline stand-in, chosen by a
`provider/model` string, streaming over httpx, failing with `LLMError`s that say what to fix."""

from flows.llm.client import acomplete, complete, resolve_model
from flows.llm.embeddings import Embeddings, aembed, embed
from flows.llm.errors import (
    AuthenticationError,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMTimeoutError,
    UnknownModelError,
)
from flows.llm.models import Completion, Message, ModelSpec, Resource, TokenCallback

__all__ = [
    "AuthenticationError",
    "Completion",
    "Embeddings",
    "LLMConnectionError",
    "LLMError",
    "LLMResponseError",
    "LLMTimeoutError",
    "Message",
    "ModelSpec",
    "Resource",
    "TokenCallback",
    "UnknownModelError",
    "acomplete",
    "aembed",
    "complete",
    "embed",
    "resolve_model",
]
