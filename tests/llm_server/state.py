"""What tests can steer (`POST /_control`) and observe (`GET /_stats`) on the fake server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Settings:
    delay_per_token: float = 0.0
    fail_next: int = 0
    fail_status: int = 500
    hold: bool = False


@dataclass
class Stats:
    max_concurrent_ollama: int = 0
    current_ollama: int = 0
    pieces_sent: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)


class ServerState:
    def __init__(self) -> None:
        self.settings = Settings()
        self.stats = Stats()
        self._released = asyncio.Event()
        self._released.set()

    def control(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply `changes`; `reset: true` first restores the defaults and clears the stats."""
        changes = dict(changes)
        if changes.pop("reset", False):
            self.settings, self.stats = Settings(), Stats()
        unknown = set(changes) - set(asdict(self.settings))
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self.settings, name, type(getattr(self.settings, name))(value))
        if self.settings.hold:
            self._released.clear()
        else:
            self._released.set()
        return asdict(self.settings)

    def snapshot(self) -> dict[str, Any]:
        return asdict(self.stats)

    def record(self, **request: Any) -> None:
        self.stats.requests.append(request)

    def take_failure(self) -> int | None:
        """The status to fail this request with, while `fail_next` lasts."""
        if self.settings.fail_next <= 0:
            return None
        self.settings.fail_next -= 1
        return self.settings.fail_status

    async def released(self) -> None:
        await self._released.wait()

    async def pace(self) -> None:
        """Wait `delay_per_token`; with none, still yield, so a stream that never ends cannot
        starve the server's other work (its own disconnect check among it)."""
        await asyncio.sleep(self.settings.delay_per_token)

    @contextmanager
    def ollama_in_flight(self) -> Iterator[None]:
        stats = self.stats
        stats.current_ollama += 1
        stats.max_concurrent_ollama = max(stats.max_concurrent_ollama, stats.current_ollama)
        try:
            yield
        finally:
            stats.current_ollama -= 1
