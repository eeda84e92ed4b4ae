"""Delivery settings; each can come from an `LLMSCHED_WEBHOOK_*` environment variable."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMSCHED_WEBHOOK_", extra="forbid")

    timeout: float = Field(default=10.0, gt=0, description="Seconds per HTTP attempt.")
    max_retries: int = Field(default=3, ge=0, description="Retries after the first attempt.")
    backoff_seconds: float = Field(default=10.0, ge=0, description="Delay before retry 1.")
    backoff_factor: float = Field(default=2.0, ge=1, description="Backoff multiplier.")
    backoff_max_seconds: float = Field(default=600.0, ge=0, description="Backoff cap.")
    jitter: float = Field(
        default=0.2, ge=0, le=1, description="Up to this fraction is added to each delay."
    )
    retry_after_max_seconds: float = Field(
        default=3600.0, ge=0, description="Cap on a receiver's Retry-After."
    )
    poll_interval: float = Field(
        default=5.0, gt=0, description="Fallback poll for events written by other processes."
    )
    lease_seconds: float = Field(
        default=60.0, gt=0, description="A crashed sender's in-flight delivery is retried after."
    )
    senders: int = Field(default=2, ge=1, description="Concurrent sender threads.")

    @model_validator(mode="after")
    def _lease_outlives_attempt(self) -> Self:
        if self.lease_seconds <= self.timeout:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds}) must exceed timeout ({self.timeout}), "
                "or a slow but live attempt is taken over and sent twice"
            )
        return self

    @property
    def max_attempts(self) -> int:
        return 1 + self.max_retries
