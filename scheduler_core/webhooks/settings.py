"""Delivery settings; each can come from an `LLMSCHED_WEBHOOK_*` environment variable."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The lease must cover an attempt cut at its deadline plus recording its result (one
# short transaction), so no other sender can take a delivery over while it is sent.
RECORD_SECONDS = 1.0


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMSCHED_WEBHOOK_", extra="forbid")

    timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to connect, or to wait for any one read or write of an attempt.",
    )
    attempt_deadline: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a whole attempt may take (connect, send, status, headers, body).",
    )
    max_response_bytes: int = Field(
        default=4096,
        ge=0,
        le=1024 * 1024,
        description="Bytes of a refusal's response body read and kept in last_error.",
    )
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
        default=60.0,
        gt=0,
        description="A crashed sender's in-flight delivery is retried after; must be at "
        f"least attempt_deadline + {RECORD_SECONDS:g}.",
    )
    senders: int = Field(default=2, ge=1, description="Concurrent sender threads.")
    allow_private: bool = Field(
        default=False,
        description="Allow loopback, private, link-local and other non-global targets (a "
        "receiver on this machine or network); refused by default, at registration and "
        "at every connection, so events can not be aimed at internal services.",
    )

    @model_validator(mode="after")
    def _lease_outlives_attempt(self) -> Self:
        if self.lease_seconds < self.attempt_deadline + RECORD_SECONDS:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be at least attempt_deadline "
                f"({self.attempt_deadline:g}) + {RECORD_SECONDS:g} s to record the result, "
                "or a slow but live attempt is taken over by another sender and sent twice; "
                "raise LLMSCHED_WEBHOOK_LEASE_SECONDS or lower "
                "LLMSCHED_WEBHOOK_ATTEMPT_DEADLINE"
            )
        return self

    @property
    def max_attempts(self) -> int:
        return 1 + self.max_retries

    @property
    def max_error_chars(self) -> int:
        """The bound on a stored `last_error`: the kept body plus room for the prefix."""
        return self.max_response_bytes + 512
