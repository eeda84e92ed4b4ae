"""The Prefect executor under faults: a flow past its job's deadline is cancelled and its
flow run ends Failed; an unreachable Prefect API is an infrastructure fault (the job goes
back to the queue), and the flow runs it interrupted are set Crashed once it answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from flows import prefect_faults
from flows.executor import install_prefect, register_flow
from flows.llm.errors import LLMConnectionError
from scheduler_core import JobStatus, SchedulerService
from tests.flows.support import dispatch_until_ended


@flow(name="sleeps-for-ever", persist_result=False)
async def sleeper() -> list[str]:
    await asyncio.sleep(3600)
    return []


def test_a_flow_past_its_deadline_is_cancelled_and_its_flow_run_fails(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    install_prefect(svc)
    register_flow(svc, "sleeper", sleeper, resource="external")
    job = svc.enqueue_job("sleeper", timeout_seconds=1, max_retries=0)
    ended, run = dispatch_until_ended(svc)
    assert ended.status == JobStatus.FAILED and "deadline exceeded" in (run.error or "")
    assert run.flow_run_id

    async def state() -> str:
        async with get_client() as client:
            flow_run = await client.read_flow_run(run.flow_run_id)  # type: ignore[arg-type]
        assert flow_run.state is not None
        return flow_run.state.type.value

    assert asyncio.run(state()) == "FAILED"
    assert svc.get_job(job.job_id or 0).attempt == 1


def test_only_failures_of_requests_to_the_prefect_api_are_its_faults() -> None:
    api = str(PREFECT_API_URL.value()).rstrip("/")
    to_api = httpx.ConnectError("refused", request=httpx.Request("GET", f"{api}/flow_runs/"))
    assert prefect_faults.is_api_fault(to_api)
    wrapped = RuntimeError("engine failed")
    wrapped.__cause__ = to_api
    assert prefect_faults.is_api_fault(wrapped)
    model = httpx.ConnectError("refused", request=httpx.Request("POST", "http://127.0.0.1:9/v1"))
    llm = LLMConnectionError("cannot connect to openai")
    llm.__cause__ = model
    assert not prefect_faults.is_api_fault(llm)
    bad_request = httpx.HTTPStatusError(
        "bad", request=to_api.request, response=httpx.Response(422, request=to_api.request)
    )
    assert not prefect_faults.is_api_fault(bad_request)
    server_error = httpx.HTTPStatusError(
        "down", request=to_api.request, response=httpx.Response(503, request=to_api.request)
    )
    assert prefect_faults.is_api_fault(server_error)


@pytest.mark.parametrize("answers", [True, False])
def test_the_health_probe_follows_the_api(answers: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not answers:
        monkeypatch.setattr(prefect_faults, "PREFECT_API_URL", _Unreachable())
    assert prefect_faults.api_answers() is answers


class _Unreachable:
    @staticmethod
    def value() -> str:
        return "http://127.0.0.1:9/api"  # the discard port: nothing listens
