"""Bad input is refused with a SchedulerError that names the problem, and nothing is written."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler_core import (
    ConfigurationError,
    EmptyGroupError,
    InvalidIdError,
    InvalidJobError,
    InvalidParamsError,
    InvalidPriorityError,
    JobNotFoundError,
    JobNotQueuedError,
    JobStatus,
    ParamsImmutableError,
    SchedulerError,
    SchedulerService,
    UnknownJobTypeError,
)
from scheduler_core.validation import MAX_GROUP_JOBS, MAX_ID, PARAMS_MAX_BYTES, shown
from tests.scheduler.rules_support import GateHandler, count_rows, run_in_thread, status_of


@contextmanager
def refused(svc: SchedulerService, error: type[SchedulerError], *fragments: str) -> Iterator[None]:
    """The block raises `error` (a SchedulerError) naming every fragment; no row written."""
    before = count_rows(svc)
    with pytest.raises(error) as info:
        yield
    assert isinstance(info.value, SchedulerError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert count_rows(svc) == before


def test_unknown_job_type_is_refused_with_how_to_register(jobs: SchedulerService) -> None:
    with refused(jobs, UnknownJobTypeError, "'no-such-type'", "register", "job"):
        jobs.enqueue_job("no-such-type", {"a": 1})


def test_unknown_job_type_in_a_batch_writes_none_of_the_batch(jobs: SchedulerService) -> None:
    with refused(jobs, UnknownJobTypeError, "'ghost'", "register"):
        jobs.enqueue_jobs([{"job_type": "job", "params": {}}, {"job_type": "ghost"}])


def test_unknown_job_type_for_direct_execution_is_refused(jobs: SchedulerService) -> None:
    with refused(jobs, UnknownJobTypeError, "'ghost'", "register"):
        jobs.execute_direct("ghost", {}, timeout=1)
    assert not jobs.has_active_reservation()


@pytest.mark.parametrize(
    "params",
    [
        {"obj": object()},
        {"when": {1, 2}},
        {"nan": math.nan},
        {"inf": math.inf},
        {"raw": b"bytes"},
    ],
    ids=["object", "set", "nan", "inf", "bytes"],
)
def test_non_json_serialisable_params_are_refused(jobs: SchedulerService, params: Any) -> None:
    with refused(jobs, InvalidParamsError, "'job'", "JSON"):
        jobs.enqueue_job("job", params)


@pytest.mark.parametrize(
    "params", [[1, 2], "text", 5, ("a", "b")], ids=["list", "str", "int", "tuple"]
)
def test_non_dict_params_are_refused(jobs: SchedulerService, params: Any) -> None:
    with refused(jobs, InvalidParamsError, "dict", type(params).__name__):
        jobs.enqueue_job("job", params)


@pytest.mark.parametrize(
    "params", [[], "", 0, [1]], ids=["empty-list", "empty-str", "zero", "list"]
)
def test_non_dict_params_in_a_batch_are_refused(jobs: SchedulerService, params: Any) -> None:
    with refused(jobs, InvalidParamsError, "dict"):
        jobs.enqueue_jobs([{"job_type": "job", "params": params}])


@pytest.mark.parametrize(
    "priority",
    [True, False, "5", 1.5, None, 2.0],
    ids=["true", "false", "str", "float", "none", "float-int"],
)
def test_non_integer_priority_is_refused(jobs: SchedulerService, priority: Any) -> None:
    with refused(jobs, InvalidPriorityError, "priority", "integer", repr(priority)):
        jobs.enqueue_job("job", {"name": "x"}, priority=priority)


def test_non_integer_priority_in_a_group_member_writes_no_group(jobs: SchedulerService) -> None:
    with refused(jobs, InvalidPriorityError, "priority", "'5'"):
        jobs.create_job_group(
            [{"job_type": "job", "params": {}}, {"job_type": "job", "params": {}, "priority": "5"}]
        )


def test_changing_params_after_dispatch_is_refused(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "fixed", "block": True})
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("fixed")
        with refused(jobs, ParamsImmutableError, str(job.job_id), "RUNNING", "QUEUED"):
            jobs.update_job_params(job.job_id, {"name": "changed"})
        assert jobs.get_job(job.job_id).params == {"name": "fixed", "block": True}
    finally:
        handler.release("fixed")
        thread.join(10)
    with refused(jobs, ParamsImmutableError, "COMPLETED"):
        jobs.update_job_params(job.job_id, {"name": "changed"})
    assert jobs.get_job(job.job_id).params == {"name": "fixed", "block": True}


def test_changing_priority_is_refused_after_dispatch_for_bad_values_and_unknown_jobs(
    jobs: SchedulerService, handler: GateHandler
) -> None:
    job = jobs.enqueue_job("job", {"name": "placed", "block": True}, priority=2)
    for bad in ("5", 1.5, True, 2**31):
        with refused(jobs, InvalidPriorityError, "priority", repr(bad)):
            jobs.set_priority(job.job_id, bad)  # type: ignore[arg-type]
    with refused(jobs, JobNotFoundError, "31337"):
        jobs.set_priority(31337, 1)
    thread, _ = run_in_thread(jobs.dispatch_one)
    try:
        handler.wait_started("placed")
        with refused(jobs, JobNotQueuedError, str(job.job_id), "RUNNING", "QUEUED"):
            jobs.set_priority(job.job_id, 7)
    finally:
        handler.release("placed")
        thread.join(10)
    assert jobs.get_job(job.job_id).priority == 2


def test_changing_params_of_an_unknown_job_is_refused(jobs: SchedulerService) -> None:
    with refused(jobs, JobNotFoundError, "31337"):
        jobs.update_job_params(31337, {"a": 1})


def test_changing_params_to_non_json_is_refused_and_keeps_the_old_params(
    jobs: SchedulerService,
) -> None:
    job = jobs.enqueue_job("job", {"name": "keep"})
    with refused(jobs, InvalidParamsError, "JSON"):
        jobs.update_job_params(job.job_id, {"bad": object()})
    assert jobs.get_job(job.job_id).params == {"name": "keep"}
    assert status_of(jobs, job) == JobStatus.QUEUED


def test_group_with_no_members_is_refused(jobs: SchedulerService) -> None:
    with refused(jobs, EmptyGroupError, "no members"):
        jobs.create_job_group([], name="empty")


def test_group_member_missing_job_type_is_refused(jobs: SchedulerService) -> None:
    with refused(jobs, InvalidJobError, "job #1", "'job_type'"):
        jobs.create_job_group([{"job_type": "job", "params": {}}, {"params": {"name": "typeless"}}])


def test_group_member_with_unknown_keys_is_refused(jobs: SchedulerService) -> None:
    with refused(jobs, InvalidJobError, "job #0", "'priorty'"):
        jobs.create_job_group([{"job_type": "job", "params": {}, "priorty": 3}])


@pytest.mark.parametrize(
    "max_retries", [-1, True, "3", 1.5], ids=["negative", "bool", "str", "float"]
)
def test_invalid_max_retries_is_refused(jobs: SchedulerService, max_retries: Any) -> None:
    with refused(jobs, InvalidJobError, "max_retries"):
        jobs.enqueue_job("job", {}, max_retries=max_retries)


def test_naive_not_before_is_refused(jobs: SchedulerService) -> None:
    with refused(jobs, InvalidJobError, "not_before", "timezone"):
        jobs.enqueue_job("job", {}, not_before=datetime(2030, 1, 1))


def test_every_refusal_is_a_scheduler_error() -> None:
    for error in (
        UnknownJobTypeError,
        InvalidParamsError,
        InvalidPriorityError,
        EmptyGroupError,
        ParamsImmutableError,
        JobNotFoundError,
    ):
        assert issubclass(error, SchedulerError)


# Inputs a backend can not store must be refused the same way on every backend: either
# accepted (and read back unchanged) or refused with a SchedulerError before any write.


def accepted_or_refused(svc: SchedulerService, error: type[SchedulerError], submit) -> Any:
    """Run `submit`; it may succeed, or raise `error`; any other exception is a bug."""
    before = count_rows(svc)
    try:
        return submit()
    except error:
        assert count_rows(svc) == before
        return None


@pytest.mark.parametrize("priority", [2**31, -(2**31) - 1, 2**70], ids=["2^31", "-2^31-1", "2^70"])
def test_priority_beyond_the_storable_range_is_accepted_or_refused_as_invalid_priority(
    jobs: SchedulerService, priority: int
) -> None:
    job = accepted_or_refused(
        jobs, InvalidPriorityError, lambda: jobs.enqueue_job("job", {}, priority=priority)
    )
    if job is not None:
        assert jobs.get_job(job.job_id).priority == priority


def test_params_with_a_nul_character_are_accepted_or_refused_as_invalid_params(
    jobs: SchedulerService,
) -> None:
    params = {"text": "before\x00after"}
    job = accepted_or_refused(jobs, InvalidParamsError, lambda: jobs.enqueue_job("job", params))
    if job is not None:
        assert jobs.get_job(job.job_id).params == params


def test_job_type_name_too_long_to_store_is_refused_at_registration_or_works(
    jobs: SchedulerService,
) -> None:
    name = "t" * 200
    try:
        jobs.register(name, GateHandler())
    except ConfigurationError as exc:
        assert "200" in str(exc) or "long" in str(exc)
        return
    job = accepted_or_refused(jobs, InvalidJobError, lambda: jobs.enqueue_job(name, {}))
    assert job is not None, "a registered job type must be usable"
    assert jobs.get_job(job.job_id).job_type == name


def test_group_name_too_long_to_store_is_accepted_or_refused_as_invalid(
    jobs: SchedulerService,
) -> None:
    name = "g" * 300
    created = accepted_or_refused(
        jobs,
        InvalidJobError,
        lambda: jobs.create_job_group([{"job_type": "job", "params": {}}], name=name),
    )
    if created is not None:
        assert jobs.get_job_group(created[0].group_id).name == name


# ---------------------------------------------------------------------- limits and types


def nested(depth: int) -> dict[str, Any]:
    """Params with `depth` levels of objects."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [33, 900, 5000])
