"""INV-004 ordering: priority DESC, position ASC, job_id ASC among eligible jobs.

Eligibility holds a job back (not_before, resource full) without holding back the
jobs behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from scheduler_core import JobStatus, SchedulerService
from tests.conftest import wait_for
from tests.scheduler.rules_support import (
    GateHandler,
    drain,
    register_llm,
    run_of,
    status_of,
    wait_status,
)


def queued_names(svc: SchedulerService) -> list[str]:
    return [j.params["name"] for j in svc.list_queued_jobs()]


def test_higher_priority_runs_first(jobs: SchedulerService, handler: GateHandler) -> None:
    for name, priority in [("p0", 0), ("p-5", -5), ("p7", 7), ("p3", 3)]:
        jobs.enqueue_job("job", {"name": name}, priority=priority)
    assert queued_names(jobs) == ["p7", "p3", "p0", "p-5"]
    assert drain(jobs) == 4
    assert handler.started == ["p7", "p3", "p0", "p-5"]


def test_a_queued_job_moves_when_its_priority_changes(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    for name in ("a", "b", "c"):
        jobs.enqueue_job("job", {"name": name})
    changed = jobs.set_priority(3, 9)
    assert (changed.job_id, changed.priority, changed.status) == (3, 9, JobStatus.QUEUED)
    jobs.set_priority(1, -1)
    assert queued_names(jobs) == ["c", "b", "a"]
    assert drain(jobs) == 3
    assert handler.started == ["c", "b", "a"]


def test_same_priority_runs_in_position_order(jobs: SchedulerService, handler) -> None:
    for name, position in [("at30", 30), ("at10", 10), ("at20", 20)]:
        jobs.enqueue_job("job", {"name": name}, priority=1, position=position)
    drain(jobs)
    assert handler.started == ["at10", "at20", "at30"]


def test_same_priority_and_position_runs_in_job_id_order(jobs: SchedulerService, handler) -> None:
    created = [jobs.enqueue_job("job", {"name": f"j{i}"}, position=7) for i in range(4)]
    assert [j.job_id for j in created] == sorted(j.job_id for j in created)
    drain(jobs)
    assert handler.started == ["j0", "j1", "j2", "j3"]


def test_fifo_inside_a_priority_by_default(jobs: SchedulerService, handler) -> None:
    created = [jobs.enqueue_job("job", {"name": f"f{i}"}) for i in range(5)]
    positions = [j.position for j in created]
    assert positions == sorted(positions) and len(set(positions)) == 5
    drain(jobs)
    assert handler.started == [f"f{i}" for i in range(5)]


def test_explicit_position_places_a_job_ahead_of_earlier_jobs(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    first = jobs.enqueue_job("job", {"name": "first"})
    jobs.enqueue_job("job", {"name": "second"})
    jumper = jobs.enqueue_job("job", {"name": "jumper"}, position=first.position - 1)
    assert jumper.position == first.position - 1
    # Equal position: the lower job_id goes first.
    jobs.enqueue_job("job", {"name": "tied"}, position=first.position)
    assert queued_names(jobs) == ["jumper", "first", "tied", "second"]
    drain(jobs)
    assert handler.started == ["jumper", "first", "tied", "second"]


def test_priority_outranks_position(jobs: SchedulerService, handler: GateHandler) -> None:
    jobs.enqueue_job("job", {"name": "early-low"}, priority=0, position=1)
    jobs.enqueue_job("job", {"name": "late-high"}, priority=1, position=10**15)
    drain(jobs)
    assert handler.started == ["late-high", "early-low"]


def test_future_not_before_holds_back_only_that_job(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    held = jobs.enqueue_job("job", {"name": "held"}, priority=10, not_before=later)
    jobs.enqueue_job("job", {"name": "behind1"}, priority=5)
    jobs.enqueue_job("job", {"name": "behind2"}, priority=0)
    assert drain(jobs) == 2
    assert handler.started == ["behind1", "behind2"]
    assert status_of(jobs, held) == JobStatus.QUEUED
    assert jobs.get_job_run_for_job(held.job_id) is None


def test_job_runs_once_its_not_before_is_reached(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    not_before = datetime.now(UTC) + timedelta(seconds=0.4)
    job = jobs.enqueue_job("job", {"name": "soon"}, not_before=not_before)
    assert jobs.dispatch_one() is None
    wait_for(lambda: jobs.dispatch_one() is not None, timeout=5, what="the job to become due")
    assert handler.started == ["soon"]
    assert run_of(jobs, job).started_at >= not_before


def test_past_not_before_is_eligible_at_once(jobs: SchedulerService, handler) -> None:
    jobs.enqueue_job("job", {"name": "due"}, not_before=datetime.now(UTC) - timedelta(seconds=5))
    assert jobs.dispatch_one() is not None
    assert handler.started == ["due"]


def test_job_held_back_by_its_resource_does_not_hold_back_other_resources(
    open_service: Callable[..., SchedulerService],
) -> None:
    handler = GateHandler()
    svc = open_service()
    register_llm(svc, handler)
    worker = open_service()
    register_llm(worker, handler)
    running = svc.enqueue_job(
        "llm", {"name": "o1", "model": "ollama/llama3", "block": True}, priority=5
    )
    waiting = svc.enqueue_job("llm", {"name": "o2", "model": "ollama/llama3"}, priority=5)
    behind = svc.enqueue_job("llm", {"name": "e1", "model": "openai/gpt-4o"}, priority=0)
    assert (running.resource, waiting.resource, behind.resource) == (
        "ollama",
        "ollama",
        "external",
    )
    worker.start(concurrency=2)
    try:
        handler.wait_started("o1")
        # o2 is ahead of e1 in line but needs the busy ollama slot: e1 runs meanwhile.
        wait_status(svc, behind, JobStatus.COMPLETED)
        assert status_of(svc, running) == JobStatus.RUNNING
        assert status_of(svc, waiting) == JobStatus.QUEUED
        # Claimed in line order; their handlers then start in parallel, in any order.
        assert run_of(svc, running).started_at <= run_of(svc, behind).started_at
        assert sorted(handler.started) == ["e1", "o1"]
        handler.release("o1")
        wait_status(svc, waiting, JobStatus.COMPLETED)
        assert sorted(handler.started[:2]) == ["e1", "o1"] and handler.started[2] == "o2"
        assert run_of(svc, waiting).started_at >= run_of(svc, running).finished_at
    finally:
        handler.release_all()
        worker.stop(timeout=10)
