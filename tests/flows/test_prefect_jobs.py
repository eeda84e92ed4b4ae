"""The work pool and deployments the worker makes: created when missing, with the pool
held at concurrency 0; a deployment already deployed (from prefect.yaml, with its
schedules) is adopted as it is, never overwritten."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolUpdate
from prefect.client.schemas.schedules import IntervalSchedule

from flows.prefect_jobs import (
    POOL_TYPE,
    Deployments,
    artifact_key,
    deploy_flows,
    ensure_pool,
    resource_id,
)


@flow(name="prefect-jobs-probe", persist_result=False)
def probe(theme: str = "x") -> str:
    return theme


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"llmsched-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LLMSCHED_WORK_POOL", name)
    return name


def test_a_missing_deployment_is_created_on_a_pool_no_prefect_worker_serves(pool: str) -> None:
    async def go() -> None:
        async with get_client() as client:
            assert await deploy_flows(client, {"probe": probe}) == [f"prefect-jobs-probe/{pool}"]
            deployment = await client.read_deployment_by_name(f"prefect-jobs-probe/{pool}")
            work_pool = await client.read_work_pool(pool)
            assert (deployment.work_pool_name, deployment.tags) == (
                pool,
                ["llmsched", "type:probe"],
            )
            assert (work_pool.type, work_pool.concurrency_limit) == (POOL_TYPE, 0)
            await client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=3))
            assert (await ensure_pool(client)).name == pool
            assert (await client.read_work_pool(pool)).concurrency_limit == 0

    asyncio.run(go())


def test_a_deployed_deployment_keeps_its_schedules(pool: str) -> None:
    async def go() -> None:
        async with get_client() as client:
            await ensure_pool(client)
            flow_id = await client.create_flow(probe)
            deployed = await client.create_deployment(
                flow_id=flow_id,
                name=pool,
                work_pool_name=pool,
                entrypoint="tests/flows/test_prefect_jobs.py:probe",
                schedules=[
                    DeploymentScheduleCreate(
                        schedule=IntervalSchedule(interval=timedelta(hours=1)), active=False
                    )
                ],
            )
            assert await Deployments().ensure(client, "probe", probe) == deployed
            kept = await client.read_deployment(deployed)
            assert [s.schedule.interval for s in kept.schedules] == [timedelta(hours=1)]
            assert kept.entrypoint == "tests/flows/test_prefect_jobs.py:probe"

    asyncio.run(go())


def test_objects_of_another_pool_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMSCHED_WORK_POOL", raising=False)
    assert (resource_id("job", 7), artifact_key("group", 3)) == (
        "llmsched.job.7",
        "llmsched-group-3",
    )
    monkeypatch.setenv("LLMSCHED_WORK_POOL", "Night Shift")
    assert resource_id("group", 3) == "llmsched.Night Shift.group.3"
    assert artifact_key("group", 3) == "llmsched-night-shift-group-3"
