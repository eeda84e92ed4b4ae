"""Every setting with its default; each can come from an `LLMSCHED_*` environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SchedulerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMSCHED_", extra="forbid")

    home: Path = Field(
        default=Path("~/.llmsched"),
        description="Data directory: database, artifacts, logs; created private (files.py).",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<home>/jobs.db."
    )
    log_dir: Path | None = Field(
        default=None, description="Per-run log files; default <home>/logs."
    )
    max_retries: int = Field(default=3, ge=0, description="Automatic retries per job (DEC-007).")
    retry_backoff_seconds: float = Field(default=10.0, ge=0, description="First retry delay.")
    retry_backoff_factor: float = Field(default=2.0, ge=1, description="Backoff multiplier.")
    retry_backoff_max_seconds: float = Field(default=600.0, ge=0, description="Backoff cap.")
    heartbeat_interval: float = Field(default=5.0, gt=0, description="Worker heartbeat period.")
    heartbeat_timeout: float = Field(
        default=60.0, gt=0, description="A worker on another host is dead after this silence."
    )
    recovery_interval: float = Field(
        default=30.0, gt=0, description="How often a running worker looks for crashed jobs."
    )
    reservation_ttl: float = Field(
        default=60.0, gt=0, description="A direct reservation whose holder vanished expires."
    )
    cancel_check_interval: float = Field(
        default=1.0, gt=0, description="How often a busy worker looks for cancelled jobs."
    )
    poll_interval: float = Field(
        default=0.5, gt=0, description="Fallback poll for work submitted by other processes."
    )
    direct_poll_interval: float = Field(
        default=0.01, gt=0, description="How often a waiting direct execution re-checks slots."
    )
    job_timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A job's execution deadline, unless its type or the job sets one.",
    )
    db_retry_seconds: float = Field(
        default=30.0, ge=0, description="How long a locked/unreachable database is retried."
    )

    def resolved_home(self) -> Path:
        return self.home.expanduser()

    def resolved_log_dir(self) -> Path:
        return (self.log_dir or self.resolved_home() / "logs").expanduser()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home() / 'jobs.db'}"
