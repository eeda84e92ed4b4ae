"""DEC-011 resources: at most one `ollama` job runs at any time across every worker;
`external` jobs run concurrently up to the slots."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scheduler_core import ConfigurationError, JobRunStatus, JobStatus, SchedulerService
from tests.conftest import wait_for
from tests.scheduler.llm_worker_process import hold
from tests.scheduler.rules_support import (
    GateHandler,
    by_model,
    kill,
    register_llm,
    run_of,
    start_module,
    wait_status,
)


class ConcurrencyProbe:
    """A handler that records, per resource, how many of its jobs run at once.

    An `external` job waits (bounded) until it has overlapped with another one, so
    concurrency, when the scheduler allows it, is observed rather than hoped for.
    An `ollama` job holds its slot briefly, so an illegal overlap would be seen.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.overlapped = threading.Event()

    def __call__(self, params: dict[str, Any]) -> list[str]:
        resource = by_model(params)
        with self._lock:
            self.active[resource] += 1
            self.peak[resource] = max(self.peak[resource], self.active[resource])
            if resource == "external" and self.active[resource] >= 2:
                self.overlapped.set()
        try:
            if resource == "external":
                self.overlapped.wait(timeout=5)
            else:
                time.sleep(0.03)  # simulated model work: long enough to expose an overlap
        finally:
            with self._lock:
                self.active[resource] -= 1
        return []


def test_at_most_one_ollama_job_runs_across_workers_while_external_jobs_run_concurrently(
    open_service: Callable[..., SchedulerService],
) -> None:
    probe = ConcurrencyProbe()
    services = [open_service(), open_service()]
    for s in services:
        register_llm(s, probe)
    svc = services[0]
    models = itertools.cycle(["ollama/llama3", "openai/gpt-4o", "anthropic/claude", "ollama/qwen"])
    jobs = [svc.enqueue_job("llm", {"i": i, "model": next(models)}) for i in range(16)]
    assert Counter(j.resource for j in jobs) == {"ollama": 8, "external": 8}
    for s in services:
        s.start(concurrency=2)
    try:
        wait_for(
            lambda: all(j.status.is_terminal for j in svc.list_jobs()),
            timeout=30,
            what="every job to finish",
        )
    finally:
        for s in services:
            assert s.stop(timeout=10)
    assert all(j.status == JobStatus.COMPLETED for j in svc.list_jobs())
    assert probe.peak["ollama"] == 1
    assert probe.peak["external"] >= 2
    # The database agrees: no two ollama runs overlap in time.
    runs = sorted(
        (run_of(svc, j) for j in jobs if j.resource == "ollama"), key=lambda r: r.started_at
    )
    assert all(r.status == JobRunStatus.COMPLETED for r in runs)
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at <= later.started_at


def test_ollama_jobs_wait_for_each_other_while_external_work_uses_free_slots(
    open_service: Callable[..., SchedulerService],
) -> None:
    handler = GateHandler()
    svc = open_service()
    register_llm(svc, handler)
    o1 = svc.enqueue_job("llm", {"name": "o1", "model": "ollama/a", "block": True})
    o2 = svc.enqueue_job("llm", {"name": "o2", "model": "ollama/b"})
    e1 = svc.enqueue_job("llm", {"name": "e1", "model": "openai/x", "block": True})
    e2 = svc.enqueue_job("llm", {"name": "e2", "model": "openai/y", "block": True})
    svc.start(concurrency=3)
    try:
        for name in ("o1", "e1", "e2"):
            handler.wait_started(name)
        # Three running on three slots: one ollama and two external at once.
        running = {j.job_id for j in svc.list_jobs(JobStatus.RUNNING)}
        assert running == {o1.job_id, e1.job_id, e2.job_id}
        assert svc.get_job(o2.job_id).status == JobStatus.QUEUED
        handler.release("e1")
        handler.release("e2")
        wait_for(lambda: svc.get_job(e2.job_id).status == JobStatus.COMPLETED, what="e2 to finish")
        # Free slots, yet o2 still waits for o1.
        assert svc.get_job(o2.job_id).status == JobStatus.QUEUED
        assert svc.dispatch_one() is None
        handler.release("o1")
        wait_for(lambda: svc.get_job(o2.job_id).status == JobStatus.COMPLETED, what="o2 to finish")
    finally:
        handler.release_all()
        assert svc.stop(timeout=10)
    assert run_of(svc, o2).started_at >= run_of(svc, o1).finished_at


def test_resource_is_derived_from_params_by_the_registered_rule(
    svc: SchedulerService,
) -> None:
    register_llm(svc, GateHandler())
    assert svc.enqueue_job("llm", {"model": "ollama/llama3"}).resource == "ollama"
    assert svc.enqueue_job("llm", {"model": "openai/gpt-4o"}).resource == "external"
    assert svc.resource_limits()["ollama"] == 1


