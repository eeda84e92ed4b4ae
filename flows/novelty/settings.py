"""The novelty settings, from `LLMSCHED_*` environment variables, read at each call so that a
worker picks up a change at its next job."""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from scheduler_core.errors import ConfigurationError

DEFAULT_EMBEDDING_THRESHOLD = 0.92
"""Cosine similarity of two embeddings above which a text counts as a repeat. Two stories on
one theme from one model already score 0.7-0.85 with common embedding models (they share
topic, register and vocabulary); a rewrite of the same story scores above 0.95."""

DEFAULT_MINHASH_THRESHOLD = 0.5
"""Estimated Jaccard similarity of two texts' three-word shingles above which a text counts
as a repeat. Independent texts share almost no three-word sequences (under 0.1 even on one
theme); half of them shared means large passages were copied."""


class NoveltySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMSCHED_", extra="ignore")

    embed_model: str | None = Field(
        default=None,
        description="Embedding model, e.g. ollama/nomic-embed-text; unset: the offline MinHash.",
    )
    novelty_threshold: float = Field(
        default=DEFAULT_EMBEDDING_THRESHOLD,
        gt=0,
        le=1,
        description="Cosine similarity at or above which an embedding check finds a repeat.",
    )
    novelty_minhash_threshold: float = Field(
        default=DEFAULT_MINHASH_THRESHOLD,
        gt=0,
        le=1,
        description="Jaccard estimate at or above which the offline check finds a repeat.",
    )
    novelty_rewrites: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Rewrites of a near-duplicate (another structure or angle) before the job "
        "ends as a near-duplicate.",
    )


def novelty_settings() -> NoveltySettings:
    """The settings now; an invalid value is one `ConfigurationError` naming the variable."""
    try:
        settings = NoveltySettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"LLMSCHED_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(
            f"invalid novelty settings ({problems}); see docs/novelty.md#settings"
        ) from None
    if settings.embed_model is not None and not settings.embed_model.strip():
        settings.embed_model = None
    return settings