def test_params_nested_deeper_than_32_levels_are_refused(
    jobs: SchedulerService, depth: int
) -> None:
    with refused(jobs, InvalidParamsError, "nested more than 32 levels"):
        jobs.enqueue_job("job", nested(depth))
    with refused(jobs, InvalidParamsError, "job #0", "nested more than 32 levels"):
        jobs.create_job_group([{"job_type": "job", "params": nested(depth)}])


def test_params_that_contain_themselves_are_refused(jobs: SchedulerService) -> None:
    params: dict[str, Any] = {}
    params["self"] = params
    with refused(jobs, InvalidParamsError, "contain themselves"):
        jobs.enqueue_job("job", params)


def test_params_of_32_levels_and_256_kib_are_accepted(jobs: SchedulerService) -> None:
    deep = jobs.enqueue_job("job", nested(32))
    assert jobs.get_job(deep.job_id).params == nested(32)
    overhead = len('{"text":""}')
    full = {"text": "x" * (PARAMS_MAX_BYTES - overhead)}
    assert jobs.get_job(jobs.enqueue_job("job", full).job_id).params == full


def test_params_over_256_kib_of_json_are_refused(jobs: SchedulerService) -> None:
    overhead = len('{"text":""}')
    with refused(jobs, InvalidParamsError, "262145 bytes", "262144"):
        jobs.enqueue_job("job", {"text": "x" * (PARAMS_MAX_BYTES - overhead + 1)})


