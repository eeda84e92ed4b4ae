"""deployments/prefect.yaml holds what the flows accept: every deployment's parameters pass
the submit flow's signature, every job passes its pipeline's, and every schedule parses.

A deployment only meets its flow when its first scheduled run starts, possibly at 02:00;
these checks move that moment to the test run. The mutation tests prove they would catch
a renamed parameter.
"""

from __future__ import annotations

import asyncio
import copy
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.exceptions import ParameterTypeError, SignatureMismatchError
from prefect.server.schemas.schedules import CronSchedule

from flows.pipelines import PIPELINES
from flows.prefect_jobs import entrypoint_of, pool_name
from flows.submit import submit
from scheduler_core import JobStatus, SchedulerService
from scheduler_core.errors import (
    InvalidParamsError,
    OutputDirError,
    SchedulerError,
    UnknownJobTypeError,
)
from scheduler_core.statuses import JobOrigin
from scheduler_core.values import Job, JobGroup
from tests.deployments.support import (
    FLOW_NAME,
    JOB_POOL,
    WORK_POOL,
    all_deployments,
    deployment,
    deployments,
    load_flow,
    pipeline_deployments,
    project,
    stored,
)

NAMES = [d["name"] for d in deployments()]
# The parameter each pipeline cannot run without: renaming it must be caught.
REQUIRED_PARAM = {"story": "theme", "research": "topic"}