def test_resource_rule_returning_an_invalid_name_is_refused(svc: SchedulerService) -> None:
    svc.register("bad", GateHandler(), resource=lambda p: "no spaces allowed")
    with pytest.raises(ConfigurationError, match="invalid resource class"):
        svc.enqueue_job("bad", {})
    assert svc.list_jobs() == []


def test_an_ollama_job_in_another_process_holds_back_ollama_but_not_external_work(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "release-remote"
    svc = open_service()
    register_llm(svc, hold)
    remote_job = svc.enqueue_job(
        "llm", {"name": "remote", "model": "ollama/llama3", "hold_until": str(gate)}
    )
    proc = start_module("tests.scheduler.llm_worker_process", db_url, "--concurrency", "2")
    try:
        wait_status(svc, remote_job, JobStatus.RUNNING, timeout=30)
        assert svc.get_job(remote_job.job_id).worker_id != svc.worker_id
        # This process's worker must not start an ollama job while the remote one runs;
        # the remote worker's own free slot takes the external job or this one does.
        local_ollama = svc.enqueue_job("llm", {"name": "local-o", "model": "ollama/qwen"})
        external = svc.enqueue_job("llm", {"name": "ext", "model": "openai/gpt-4o"})
        svc.start(concurrency=2)
        wait_status(svc, external, JobStatus.COMPLETED)
        assert svc.get_job(local_ollama.job_id).status == JobStatus.QUEUED
        assert svc.get_job(remote_job.job_id).status == JobStatus.RUNNING
        gate.touch()
        wait_status(svc, local_ollama, JobStatus.COMPLETED)
    finally:
        gate.touch()
        svc.stop(timeout=10)
        kill(proc)
    assert run_of(svc, local_ollama).started_at >= run_of(svc, remote_job).finished_at


def test_workers_bound_to_different_instances_run_capped_jobs_side_by_side(
    open_service: Callable[..., SchedulerService],
) -> None:
    """A class bound to an instance per worker is capped per instance: workers of two
    model servers each run one such job; a third worker on server A waits for A."""
    services = [open_service() for _ in range(3)]
    for svc, instance in zip(services, ("llm@a", "llm@a", "llm@b"), strict=True):
        svc.set_resource_limit("llm", 1)
        svc.register("gen", lambda p: None, resource="llm")
        svc.bind_resource("llm", instance)
    a1, a2, b = services
    a1.enqueue_jobs([{"job_type": "gen"}] * 4)
    first, on_b = a1.claim_next(), b.claim_next()
    assert first is not None and first.job.slot == "llm@a"
    assert on_b is not None and on_b.job.slot == "llm@b"
    assert a2.claim_next() is None  # server A's one slot is taken
    assert b.claim_next() is None  # and so is B's
    limits = a1.resource_limits()
    assert limits["llm@a"] == limits["llm@b"] == 1  # recorded for status and locks
    a1.execute_claim(first)
    then = a2.claim_next()
    assert then is not None and then.job.slot == "llm@a"
    # An unbound worker runs the class in the class's own slot, apart from the instances.
    unbound = open_service()
    unbound.register("gen", lambda p: None, resource="llm")
    last = unbound.claim_next()
    assert last is not None and last.job.slot == "llm"
    assert unbound.claim_next() is None


def test_a_direct_execution_takes_its_workers_instance_of_a_capped_class(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    svc.set_resource_limit("llm", 1)
    svc.register("gen", lambda p: None, resource="llm")
    svc.bind_resource("llm", "llm@here")
    run = svc.execute_direct("gen", {}, timeout=10)
    assert run.status is JobRunStatus.COMPLETED
    assert svc.get_job(run.job_id).slot == "llm@here"


def test_a_job_naming_an_instance_shares_the_instance_slot_and_its_cap(
    open_service: Callable[..., SchedulerService],
) -> None:
    """A job whose class is an instance (`llm@b`: it names its server) is capped like the
    class, and shares the slot with the jobs that a worker bound to `llm@b` runs."""
    on_a, on_b = open_service(), open_service()
    for svc, instance in ((on_a, "llm@a"), (on_b, "llm@b")):
        svc.set_resource_limit("llm", 1)
        svc.register("gen", lambda p: None, resource=lambda p: p.get("server", "llm"))
        svc.bind_resource("llm", instance)
    named = on_a.enqueue_job("gen", {"server": "llm@b"}, priority=1)
    on_a.enqueue_job("gen", {})
    assert on_a.resource_limits()["llm@b"] == 1
    first = on_a.claim_next()  # worker A runs the job named for server B, in B's slot
    assert first is not None and first.job.job_id == named.job_id
    assert first.job.slot == "llm@b"
    assert on_b.claim_next() is None  # B's slot is taken
    second = on_a.claim_next()  # A's own slot is free
    assert second is not None and second.job.slot == "llm@a"
    assert on_a.enqueue_job("gen", {"server": "new@x"}).resource == "new@x"
    assert on_a.resource_limits()["new@x"] is None  # an uncapped class's instance
