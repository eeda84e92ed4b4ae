"""The test plan's scheduler scenarios (E2E_TEST_PLAN.md section 3), on real databases.

NORM-01..03, DIRECT-01..03, RETRY-01..03, RECOVERY-01..02 and GROUP-01..03 are each
named by their plan id and run twice: with the handler as a plain callable and as a
Prefect flow run on a real Prefect server. Recovery tests SIGKILL a real worker process.
WEBHOOK-01..04 post each event to a real receiver process (tests/webhooks/receiver.py).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler_core import (
    JobGroupStatus,
    JobRunStatus,
    JobStatus,
    SchedulerService,
)
from scheduler_core.webhooks import (
    DeliveryStatus,
    WebhookDispatcher,
    add_webhook_endpoint,
    verify,
)
from tests.conftest import wait_for
from tests.scheduler.handlers import E2EJobHandler, register_e2e
from tests.support import RUN_KEYS, drain
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import payload, run_for, wait_deliveries

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["callable", "prefect"])
def executor(request: pytest.FixtureRequest) -> str:
    if request.param == "prefect":
        request.getfixturevalue("prefect_api")
    return str(request.param)


@pytest.fixture
def handler(tmp_path: Path) -> E2EJobHandler:
    return E2EJobHandler(tmp_path / "executions.jsonl")


@pytest.fixture
def e2e(svc: SchedulerService, handler: E2EJobHandler, executor: str) -> SchedulerService:
    register_e2e(svc, handler, executor=executor)
    return svc


class TestE2ENormalQueue:
    def test_E2E_NORM_01_single_job_lifecycle(self, e2e: SchedulerService, handler) -> None:
        job = e2e.enqueue_job("e2e", {"name": "one"})
        assert job.status == JobStatus.QUEUED
        result = e2e.dispatch_one()
        assert result is not None
        done, run = result
        assert done.job_id == job.job_id
        assert done.status == JobStatus.COMPLETED
        assert run.status == JobRunStatus.COMPLETED
        assert run.exit_code == 0
        assert run.artifacts == ["artifacts/one-1.txt"]
        assert run.started_at is not None and run.finished_at >= run.started_at
        assert e2e.get_job(job.job_id).status == JobStatus.COMPLETED
        assert e2e.get_job_run_for_job(job.job_id).run_id == run.run_id
        assert handler.names() == ["one"]
        assert e2e.dispatch_one() is None

    def test_E2E_NORM_02_priority_ordering(self, e2e: SchedulerService, handler) -> None:
        e2e.enqueue_job("e2e", {"name": "low"}, priority=1)
        e2e.enqueue_job("e2e", {"name": "high"}, priority=10)
        e2e.enqueue_job("e2e", {"name": "mid"}, priority=5)
        e2e.enqueue_job("e2e", {"name": "mid-later"}, priority=5)
        assert [j.params["name"] for j in e2e.list_queued_jobs()] == [
            "high",
            "mid",
            "mid-later",
            "low",
        ]
        assert drain(e2e) == 4
        assert handler.names() == ["high", "mid", "mid-later", "low"]

    def test_E2E_NORM_03_job_cancellation(self, e2e: SchedulerService, handler) -> None:
        job = e2e.enqueue_job("e2e", {"name": "cancelled"})
        cancelled = e2e.cancel_job(job.job_id)
        assert cancelled.status == JobStatus.CANCELLED
        assert e2e.dispatch_one() is None
        assert handler.names() == []
        assert e2e.get_job(job.job_id).status == JobStatus.CANCELLED
        assert e2e.get_job_run_for_job(job.job_id) is None


class TestE2EDirect:
    def test_E2E_DIRECT_01_empty_queue_executes_immediately(
        self, e2e: SchedulerService, handler
    ) -> None:
        run = e2e.execute_direct("e2e", {"name": "direct"}, reserved_by="cli", timeout=10)
        assert run.status == JobRunStatus.COMPLETED
        assert handler.names() == ["direct"]
        job = e2e.get_job(run.job_id)
        assert job.origin == "direct"
        assert not e2e.has_active_reservation()

    def test_E2E_DIRECT_02_between_queued_jobs(self, e2e: SchedulerService, handler) -> None:
        e2e.enqueue_job("e2e", {"name": "job1", "block": True})
        e2e.enqueue_job("e2e", {"name": "job2"})
        worker = threading.Thread(target=e2e.dispatch_one)
        worker.start()
        assert handler.started.wait(60), "job1 never started"
        direct_run: list = []
        caller = threading.Thread(
            target=lambda: direct_run.append(
                e2e.execute_direct("e2e", {"name": "direct"}, reserved_by="cli", timeout=30)
            )
        )
        caller.start()
        wait_for(e2e.has_active_reservation, what="the direct reservation")
        # job1 still runs: the direct job waits for its slot, never preempts.
        assert handler.names() == ["job1"]
        handler.release.set()
        worker.join(10)
        caller.join(30)
        assert direct_run and direct_run[0].status == JobRunStatus.COMPLETED
        assert drain(e2e) == 1
        assert handler.names() == ["job1", "direct", "job2"]

    def test_E2E_DIRECT_03_reservation_pauses_queue(self, e2e: SchedulerService, handler) -> None:
        e2e.enqueue_job("e2e", {"name": "queued"})
        reservation = e2e.reserve_next_slot("client")
        assert e2e.has_active_reservation()
        assert e2e.dispatch_one() is None
        assert handler.names() == []
        assert e2e.release_reservation(reservation.reservation_id)
        assert not e2e.has_active_reservation()
        assert e2e.dispatch_one() is not None
        assert handler.names() == ["queued"]


class TestE2ERetry:
    def test_E2E_RETRY_01_single_failure_retry(self, e2e: SchedulerService, handler) -> None:
        job = e2e.enqueue_job("e2e", {"name": "flaky", "fail_times": 1})
        failed, run = e2e.dispatch_one()
        assert failed.status == JobStatus.FAILED and run.status == JobRunStatus.FAILED
        assert "injected failure" in run.error
        (retry,) = e2e.list_jobs(JobStatus.QUEUED)
        assert retry.retry_of == job.job_id and retry.attempt == 2
        assert retry.params == job.params and retry.priority == job.priority
        retried, run2 = e2e.dispatch_one()
        assert retried.job_id == retry.job_id and run2.status == JobRunStatus.COMPLETED
        assert e2e.dispatch_one() is None

    def test_E2E_RETRY_02_max_three_retries(self, e2e: SchedulerService, handler) -> None:
        e2e.enqueue_job("e2e", {"name": "doomed", "fail_times": -1})
        assert drain(e2e) == 4
        jobs = e2e.list_jobs()
        assert [j.attempt for j in jobs] == [1, 2, 3, 4]
        assert all(j.status == JobStatus.FAILED for j in jobs)
        assert handler.names() == ["doomed"] * 4
        assert e2e.list_queued_jobs() == []

    def test_E2E_RETRY_03_retry_chain_linkage(self, e2e: SchedulerService, handler) -> None:
        original = e2e.enqueue_job("e2e", {"name": "chain", "fail_times": -1})
        drain(e2e)
        chain = e2e.get_retry_chain(original.job_id)
        assert len(chain) == 4
        assert chain[0].job_id == original.job_id and chain[0].retry_of is None
        for previous, job in itertools.pairwise(chain):
            assert job.retry_of == previous.job_id
            assert job.attempt == previous.attempt + 1
        # The chain reads the same from any member.
        assert [j.job_id for j in e2e.get_retry_chain(chain[2].job_id)] == [j.job_id for j in chain]
        for job in chain:
            assert e2e.get_job_run_for_job(job.job_id).status == JobRunStatus.FAILED


def start_worker(
    db_url: str, record: Path, *extra: str, executor: str = "callable"
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.scheduler.worker_process", db_url, str(record)]
    return subprocess.Popen(
        [*command, "--executor", executor, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def kill_while_running(
    svc: SchedulerService, db_url: str, record: Path, *, executor: str, block: bool | int = True
) -> int:
    """Start a worker on a blocking job, SIGKILL it while RUNNING; return the job id."""
    job = svc.enqueue_job("e2e", {"name": "victim", "block": block})
    worker = start_worker(db_url, record, "--serve", executor=executor)
    try:
        wait_for(
            lambda: E2EJobHandler(record).names() == ["victim"],
            timeout=60,
            what="the worker to be inside the job's handler",
        )
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert svc.get_job(job.job_id).status == JobStatus.RUNNING  # left behind by the crash
    return job.job_id or 0


class TestE2ERecovery:
    def test_E2E_RECOVERY_01_running_job_recovery(
        self,
        open_service: Callable[..., SchedulerService],
        db_url: str,
        tmp_path: Path,
        executor: str,
    ) -> None:
        svc = open_service(max_retries=0)
        register_e2e(svc, E2EJobHandler(tmp_path / "x.jsonl"), executor=executor)
        job_id = kill_while_running(svc, db_url, tmp_path / "worker.jsonl", executor=executor)
        restarted = start_worker(db_url, tmp_path / "worker.jsonl", "--recover", executor=executor)
        out, _ = restarted.communicate(timeout=60)
        assert restarted.returncode == 0
        assert '"recovered": 1' in out
        job = svc.get_job(job_id)
        run = svc.get_job_run_for_job(job_id)
        assert job.status == JobStatus.FAILED
        assert run.status == JobRunStatus.FAILED
        assert run.finished_at is not None
        assert "recovered after crash" in run.error

    def test_E2E_RECOVERY_02_retry_for_recovered(
        self, svc: SchedulerService, db_url: str, tmp_path: Path, executor: str
    ) -> None:
        record = tmp_path / "worker.jsonl"
        register_e2e(svc, E2EJobHandler(tmp_path / "x.jsonl"), executor=executor)
        job_id = kill_while_running(svc, db_url, record, executor=executor, block=1)
        restarted = start_worker(db_url, record, "--recover", executor=executor)
        out, _ = restarted.communicate(timeout=60)
        assert restarted.returncode == 0
        assert '"recovered": 1, "retries": 1' in out
        original, retry = svc.get_retry_chain(job_id)
        assert original.status == JobStatus.FAILED
        assert "recovered after crash" in svc.get_job_run_for_job(job_id).error
        assert retry.retry_of == job_id and retry.attempt == 2
        assert retry.status == JobStatus.COMPLETED
        assert svc.get_job_run_for_job(retry.job_id).status == JobRunStatus.COMPLETED
        assert [e["attempt"] for e in E2EJobHandler(record).executions()] == [1, 2]


class TestE2EJobGroup:
    def test_E2E_GROUP_01_sequential_execution(self, e2e: SchedulerService, handler) -> None:
        group, members = e2e.create_job_group(
            jobs=[{"job_type": "e2e", "params": {"name": f"m{i}"}} for i in range(3)],
            name="seq",
        )
        # Unrelated higher-priority work does not break the group's order.
        e2e.enqueue_job("e2e", {"name": "other"}, priority=-1)
        assert [m.sequence for m in members] == [0, 1, 2]
        assert e2e.get_job_group(group.group_id).status == JobGroupStatus.QUEUED
        first = e2e.dispatch_one()
        assert first[0].job_id == members[0].job_id
        assert e2e.get_job_group(group.group_id).status == JobGroupStatus.RUNNING
        drain(e2e)
        assert handler.names()[:3] == ["m0", "m1", "m2"]
        runs = [e2e.get_job_run_for_job(m.job_id) for m in members]
        assert runs[0].finished_at <= runs[1].started_at
        assert runs[1].finished_at <= runs[2].started_at

    def test_E2E_GROUP_02_stop_on_failure(self, e2e: SchedulerService, handler) -> None:
        group, members = e2e.create_job_group(
            jobs=[
                {"job_type": "e2e", "params": {"name": "ok"}},
                {"job_type": "e2e", "params": {"name": "bad", "fail_times": -1}},
                {"job_type": "e2e", "params": {"name": "never"}},
            ],
            name="stop",
        )
        drain(e2e)
        assert handler.names() == ["ok"] + ["bad"] * 4
        third = e2e.get_job(members[2].job_id)
        assert third.status == JobStatus.SKIPPED
        skipped_run = e2e.get_job_run_for_job(third.job_id)
        assert skipped_run.status == JobRunStatus.SKIPPED
        assert "predecessor" in skipped_run.error and "failed" in skipped_run.error
        final = e2e.get_job_group(group.group_id)
        assert final.status == JobGroupStatus.PARTIAL
        assert final.finished_at is not None

    def test_E2E_GROUP_03_completed_group(self, e2e: SchedulerService, handler) -> None:
        group, members = e2e.create_job_group(
            jobs=[{"job_type": "e2e", "params": {"name": f"c{i}"}} for i in range(3)],
            name="all-ok",
        )
        drain(e2e)
        final = e2e.get_job_group(group.group_id)
        assert final.status == JobGroupStatus.COMPLETED
        assert final.finished_at is not None
        assert all(e2e.get_job(m.job_id).status == JobStatus.COMPLETED for m in members)
        assert handler.names() == ["c0", "c1", "c2"]


Hooked = tuple[SchedulerService, WebhookDispatcher]


def parse_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    offset = value.utcoffset()
    assert offset is not None and offset.total_seconds() == 0, text
    return value.astimezone(UTC)


def events_by_type(requests: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for body in map(payload, requests):
        out.setdefault(body["event"], []).append(body)
    return out


class TestE2EWebhook:
    def test_E2E_WEBHOOK_01_completed_run_schema(
        self, hooked: Hooked, receiver: ReceiverFactory
    ) -> None:
        svc, _ = hooked
        rec = receiver()
        endpoint = add_webhook_endpoint(svc, rec.url)
        job = svc.enqueue_job("e2e", {"name": "one"}, priority=4)
        assert drain(svc) == 1
        (request,) = rec.wait_requests(1)
        run = run_for(svc, job)

        body = payload(request)
        assert set(body) == {"event", "event_id", "timestamp", "run"}
        assert body["event"] == "job.run.completed"
        parse_utc(body["timestamp"])
        assert set(body["run"]) == RUN_KEYS
        r = body["run"]
        assert (r["run_id"], r["job_id"], r["status"]) == (run.run_id, job.job_id, "COMPLETED")
        assert (r["job_type"], r["attempt"]) == ("e2e", 1)
        assert (r["priority"], r["resource"]) == (4, "external")
        assert r["artifacts"] == ["artifacts/one-1.txt"]
        assert r["exit_code"] == 0 and r["error"] is None and r["retry_of"] is None
        assert parse_utc(r["finished_at"]) >= parse_utc(r["started_at"])
        assert r["duration_seconds"] == run.duration_seconds

        headers = request["headers"]
        assert headers["X-Webhook-Event"] == "job.run.completed"
        assert headers["X-Webhook-Id"] == body["event_id"]
        assert headers["X-Idempotency-Key"] == str(run.run_id)
        assert headers["X-Webhook-Signature"].startswith("v2=")
        assert verify(endpoint.secret, headers, request["body"].encode())
        wait_deliveries(svc, DeliveryStatus.DELIVERED, 1)

    def test_E2E_WEBHOOK_02_failed_run_carries_error(
        self, hooked: Hooked, receiver: ReceiverFactory
    ) -> None:
        svc, _ = hooked
        rec = receiver()
        add_webhook_endpoint(svc, rec.url)
        job = svc.enqueue_job("e2e", {"name": "bad", "fail_times": -1}, max_retries=0)
        drain(svc)
        (request,) = rec.wait_requests(1)
        body = payload(request)
        assert body["event"] == "job.run.failed"
        assert body["run"]["job_id"] == job.job_id
        assert body["run"]["status"] == "FAILED"
        assert "injected failure of bad" in body["run"]["error"]

    def test_E2E_WEBHOOK_03_skipped_group_member(
        self, hooked: Hooked, receiver: ReceiverFactory
    ) -> None:
        svc, _ = hooked
        rec = receiver()
        add_webhook_endpoint(svc, rec.url)
        group, (first, second, third) = svc.create_job_group(
            [
                {"job_type": "e2e", "params": {"name": "m1"}},
                {"job_type": "e2e", "params": {"name": "m2", "fail_times": -1}, "max_retries": 0},
                {"job_type": "e2e", "params": {"name": "m3"}},
            ],
            name="stop-on-failure",
        )
        drain(svc)
        events = events_by_type(rec.wait_requests(4))
        assert [e["run"]["job_id"] for e in events["job.run.completed"]] == [first.job_id]
        assert [e["run"]["job_id"] for e in events["job.run.failed"]] == [second.job_id]
        (skipped,) = events["job.run.skipped"]
        assert skipped["run"]["job_id"] == third.job_id
        assert skipped["run"]["status"] == JobRunStatus.SKIPPED.value
        assert skipped["run"]["group_id"] == group.group_id and skipped["run"]["sequence"] == 2
        assert "predecessor" in skipped["run"]["error"]
        (partial,) = events["job.group.partial"]
        assert partial["group"]["group_id"] == group.group_id
        assert partial["group"]["status"] == "PARTIAL"

    def test_E2E_WEBHOOK_04_at_least_once_with_run_id_key(
        self, hooked: Hooked, receiver: ReceiverFactory
    ) -> None:
        svc, _ = hooked
        rec = receiver("--fail-first", "2", "--status", "500")
        add_webhook_endpoint(svc, rec.url)
        job = svc.enqueue_job("e2e", {"name": "flaky-receiver"})
        drain(svc)
        (delivery,) = wait_deliveries(svc, DeliveryStatus.DELIVERED, 1)
        requests = rec.requests()
        assert [r["answer"] for r in requests] == ["500", "500", "200"]
        run = run_for(svc, job)
        assert {r["headers"]["X-Webhook-Id"] for r in requests} == {delivery.event_id}
        assert {r["headers"]["X-Idempotency-Key"] for r in requests} == {str(run.run_id)}
        assert {payload(r)["run"]["run_id"] for r in requests} == {run.run_id}
        assert len({r["body"] for r in requests}) == 1  # identical bytes on every attempt
        assert delivery.attempts == 3 and delivery.last_status_code == 200
