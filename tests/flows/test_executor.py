"""The PrefectExecutor keeps one Prefect client for all its flow runs, and every job still
gets its own named, tagged flow run, linked to its JobRun, logging into the run's file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
from prefect import flow, get_run_logger
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import AsyncClientContext

import flows.executor
import flows.prefect_sync
from flows.executor import PrefectExecutor, install_prefect, register_flow
from scheduler_core import JobRunStatus, JobStatus, SchedulerService
from tests.conftest import wait_for

# The client each probe run saw, in run order; a test's probes append, the fixture clears.
SEEN: list[PrefectClient] = []


@flow(name="executor-probe", persist_result=False)
async def probe(label: str = "?") -> list[str]:
    SEEN.append(get_client())
    get_run_logger().info("probe %s ran", label)
    return []


@flow(name="executor-sync-probe", persist_result=False)
def sync_probe(label: str = "?") -> list[str]:
    get_run_logger().info("sync probe %s ran", label)
    return []


BARRIER = threading.Barrier(2)


@flow(name="executor-pair", persist_result=False)
async def pair(label: str = "?") -> list[str]:
    """Returns only once another pair run is running at the same time (or fails)."""
    SEEN.append(get_client())
    await asyncio.to_thread(BARRIER.wait, 30)
    return []


@pytest.fixture(autouse=True)
def _fresh_probes() -> Iterator[None]:
    SEEN.clear()
    BARRIER.reset()
    yield
    SEEN.clear()


@pytest.fixture
def flow_svc(svc: SchedulerService) -> tuple[SchedulerService, PrefectExecutor]:
    executor = install_prefect(svc)
    register_flow(svc, "probe", probe, resource="external")
    register_flow(svc, "sync-probe", sync_probe, resource="external")
    register_flow(svc, "pair", pair, resource="external")
    return svc, executor


def read_flow_run(flow_run_id: str) -> FlowRun:
    async def read() -> FlowRun:
        async with get_client() as client:
            return await client.read_flow_run(UUID(flow_run_id))

    return asyncio.run(read())


def run_jobs(svc: SchedulerService, job_type: str, labels: list[str]) -> list[int]:
    ids = [
        job.job_id or 0
        for job in svc.enqueue_jobs(
            [{"job_type": job_type, "params": {"label": x}} for x in labels]
        )
    ]
    svc.executor.sync.stop(30)  # type: ignore[attr-defined]  # their flow runs are created
    for _ in ids:
        assert svc.dispatch_one() is not None
    return ids


def test_jobs_share_one_client_and_keep_their_own_flow_runs(
    flow_svc: tuple[SchedulerService, PrefectExecutor],
) -> None:
    svc, _ = flow_svc
    ids = run_jobs(svc, "probe", ["a", "b", "c"])

    assert len(SEEN) == 3 and all(client is SEEN[0] for client in SEEN)
    flow_run_ids = set()
    for job_id, label in zip(ids, "abc", strict=True):
        job, run = svc.get_job(job_id), svc.get_job_run_for_job(job_id)
        assert job.status == JobStatus.COMPLETED
        assert run is not None and run.flow_run_id and run.log_path
        flow_run_ids.add(run.flow_run_id)
        flow_run = read_flow_run(run.flow_run_id)
        assert flow_run.name == f"probe-job-{job_id}-attempt-1"
        assert {"llmsched", f"job:{job_id}", "type:probe", "attempt:1"} <= set(flow_run.tags)
        assert flow_run.parameters == {"label": label}
        assert flow_run.state is not None and flow_run.state.is_completed()
        assert f"probe {label} ran" in Path(run.log_path).read_text()
    assert len(flow_run_ids) == 3


def test_concurrent_flow_runs_on_the_shared_client(
    flow_svc: tuple[SchedulerService, PrefectExecutor],
) -> None:
    """Two flows that can only finish together run at once in the worker loop."""
    svc, _ = flow_svc
    ids = [job.job_id or 0 for job in svc.enqueue_jobs([{"job_type": "pair"}] * 2)]
    svc.start(concurrency=2)

    def done() -> bool:
        return all(svc.get_job(j).status == JobStatus.COMPLETED for j in ids)

    wait_for(done, timeout=60, what="both pair jobs to complete")
    assert svc.stop(timeout=30)
    runs = [svc.get_job_run_for_job(j) for j in ids]
    assert all(r is not None and r.status == JobRunStatus.COMPLETED for r in runs)
    assert SEEN[0] is SEEN[1]
    for job_id, run in zip(ids, runs, strict=True):
        assert run is not None and run.flow_run_id
        assert read_flow_run(run.flow_run_id).name == f"pair-job-{job_id}-attempt-1"


def test_close_closes_the_shared_client(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    install_prefect(svc)
    register_flow(svc, "probe", probe, resource="external")
    run_jobs(svc, "probe", ["only"])
    svc.close()

    with pytest.raises(RuntimeError, match="cannot be started again"):
        asyncio.run(SEEN[0].__aenter__())


def test_a_flow_deleted_on_the_server_is_created_again(
    flow_svc: tuple[SchedulerService, PrefectExecutor],
) -> None:
    """The executor remembers each flow's id; a stale one must not fail the next job."""
    svc, _ = flow_svc
    [first] = run_jobs(svc, "probe", ["before"])
    first_run = svc.get_job_run_for_job(first)
    assert first_run is not None and first_run.flow_run_id
    old_flow_id = read_flow_run(first_run.flow_run_id).flow_id

    async def delete() -> None:
        async with get_client() as client:
            await client.delete_flow(old_flow_id)

    asyncio.run(delete())
    [second] = run_jobs(svc, "probe", ["after"])

    assert svc.get_job(second).status == JobStatus.COMPLETED
    run = svc.get_job_run_for_job(second)
    assert run is not None and run.flow_run_id
    flow_run = read_flow_run(run.flow_run_id)
    assert flow_run.flow_id != old_flow_id
    assert flow_run.state is not None and flow_run.state.is_completed()


