"""Bad input is refused with a SchedulerError that names the problem, and nothing is written."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from scheduler_core import (
    ConfigurationError,
    EmptyGroupError,
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