@pytest.mark.parametrize("bad", [2**63, 2**64, 10**5000, 0, -1, True, "1", 1.0, None], ids=shown)
@pytest.mark.parametrize(
    "call",
    [
        "get_job",
        "cancel_job",
        "get_job_run",
        "get_job_run_for_job",
        "get_job_group",
        "cancel_job_group",
        "retry_run",
        "retry_job",
        "get_retry_chain",
        "release_reservation",
    ],
)
def test_ids_outside_1_to_2_63_minus_1_are_refused(
    jobs: SchedulerService, call: str, bad: Any
) -> None:
    with refused(jobs, InvalidIdError, f"must be an integer from 1 to {jobs.max_id}, got"):
        getattr(jobs, call)(bad)


def test_ids_up_to_what_the_backend_stores_are_looked_up_beyond_refused(
    jobs: SchedulerService,
) -> None:
    assert jobs.max_id == (MAX_ID if jobs.db.engine.dialect.name == "sqlite" else 2**31 - 1)
    with refused(jobs, JobNotFoundError, f"job {jobs.max_id} does not exist"):
        jobs.get_job(jobs.max_id)
    with refused(jobs, InvalidIdError, str(jobs.max_id)):
        jobs.cancel_job(jobs.max_id + 1)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"not_before": "2030-01-01T00:00:00Z"}, "not_before must be a timezone-aware datetime"),
        ({"not_before": 1893456000}, "not_before must be a timezone-aware datetime"),
        ({"origin": "bogus"}, "unknown origin 'bogus'"),
        ({"origin": ["queue"]}, "unknown origin"),
        ({"origin": None}, "unknown origin"),
        ({"key": "k\x00"}, "NUL"),
        ({"external_id": "e\x00"}, "NUL"),
    ],
    ids=["not_before-str", "not_before-int", "origin", "origin-list", "origin-none", "key", "ext"],
)
def test_mistyped_enqueue_arguments_are_refused(
    jobs: SchedulerService, kwargs: dict[str, Any], fragment: str
) -> None:
    with refused(jobs, InvalidJobError, fragment):
        jobs.enqueue_job("job", {}, **kwargs)


@pytest.mark.parametrize("job_type", [["job"], None, 5, b"job"], ids=repr)
def test_a_job_type_that_is_not_a_string_is_refused(jobs: SchedulerService, job_type: Any) -> None:
    with refused(jobs, UnknownJobTypeError, "unknown job type"):
        jobs.enqueue_job(job_type, {})