def test_sync_flows_run_with_the_shared_client(
    flow_svc: tuple[SchedulerService, PrefectExecutor],
) -> None:
    svc, _ = flow_svc
    [job_id] = run_jobs(svc, "sync-probe", ["s"])

    assert svc.get_job(job_id).status == JobStatus.COMPLETED
    run = svc.get_job_run_for_job(job_id)
    assert run is not None and run.flow_run_id and run.log_path
    assert read_flow_run(run.flow_run_id).name == f"sync-probe-job-{job_id}-attempt-1"
    assert "sync probe s ran" in Path(run.log_path).read_text()


class _FailsOnce(AsyncClientContext):
    """The first opening fails as if the API were down; later ones open normally."""

    failures: ClassVar[int] = 1

    async def __aenter__(self) -> Any:
        if _FailsOnce.failures:
            _FailsOnce.failures -= 1
            raise RuntimeError("Failed to reach API (test)")
        return await super().__aenter__()


def test_a_failed_client_opening_fails_the_job_and_is_retried(
    open_service: Callable[..., SchedulerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = open_service(max_retries=0)  # the next job is the second one, not a retry
    # The job's own opening fails, not the one that creates queued jobs' flow runs.
    monkeypatch.setattr(flows.prefect_sync, "api_configured", lambda: False)
    install_prefect(svc)
    register_flow(svc, "probe", probe, resource="external")
    monkeypatch.setattr(_FailsOnce, "failures", 1)
    monkeypatch.setattr(flows.executor, "AsyncClientContext", _FailsOnce)
    first, second = run_jobs(svc, "probe", ["down", "up"])

    assert svc.get_job(first).status == JobStatus.FAILED
    failed_run = svc.get_job_run_for_job(first)
    assert failed_run is not None and "Failed to reach API (test)" in (failed_run.error or "")
    assert failed_run.flow_run_id is None
    assert svc.get_job(second).status == JobStatus.COMPLETED
