"""A claim passes over an endpoint with a delivery in flight, also when claims race on
PostgreSQL (a concurrent claim's lease is not yet visible to the query), and the idle
sender sleeps until the busy endpoint's lease ends instead of spinning on its backlog."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.engine import Connection

from scheduler_core import SchedulerService
from scheduler_core.values import utcnow
from scheduler_core.webhooks import add_webhook_endpoint, install_webhooks
from scheduler_core.webhooks import deliveries as sql
from scheduler_core.webhooks.deliveries import Claimed
from tests.webhooks.support import FAST, LOCAL_RECEIVERS, drain

LEASE = 30.0


def test_one_delivery_per_endpoint_in_flight_even_when_claims_race(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    # The sender is never started: this test claims.
    install_webhooks(svc, **FAST, **LOCAL_RECEIVERS)
    svc.register("noop", lambda params: [])
    first = add_webhook_endpoint(svc, "http://127.0.0.1:9/first")
    second = add_webhook_endpoint(svc, "http://127.0.0.1:9/second")
    for i in range(3):
        svc.enqueue_job("noop", {"i": i})
    drain(svc)  # 3 events x 2 endpoints, all due
    postgres = svc.store.is_postgres

    def claim(conn: Connection) -> Claimed | None:
        return sql.claim_due(conn, is_postgres=postgres, lease_seconds=LEASE, now=utcnow())

    with svc.db.engine.connect() as held:
        with held.begin():
            a = claim(held)
            assert a is not None and a.endpoint_id == first.endpoint_id
            if postgres:
                # `a` is not committed: its lease is invisible to other snapshots, so
                # the next claim's query still sees the first endpoint as free.
                b, c = svc.db.write(claim), svc.db.write(claim)
        if not postgres:  # SQLite runs write transactions one at a time
            b, c = svc.db.write(claim), svc.db.write(claim)
    assert b is not None and b.endpoint_id == second.endpoint_id
    assert c is None  # both endpoints have a delivery in flight
    assert svc.db.write(claim) is None
    # Four deliveries are due, but none can be claimed before a lease ends.
    wake = svc.db.read(sql.next_wake)
    assert wake is not None and wake >= utcnow() + timedelta(seconds=LEASE - 5)
