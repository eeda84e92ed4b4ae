"""DEC-008 crash recovery: only dead workers' RUNNING jobs are failed (and retried);
live workers are never touched; recovery is idempotent; the queue survives restarts.

Crashes are real: a worker subprocess is SIGKILLed while its job is RUNNING.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from scheduler_core import (
    JobGroupStatus,
    JobRunStatus,
    JobStatus,
    RecoveryReport,
    SchedulerService,
)
from tests.conftest import wait_for
from tests.scheduler.handlers import E2EJobHandler
from tests.scheduler.rules_support import (
    GateHandler,
    drain,
    kill,
    run_of,
    start_module,
    status_of,
    wait_status,
)


def e2e_service(
    open_service: Callable[..., SchedulerService], tmp_path: Path, **overrides: object
) -> SchedulerService:
    svc = open_service(**overrides)
    svc.register("e2e", E2EJobHandler(tmp_path / "local.jsonl"), resource="external")
    return svc


def start_serving_worker(db_url: str, tmp_path: Path):
    return start_module(
        "tests.scheduler.worker_process", db_url, str(tmp_path / "worker.jsonl"), "--serve"
    )


def running_in_worker(svc: SchedulerService, db_url: str, tmp_path: Path, **enqueue: object):
    """A blocking job RUNNING in a live worker subprocess: (job, process)."""
    job = svc.enqueue_job("e2e", {"name": "victim", "block": True}, **enqueue)
    proc = start_serving_worker(db_url, tmp_path)
    try:
        wait_status(svc, job, JobStatus.RUNNING, timeout=30)
    except BaseException:
        kill(proc)
        raise
    return svc.get_job(job.job_id), proc


def test_live_workers_running_job_is_never_recovered(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    # A tiny heartbeat timeout: on the same host, the live pid decides, not the heartbeat.
    svc = e2e_service(open_service, tmp_path, heartbeat_timeout=0.05)
    job, proc = running_in_worker(svc, db_url, tmp_path)
    try:
        for _ in range(3):
            report = svc.recover()
            assert report.running_jobs_recovered == 0
            assert report.workers_marked_dead == 0
        other = e2e_service(open_service, tmp_path, heartbeat_timeout=0.05)
        assert other.recover().running_jobs_recovered == 0
        assert status_of(svc, job) == JobStatus.RUNNING
        assert run_of(svc, job).status == JobRunStatus.RUNNING
    finally:
        kill(proc)
    report = svc.recover()
    assert report.running_jobs_recovered == 1
    assert report.recovered_job_ids == [job.job_id]
    assert report.retries_created == 1
    assert status_of(svc, job) == JobStatus.FAILED
    run = run_of(svc, job)
    assert run.status == JobRunStatus.FAILED
    assert run.finished_at is not None
    assert "recovered after crash" in run.error
    (retry,) = svc.list_queued_jobs()
    assert retry.retry_of == job.job_id and retry.attempt == 2


def test_worker_on_another_host_is_dead_once_its_heartbeat_times_out(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    timeout = 2.5
    svc = e2e_service(open_service, tmp_path, heartbeat_timeout=timeout)
    job, proc = running_in_worker(svc, db_url, tmp_path)
    worker_id = job.worker_id
    assert worker_id is not None
    try:
        # Pretend the worker lives on another host: only its heartbeat can tell.
        svc.db.write(
            lambda c: c.execute(
                sa.text("UPDATE worker SET host = 'elsewhere.invalid' WHERE worker_id = :w"),
                {"w": worker_id},
            )
        )
        moved = heartbeat_of(svc, worker_id)
        wait_for(lambda: heartbeat_of(svc, worker_id) > moved, what="the worker's next heartbeat")
        assert svc.recover().running_jobs_recovered == 0
        assert status_of(svc, job) == JobStatus.RUNNING
    finally:
        kill(proc)
    last_beat = heartbeat_of(svc, worker_id)
    # Its pid is gone, but pids mean nothing across hosts: still alive by heartbeat.
    assert svc.recover().running_jobs_recovered == 0
    assert status_of(svc, job) == JobStatus.RUNNING
    wait_for(
        lambda: svc.recover().running_jobs_recovered == 1,
        timeout=10,
        what="recovery after the heartbeat timeout",
    )
    assert (datetime.now(UTC) - last_beat).total_seconds() >= timeout
    assert status_of(svc, job) == JobStatus.FAILED
    assert "recovered after crash" in run_of(svc, job).error
    (worker,) = [w for w in svc.list_workers() if w.worker_id == worker_id]
    assert worker.status == "DEAD"


def heartbeat_of(svc: SchedulerService, worker_id: str) -> datetime:
    (worker,) = [w for w in svc.list_workers() if w.worker_id == worker_id]
    return worker.heartbeat_at


def test_recovery_is_idempotent(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    svc = e2e_service(open_service, tmp_path)
    peer = e2e_service(open_service, tmp_path)
    job, proc = running_in_worker(svc, db_url, tmp_path)
    kill(proc)
    reports: list[RecoveryReport] = []
    lock = threading.Lock()

    def recover(s: SchedulerService) -> None:
        report = s.recover()
        with lock:
            reports.append(report)

    threads = [threading.Thread(target=recover, args=(s,)) for s in (svc, peer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(reports) == 2
    assert sum(r.running_jobs_recovered for r in reports) == 1
    assert sum(r.retries_created for r in reports) == 1
    again = svc.recover()
    assert again.running_jobs_recovered == 0 and again.retries_created == 0
    chain = svc.get_retry_chain(job.job_id)
    assert len(chain) == 2
    assert len(svc.list_jobs()) == 2
    assert run_of(svc, chain[0]).status == JobRunStatus.FAILED


def test_recovery_gives_back_the_dead_runs_resource_slot(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    svc = e2e_service(open_service, tmp_path)
    svc.set_resource_limit("external", 1)
    victim, proc = running_in_worker(svc, db_url, tmp_path, max_retries=0)
    kill(proc)
    nxt = svc.enqueue_job("e2e", {"name": "next"})
    assert svc.dispatch_one() is None  # the dead run still holds the only slot
    assert svc.recover().running_jobs_recovered == 1
    assert svc.dispatch_one() is not None
    assert status_of(svc, nxt) == JobStatus.COMPLETED
    assert status_of(svc, victim) == JobStatus.FAILED


def test_queued_jobs_and_their_order_survive_a_restart(
    open_service: Callable[..., SchedulerService],
) -> None:
    handler = GateHandler()
    first = open_service()
    first.register("job", handler, resource="external")
    for name, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 9), ("e", 5)]:
        first.enqueue_job("job", {"name": name, "payload": {"k": [1, 2]}}, priority=priority)
    group, members = first.create_job_group(
        [{"job_type": "job", "params": {"name": f"g{i}"}} for i in range(2)], name="survivor"
    )
    before = first.list_queued_jobs()
    first.close()

    second = open_service()
    second.register("job", handler, resource="external")
    after = second.list_queued_jobs()
    assert [j.model_dump() for j in after] == [j.model_dump() for j in before]
    assert drain(second) == 7
    assert handler.started == ["d", "b", "e", "a", "c", "g0", "g1"]
    assert second.get_job_group(group.group_id).status == JobGroupStatus.COMPLETED
    assert all(status_of(second, m) == JobStatus.COMPLETED for m in members)


def test_starting_a_worker_recovers_dead_workers_jobs_first(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    local = E2EJobHandler(tmp_path / "local.jsonl")
    local.release.set()  # the retry runs here and must not block
    svc = open_service()
    svc.register("e2e", local, resource="external")
    job, proc = running_in_worker(svc, db_url, tmp_path)
    kill(proc)
    svc.start(concurrency=1)
    try:
        assert status_of(svc, job) == JobStatus.FAILED  # recovered before start() returned
        wait_for(lambda: len(svc.get_retry_chain(job.job_id)) == 2, what="the retry")
        retry = svc.get_retry_chain(job.job_id)[1]
        wait_status(svc, retry, JobStatus.COMPLETED)
    finally:
        assert svc.stop(timeout=10)
    assert "recovered after crash" in run_of(svc, job).error
    assert local.names() == ["victim"]


def test_a_running_worker_periodically_recovers_a_worker_that_died_meanwhile(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    observer = e2e_service(open_service, tmp_path)
    # A running service that never takes "e2e" jobs itself, only recovers.
    looper = open_service(recovery_interval=0.2)
    looper.register("other", GateHandler(), resource="external")
    looper.start(concurrency=1)
    try:
        job, proc = running_in_worker(observer, db_url, tmp_path)
        kill(proc)
        wait_status(observer, job, JobStatus.FAILED, timeout=5)
    finally:
        assert looper.stop(timeout=10)
    assert "recovered after crash" in run_of(observer, job).error
    original, retry = observer.get_retry_chain(job.job_id)
    assert original.job_id == job.job_id
    assert retry.status == JobStatus.QUEUED and retry.attempt == 2
