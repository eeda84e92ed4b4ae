"""An event is sent when its transaction commits, not at the sender's next poll."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scheduler_core import SchedulerService
from scheduler_core.webhooks import (
    WebhookDispatcher,
    add_webhook_endpoint,
    delivery,
    install_webhooks,
)
from scheduler_core.webhooks.attempt import new_client
from tests.conftest import wait_for
from tests.scheduler.handlers import E2EJobHandler
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import FAST, LOCAL_RECEIVERS, Receiver, drain, payload


def _sleeping(dispatcher: WebhookDispatcher) -> int:
    """Senders blocked in their wait on the dispatcher's signal (the Condition's waiters)."""
    return len(dispatcher.signal._cond._waiters)  # type: ignore[attr-defined]


def _senders_wait(dispatcher: WebhookDispatcher) -> None:
    """Every sender has looked, found nothing and waits for work."""
    senders = dispatcher.settings.senders
    wait_for(lambda: _sleeping(dispatcher) == senders, what="the senders to wait for work")


def _run_one(svc: SchedulerService, name: str) -> None:
    svc.enqueue_job("e2e", {"name": name})
    assert drain(svc) == 1


def _received_its_end(rec: Receiver) -> None:
    (request,) = rec.wait_requests(1, timeout=10)
    assert payload(request)["event"] == "job.run.completed"


def test_a_run_event_is_sent_at_its_commit_not_at_the_next_poll(
    open_service: Callable[..., SchedulerService], tmp_path: Path, receiver: ReceiverFactory
) -> None:
    svc = open_service()
    svc.register("e2e", E2EJobHandler(tmp_path / "executions.jsonl"), resource="external")
    # A minute between polls: only the after-commit wake can deliver within the wait below.
    dispatcher = install_webhooks(svc, **{**FAST, **LOCAL_RECEIVERS, "poll_interval": 60})
    rec = receiver()
    add_webhook_endpoint(svc, rec.url)
    dispatcher.start()
    try:
        _senders_wait(dispatcher)  # in their 60 s wait
        _run_one(svc, "one")
        _received_its_end(rec)
    finally:
        dispatcher.stop(timeout=5)


def test_a_sender_makes_its_http_client_at_its_first_delivery_only(
    hooked: tuple[SchedulerService, WebhookDispatcher],
    receiver: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client's TLS set-up costs tens of milliseconds of CPU: a worker whose events go
    nowhere never pays it beside its first jobs."""
    made: list[object] = []

    def counted(*args: Any) -> Any:
        client = new_client(*args)
        made.append(client)
        return client

    monkeypatch.setattr(delivery, "new_client", counted)  # senders started: none made yet
    svc, dispatcher = hooked
    _senders_wait(dispatcher)
    _run_one(svc, "unobserved")
    _senders_wait(dispatcher)  # looked again
    assert made == []
    rec = receiver()
    add_webhook_endpoint(svc, rec.url)
    _run_one(svc, "observed")
    _received_its_end(rec)
    assert len(made) == 1