def check_parameters(
    entrypoint: str, parameters: dict[str, Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[JobGroup, list[Job]]:
    """What a scheduled run does with `parameters` before it queues anything: the submit
    flow's signature, then each job against its pipeline (the service's enqueue checks),
    in the database of the worker's environment."""
    validated = load_flow(entrypoint).validate_parameters(parameters)
    monkeypatch.setenv("LLMSCHED_DATABASE_URL", db_url)
    group, members, _ = submit(validated["jobs"], validated["name"])
    return group, members


def run_parameters(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters each schedule's runs get: a schedule may override the deployment's."""
    base = spec.get("parameters") or {}
    return [{**base, **(s.get("parameters") or {})} for s in spec.get("schedules") or [{}]]


def test_the_file_deploys_the_submit_flow_to_the_process_pool() -> None:
    data = project()
    assert len(NAMES) >= 2 and len(set(NAMES)) == len(NAMES)
    assert {"nightly-stories", "weekly-research"} <= set(NAMES)
    (step,) = data["pull"]
    assert step == {"prefect.deployments.steps.set_working_directory": {"directory": "."}}
    for spec in deployments():
        assert load_flow(spec["entrypoint"]).name == FLOW_NAME
        assert spec["work_pool"]["name"] == WORK_POOL
        # Each run starts in the worker's current directory: the checkout it runs from.
        assert spec["work_pool"]["job_variables"] == {"working_dir": "."}


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_no_deployment_stores_a_path_of_the_deploying_machine() -> None:
    """`prefect deploy` fills in `{{ $VAR }}` of the pull steps and job variables from the
    deploying shell (`{{ $PWD }}` became the checkout's absolute path), so the file uses
    relative paths only: the worker's machine decides where the code is."""
    data = project()
    specs = all_deployments()
    stored = [data["pull"], *([spec.get("pull"), spec.get("work_pool")] for spec in specs)]
    for text in strings(stored):
        assert "{{" not in text and not Path(text).is_absolute(), text


def test_every_pipeline_is_deployed_where_the_worker_looks_for_its_runs() -> None:
    """The file's pipeline deployments are the ones the worker would create: the same
    flow, the name `<flow>/llmsched`, the `llmsched` pool; so the worker adopts them."""
    by_flow = {flow.name: (job_type, flow) for job_type, flow in PIPELINES.items()}
    found = set()
    for spec in pipeline_deployments():
        job_type, flow = by_flow[load_flow(spec["entrypoint"]).name]
        assert spec["name"] == pool_name() == JOB_POOL
        assert spec["work_pool"] == {"name": JOB_POOL, "work_queue_name": "default"}
        assert spec["entrypoint"] == entrypoint_of(flow)
        assert spec["tags"] == ["llmsched", f"type:{job_type}"]
        assert all("cron" in s for s in spec.get("schedules") or [])
        found.add(job_type)
    assert found == set(PIPELINES)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_pass_the_flow_and_every_pipeline(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = deployment(name)
    for index, parameters in enumerate(run_parameters(spec)):
        db_url = f"sqlite:///{tmp_path / f'schedule-{index}.db'}"
        group, members = check_parameters(spec["entrypoint"], parameters, db_url, monkeypatch)
        jobs = parameters["jobs"]
        assert group.origin == JobOrigin.SCHEDULE and group.size == len(jobs)
        assert group.name == parameters["name"]
        names = {j["name"]: i for i, j in enumerate(jobs) if "name" in j}
        assert [(m.job_type, m.params, m.priority) for m in members] == [
            (j["job_type"], stored(j.get("params", {}), names), j.get("priority", 0)) for j in jobs
        ]
        assert all(m.status == JobStatus.QUEUED for m in members)


def rename_flow_parameter(p: dict[str, Any]) -> None:
    p["group_name"] = p.pop("name")


def rename_job_key(p: dict[str, Any]) -> None:
    p["jobs"][0]["type"] = p["jobs"][0].pop("job_type")


def misspell_priority(p: dict[str, Any]) -> None:
    p["jobs"][0]["prority"] = 1


def rename_pipeline_parameter(p: dict[str, Any]) -> None:
    job = p["jobs"][0]
    job["params"]["subject"] = job["params"].pop(REQUIRED_PARAM[job["job_type"]])


def add_unknown_pipeline_parameter(p: dict[str, Any]) -> None:
    p["jobs"][-1]["params"]["top_k"] = 40


def unknown_job_type(p: dict[str, Any]) -> None:
    p["jobs"][0]["job_type"] = "poem"


def unknown_model_provider(p: dict[str, Any]) -> None:
    p["jobs"][0]["params"]["model"] = "gpt-4o"


def no_jobs(p: dict[str, Any]) -> None:
    p["jobs"] = []


def database_url_parameter(p: dict[str, Any]) -> None:
    """The worker's database is its own setting, never a parameter any API client sets."""
    p["database_url"] = "sqlite:////tmp/anywhere.db"


def output_dir_outside_the_artifacts(p: dict[str, Any]) -> None:
    p["jobs"][0]["params"]["output_dir"] = "/etc/llmsched"


MUTATIONS: list[tuple[Callable[[dict[str, Any]], None], type[Exception]]] = [
    (rename_flow_parameter, SignatureMismatchError),
    (rename_job_key, ParameterTypeError),
    (misspell_priority, ParameterTypeError),
    (no_jobs, ParameterTypeError),
    (database_url_parameter, SignatureMismatchError),
    (output_dir_outside_the_artifacts, OutputDirError),
    (rename_pipeline_parameter, InvalidParamsError),
    (add_unknown_pipeline_parameter, InvalidParamsError),
    (unknown_job_type, UnknownJobTypeError),
    (unknown_model_provider, InvalidParamsError),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("mutate", "error"), MUTATIONS, ids=[mutate.__name__ for mutate, _ in MUTATIONS]
)
def test_a_renamed_or_unknown_parameter_fails_the_check(
    name: str,
    mutate: Callable[[dict[str, Any]], None],
    error: type[Exception],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = deployment(name)
    parameters = copy.deepcopy(spec["parameters"])
    mutate(parameters)
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with pytest.raises(error):
        check_parameters(spec["entrypoint"], parameters, db_url, monkeypatch)
    if issubclass(error, SchedulerError):  # it got as far as the service: nothing queued
        with SchedulerService.open(db_url) as svc:
            assert svc.list_jobs() == []


@pytest.mark.parametrize("name", NAMES)
def test_every_schedule_is_a_valid_cron_in_an_explicit_time_zone(name: str) -> None:
    schedules = deployment(name).get("schedules")
    assert schedules, f"{name} has no schedule"
    for entry in schedules:
        assert entry.get("cron") and entry.get("timezone"), entry
        zoneinfo.ZoneInfo(entry["timezone"])  # an IANA name, not an offset or an abbreviation
        schedule = CronSchedule(
            cron=entry["cron"], timezone=entry["timezone"], day_or=entry.get("day_or", True)
        )
        dates = asyncio.run(schedule.get_dates(n=3, start=datetime(2026, 1, 1, tzinfo=UTC)))
        assert len(dates) == 3 and dates == sorted(set(dates)), dates
