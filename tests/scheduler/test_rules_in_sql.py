"""The claim states two rules in SQL (store/hot.py): the dispatch order and "room in a
resource class". These tests hold the SQL to the Python rules of rules/, on every
backend."""

from __future__ import annotations

import random

import pytest

from scheduler_core import SchedulerService
from scheduler_core.rules.ordering import dispatch_key
from scheduler_core.rules.resources import has_room


@pytest.mark.parametrize("limit", [None, 1, 2, 3])
def test_a_claim_finds_room_exactly_when_has_room_says_so(
    svc: SchedulerService, limit: int | None
) -> None:
    svc.register("job", lambda params: None, resource="capped")
    svc.set_resource_limit("capped", limit)
    for _ in range(5):
        svc.enqueue_job("job")
    running = 0
    for _ in range(5):
        claim = svc.claim_next()
        assert (claim is not None) == has_room(limit=limit, running=running)
        if claim is None:
            break
        running += 1
    assert running == (5 if limit is None else limit)


def test_claims_follow_dispatch_key(svc: SchedulerService) -> None:
    svc.register("job", lambda params: None, resource="external")
    rng = random.Random(7)
    queued = [svc.enqueue_job("job", priority=rng.randint(0, 4)) for _ in range(40)]
    claimed = []
    while (claim := svc.claim_next()) is not None:
        claimed.append(claim.job.job_id)
    assert claimed == [job.job_id for job in sorted(queued, key=dispatch_key)]
