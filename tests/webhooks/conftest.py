"""Fixtures of the webhook tests: receivers that are always stopped, a hooked service."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler_core import SchedulerService
from scheduler_core.webhooks import WebhookDispatcher, install_webhooks
from tests.scheduler.handlers import E2EJobHandler
from tests.webhooks.support import FAST, LOCAL_RECEIVERS, RECEIVER, Receiver

ReceiverFactory = Callable[..., Receiver]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverFactory]:
    """Factory: `receiver("--fail-first", "2")` starts one; all are stopped at teardown.

    `module=HOSTILE` starts the hostile receiver (tests/webhooks/hostile.py) instead.
    """
    made: list[Receiver] = []
    counter = itertools.count()

    def factory(*args: str, port: int = 0, start: bool = True, module: str = RECEIVER) -> Receiver:
        rec = Receiver(tmp_path / f"receiver{next(counter)}", *args, port=port, module=module)
        made.append(rec)
        return rec.start() if start else rec

    yield factory
    for rec in made:
        rec.stop()


@pytest.fixture
def hooked(
    open_service: Callable[..., SchedulerService], tmp_path: Path
) -> Iterator[tuple[SchedulerService, WebhookDispatcher]]:
    """A service with webhooks installed, fast retry settings and receivers on 127.0.0.1
    allowed; the sender is started."""
    svc = open_service()
    svc.register("e2e", E2EJobHandler(tmp_path / "executions.jsonl"), resource="external")
    dispatcher = install_webhooks(svc, **FAST, **LOCAL_RECEIVERS)
    dispatcher.start()
    yield svc, dispatcher
    dispatcher.stop(timeout=5)