def test_a_group_name_with_nul_is_refused(jobs: SchedulerService) -> None:
    with refused(jobs, InvalidJobError, "group name", "NUL"):
        jobs.create_job_group([{"job_type": "job"}], name="a\x00b")


@pytest.mark.parametrize(
    "jobs_arg",
    [None, "job", {"job_type": "job"}, [{"job_type": "job"}] * (MAX_GROUP_JOBS + 1)],
    ids=["none", "str", "dict", "too-many"],
)
def test_job_lists_must_be_lists_of_at_most_50000(jobs: SchedulerService, jobs_arg: Any) -> None:
    with refused(jobs, InvalidJobError, "enqueue_jobs"):
        jobs.enqueue_jobs(jobs_arg)
    with refused(jobs, InvalidJobError, "create_job_group"):
        jobs.create_job_group(jobs_arg)


@pytest.mark.parametrize(
    "name", ["../x", "..", ".", ".x", "-x", "@x", "a@b@c", "x@", "a/b", "ollama@../x"]
)
def test_resource_names_that_read_as_paths_or_break_the_instance_form_are_refused(
    jobs: SchedulerService, name: str
) -> None:
    with refused(jobs, ConfigurationError, "invalid resource class"):
        jobs.set_resource_limit(name, 1)
    assert name not in jobs.resource_limits()


def test_an_ollama_slot_name_is_a_valid_resource(jobs: SchedulerService) -> None:
    jobs.set_resource_limit("ollama@127.0.0.1:11434", 1)
    assert jobs.resource_limits()["ollama@127.0.0.1:11434"] == 1


@pytest.mark.parametrize(
    "name", ["../../../../outside/x", "a/b", " job", ".hidden", "-x", "", "x\x00", "t" * 129]
)
def test_job_type_names_outside_the_safe_set_are_refused_at_registration(
    jobs: SchedulerService, name: str
) -> None:
    with pytest.raises(ConfigurationError, match="invalid job type name"):
        jobs.register(name, GateHandler())
    assert jobs.registry.names() == ["job"]


def test_a_run_log_stays_in_the_log_directory(open_service: Any, tmp_path: Path) -> None:
    svc = open_service(log_dir=str(tmp_path / "logs"))
    svc.register("story.v2:x-y_z", lambda params: None)
    svc.enqueue_job("story.v2:x-y_z", {})
    done = svc.dispatch_one()
    assert done is not None and done[1].log_path is not None
    assert Path(done[1].log_path).resolve().parent == (tmp_path / "logs").resolve()


@pytest.mark.parametrize("ttl", [math.inf, math.nan, 0, -1, "60", True, 31 * 24 * 3600])
def test_a_bad_reservation_ttl_writes_no_worker_and_no_reservation(
    jobs: SchedulerService, ttl: Any
) -> None:
    workers = len(jobs.list_workers())
    with refused(jobs, InvalidJobError, "ttl must be a number of seconds"):
        jobs.reserve_next_slot("holder", ttl=ttl)
    assert len(jobs.list_workers()) == workers
    assert not jobs.has_active_reservation()


def test_a_bad_direct_execution_writes_no_worker_and_no_reservation(
    jobs: SchedulerService,
) -> None:
    workers = len(jobs.list_workers())
    with refused(jobs, InvalidJobError, "timeout must be"):
        jobs.execute_direct("job", {}, timeout=math.nan)
    with refused(jobs, InvalidIdError, "reservation_id"):
        jobs.execute_direct("job", {}, reservation_id=2**63)
    assert len(jobs.list_workers()) == workers
    assert not jobs.has_active_reservation()


@pytest.mark.parametrize("limit", [0, -1, "5", 1.5, True], ids=repr)
def test_list_limits_must_be_positive_integers(jobs: SchedulerService, limit: Any) -> None:
    with refused(jobs, InvalidJobError, "limit"):
        jobs.list_jobs(limit=limit)
    with refused(jobs, InvalidJobError, "limit"):
        jobs.queued_without_external_id(limit)


@pytest.mark.parametrize(
    "status",
    [5, object(), ["QUEUED", 5], [["QUEUED"]]],
    ids=["int", "object", "list-with-int", "nested-list"],
)
def test_a_status_filter_of_the_wrong_type_is_refused(jobs: SchedulerService, status: Any) -> None:
    with refused(jobs, InvalidJobError, "unknown job status"):
        jobs.list_jobs(status)


def test_params_that_share_one_list_a_billion_times_are_refused_before_expanding(
    jobs: SchedulerService,
) -> None:
    bomb: Any = ["x"] * 10
    for _ in range(8):
        bomb = [bomb] * 10  # 10**9 values as JSON, a few hundred objects in memory
    with refused(jobs, InvalidParamsError, "more than 262144 values"):
        jobs.enqueue_job("job", {"bomb": bomb})
