"""The invariants: INV-001 params immutable after QUEUED; INV-002 a JobRun only changes
status/finished_at/exit_code/error/artifacts after creation; terminal statuses never
change; exactly one JobRun per executed or skipped job."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scheduler_core import (
    ExecutionContext,
    Job,
    JobGroupStatus,
    JobNotCancellableError,
    JobRun,
    JobRunStatus,
    JobStatus,
    ParamsImmutableError,
    SchedulerService,
    StaleStateError,
)
from tests.scheduler.rules_support import (
    GateHandler,
    drain,
    run_in_thread,
    run_of,
    status_of,
)

# INV-002: the only JobRun fields that may change after the run was created.
MUTABLE_RUN_FIELDS = {"status", "finished_at", "exit_code", "error", "artifacts"}


def frozen_fields(run: JobRun) -> dict[str, Any]:
    return {k: v for k, v in run.model_dump().items() if k not in MUTABLE_RUN_FIELDS}


# ---------------------------------------------------------------- INV-001


def test_params_can_change_while_queued_and_the_run_uses_the_new_params(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "old"})
    updated = jobs.update_job_params(job.job_id, {"name": "new", "n": 2})
    assert updated.params == {"name": "new", "n": 2}
    _, run = jobs.dispatch_one()
    assert handler.started == ["new"]
    assert run.params_snapshot == {"name": "new", "n": 2}


def test_params_are_immutable_once_the_job_left_queued(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    running = jobs.enqueue_job("job", {"name": "running", "block": True})
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("running")
        with pytest.raises(ParamsImmutableError, match="INV-001"):
            jobs.update_job_params(running.job_id, {"name": "x"})
    finally:
        handler.release("running")
        thread.join(10)
    cancelled = jobs.enqueue_job("job", {"name": "cancelled"})
    jobs.cancel_job(cancelled.job_id)
    failed = jobs.enqueue_job("job", {"name": "failed", "fail": -1}, max_retries=0)
    drain(jobs)
    for job in (running, cancelled, failed):
        with pytest.raises(ParamsImmutableError):
            jobs.update_job_params(job.job_id, {"name": "x"})
        assert jobs.get_job(job.job_id).params == job.params
    assert run_of(jobs, running).params_snapshot == running.params


# ---------------------------------------------------------------- INV-002


def running_snapshot(
    svc: SchedulerService, handler: GateHandler, job: Job
) -> tuple[dict[str, Any], JobRun]:
    """Run `job` (which blocks) and return its run's frozen fields while RUNNING, then the
    run after it finished."""
    name = job.params["name"]
    thread, _ = run_in_thread(svc.dispatch_one)
    try:
        handler.wait_started(name)
        created = run_of(svc, job)
        assert created.status == JobRunStatus.RUNNING
    finally:
        handler.release(name)
        thread.join(10)
    return frozen_fields(created), run_of(svc, job)


def test_completed_run_changes_only_its_outcome_fields(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "ok", "block": True})
    before, after = running_snapshot(jobs, handler, job)
    assert after.status == JobRunStatus.COMPLETED
    assert after.finished_at is not None and after.exit_code == 0
    assert after.artifacts == ["artifacts/ok-1.txt"]
    assert frozen_fields(after) == before


def test_failed_run_changes_only_its_outcome_fields(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "bad", "block": True, "fail": -1}, max_retries=0)
    before, after = running_snapshot(jobs, handler, job)
    assert after.status == JobRunStatus.FAILED
    assert "injected failure" in after.error
    assert frozen_fields(after) == before


def test_log_path_is_fixed_when_the_run_is_created(
    open_service: Callable[..., SchedulerService], tmp_path: Path
) -> None:
    svc = open_service(log_dir=tmp_path / "logs")
    gate = GateHandler()
    seen: list[str | None] = []

    def with_context(params: dict[str, Any], ctx: ExecutionContext) -> list[str]:
        seen.append(ctx.log_path)
        return gate(params)

    svc.register("job", with_context, resource="external")
    job = svc.enqueue_job("job", {"name": "ctx", "block": True})
    before, after = running_snapshot(svc, gate, job)
    assert after.status == JobRunStatus.COMPLETED
    assert before["log_path"] is not None
    assert seen == [before["log_path"]]
    assert frozen_fields(after) == before


def test_flow_run_id_is_set_at_most_once_and_then_never_changes(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    """The one field written after creation besides the outcome: the Prefect flow run
    executing the run is linked once while RUNNING; later writes are refused."""
    job = jobs.enqueue_job("job", {"name": "linked", "block": True})
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("linked")
        created = run_of(jobs, job)
        assert created.flow_run_id is None
        jobs.attach_flow_run(created.run_id, "flow-run-1")
        with pytest.raises(StaleStateError):
            jobs.attach_flow_run(created.run_id, "flow-run-2")
        linked = run_of(jobs, job)
    finally:
        handler.release("linked")
        thread.join(10)
    after = run_of(jobs, job)
    assert after.status == JobRunStatus.COMPLETED
    assert after.flow_run_id == "flow-run-1"
    assert frozen_fields(after) == frozen_fields(linked)
    created_rest = {k: v for k, v in frozen_fields(created).items() if k != "flow_run_id"}
    assert {k: v for k, v in frozen_fields(after).items() if k != "flow_run_id"} == created_rest
    with pytest.raises(StaleStateError):
        jobs.attach_flow_run(after.run_id, "flow-run-3")
    assert run_of(jobs, job).flow_run_id == "flow-run-1"


def test_skipped_run_never_changes(jobs: SchedulerService) -> None:
    _, members = jobs.create_job_group(
        [
            {"job_type": "job", "params": {"name": "bad", "fail": -1}, "max_retries": 0},
            {"job_type": "job", "params": {"name": "skipped"}},
        ]
    )
    drain(jobs)
    skipped = run_of(jobs, members[1])
    assert skipped.status == JobRunStatus.SKIPPED
    jobs.recover()
    with pytest.raises(JobNotCancellableError):
        jobs.cancel_job(members[1].job_id)
    assert run_of(jobs, members[1]) == skipped


# ---------------------------------------------------------------- terminal statuses


def test_terminal_job_statuses_never_change(jobs: SchedulerService, handler) -> None:
    completed = jobs.enqueue_job("job", {"name": "completed"})
    failed = jobs.enqueue_job("job", {"name": "failed", "fail": -1}, max_retries=0)
    cancelled = jobs.enqueue_job("job", {"name": "cancelled"})
    jobs.cancel_job(cancelled.job_id)
    _, members = jobs.create_job_group(
        [
            {"job_type": "job", "params": {"name": "g-bad", "fail": -1}, "max_retries": 0},
            {"job_type": "job", "params": {"name": "g-skipped"}},
        ]
    )
    drain(jobs)
    terminal = {
        completed.job_id: JobStatus.COMPLETED,
        failed.job_id: JobStatus.FAILED,
        cancelled.job_id: JobStatus.CANCELLED,
        members[1].job_id: JobStatus.SKIPPED,
    }
    snapshots = {job_id: jobs.get_job(job_id) for job_id in terminal}
    for job_id, status in terminal.items():
        assert snapshots[job_id].status == status
        with pytest.raises(JobNotCancellableError, match="already ended"):
            jobs.cancel_job(job_id)
        with pytest.raises(ParamsImmutableError):
            jobs.update_job_params(job_id, {"name": "changed"})
    # A manual retry creates a new job; the failed one stays FAILED.
    retry = jobs.retry_run(run_of(jobs, snapshots[failed.job_id]).run_id)
    assert retry.job_id != failed.job_id
    drain(jobs)
    jobs.recover()
    for job_id, snapshot in snapshots.items():
        assert jobs.get_job(job_id) == snapshot


def test_cancelling_a_finished_group_changes_nothing(jobs: SchedulerService) -> None:
    group, members = jobs.create_job_group([{"job_type": "job", "params": {"name": "only"}}])
    drain(jobs)
    done = jobs.get_job_group(group.group_id)
    assert done.status == JobGroupStatus.COMPLETED
    assert jobs.cancel_job_group(group.group_id) == done
    assert jobs.get_job_group(group.group_id) == done
    assert status_of(jobs, members[0]) == JobStatus.COMPLETED


# ---------------------------------------------------------------- one run per job


def test_exactly_one_run_per_executed_or_skipped_job(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    jobs.enqueue_job("job", {"name": "ok"})
    jobs.enqueue_job("job", {"name": "flaky", "fail": 1})
    jobs.enqueue_job("job", {"name": "doomed", "fail": -1}, max_retries=2)
    cancelled = jobs.enqueue_job("job", {"name": "cancelled"})
    jobs.cancel_job(cancelled.job_id)
    jobs.create_job_group(
        [
            {"job_type": "job", "params": {"name": "g0"}},
            {"job_type": "job", "params": {"name": "g1", "fail": -1}, "max_retries": 0},
            {"job_type": "job", "params": {"name": "g2"}},
            {"job_type": "job", "params": {"name": "g3"}},
        ]
    )
    jobs.execute_direct("job", {"name": "direct"}, timeout=10)
    drain(jobs)

    def runs_per_job(conn: sa.Connection) -> list[tuple[int, str, int]]:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT j.job_id, j.status, COUNT(r.run_id) FROM job j "
                    "LEFT JOIN job_run r ON r.job_id = j.job_id "
                    "GROUP BY j.job_id, j.status ORDER BY j.job_id"
                )
            )
        ]

    rows = jobs.db.read(runs_per_job)
    for job_id, status, n in rows:
        expected = 1 if status in ("COMPLETED", "FAILED", "SKIPPED") else 0
        assert n == expected, f"job {job_id} ({status}) has {n} runs"
    statuses = [status for _, status, _ in rows]
    assert statuses.count("SKIPPED") == 2 and statuses.count("CANCELLED") == 1
    executed = sum(1 for _, status, _ in rows if status in ("COMPLETED", "FAILED"))
    assert executed == len(handler.started) == 9


def test_a_removed_log_directory_is_made_again_for_the_next_run(
    open_service: Callable[..., SchedulerService], tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    svc = open_service(log_dir=logs)

    def chatty(params: dict[str, Any], ctx: ExecutionContext) -> None:
        ctx.logger.info("working")

    svc.register("chatty", chatty)
    for _ in range(2):
        svc.enqueue_job("chatty")
        _, run = svc.dispatch_one() or (None, None)
        assert run is not None and run.status == JobRunStatus.COMPLETED, run
        text = Path(run.log_path or "").read_text()
        assert "action=start" in text and "working" in text, text
        assert "action=finish status=COMPLETED" in text, text
        shutil.rmtree(logs)  # log clean-up between runs, as a cron job would do it


def test_a_run_log_file_is_written_only_when_there_is_something_to_read(
    open_service: Callable[..., SchedulerService], tmp_path: Path
) -> None:
    """A silent successful run leaves no file; a failure always writes its start and end."""
    svc = open_service(log_dir=tmp_path / "logs")
    svc.register("quiet", lambda p: None)
    svc.register("boom", lambda p: 1 / 0)
    svc.enqueue_job("quiet")
    _, quiet = svc.dispatch_one() or (None, None)
    assert quiet is not None and quiet.status == JobRunStatus.COMPLETED and quiet.log_path
    assert not Path(quiet.log_path).exists()
    svc.enqueue_job("boom", max_retries=0)
    _, boom = svc.dispatch_one() or (None, None)
    assert boom is not None and boom.status == JobRunStatus.FAILED and boom.log_path
    text = Path(boom.log_path).read_text()
    assert "action=start" in text and "ZeroDivisionError" in text, text
    assert "action=finish status=FAILED" in text, text
