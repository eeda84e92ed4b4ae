"""JSON columns are written with orjson and read with the json module (columns.py): what
a job is given, and what its rows hold, equal what was enqueued, including the values
orjson refuses or would read differently."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scheduler_core import SchedulerService
from scheduler_core.columns import json_dumps

PARAMS: dict[str, Any] = {
    "big": 2**70,  # beyond 64 bits: orjson refuses to write it and would read it as a float
    "negative": -(2**65),
    "int64": 2**63 - 1,
    "float": 0.1,
    "exponent": 1e16,
    "text": 'é ☃ \u2028 "quoted" \\ /',
    "nested": {"list": [1, None, True, False, {"deep": []}], "empty": {}},
}


@pytest.mark.parametrize(
    "value",
    [
        PARAMS,
        {"small": 1},
        [],
        {1: "key not a string"},  # orjson refuses; json writes "1"
        {"lone": "\ud800"},  # orjson refuses a lone surrogate
        ["a", 1.5, None],
    ],
    ids=["mixed", "small", "empty", "int-key", "lone-surrogate", "list"],
)
def test_json_dumps_writes_what_the_json_module_reads_back_equal(value: Any) -> None:
    text = json_dumps(value)
    assert isinstance(text, str)
    assert json.loads(text) == json.loads(json.dumps(value))


def test_the_engine_writes_json_with_json_dumps(svc: SchedulerService) -> None:
    """Both backends' engines (database.py `create_engine`) write JSON text with it; on
    SQLite the stored text shows it (orjson's, without the json module's spaces)."""
    assert svc.db.engine.dialect._json_serializer is json_dumps  # type: ignore[attr-defined]
    svc.register("keep", lambda params: None)
    job = svc.enqueue_job("keep", {"small": 1, "list": [1, 2]})
    if svc.db.is_sqlite:
        text = svc.db.read(
            lambda c: c.exec_driver_sql(
                "SELECT params FROM job WHERE job_id = ?", (job.job_id,)
            ).scalar_one()
        )
        assert text == '{"small":1,"list":[1,2]}'


def test_params_reach_the_job_and_its_rows_unchanged(svc: SchedulerService) -> None:
    seen: list[dict[str, Any]] = []
    svc.register("keep", lambda params: seen.append(params))
    job = svc.enqueue_job("keep", PARAMS)
    assert job.params == PARAMS
    assert svc.get_job(job.job_id or 0).params == PARAMS
    finished, run = svc.dispatch_one()
    assert finished.job_id == job.job_id
    assert seen == [PARAMS]
    assert type(seen[0]["big"]) is int and type(seen[0]["negative"]) is int
    assert run.params_snapshot == PARAMS
    assert svc.get_job_run(run.run_id or 0).params_snapshot == PARAMS
    assert svc.get_job(job.job_id or 0).params == PARAMS
