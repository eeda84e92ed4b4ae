"""Input checks of the public API: everything is refused before the database sees it,
with one error that names the problem and the fix."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from scheduler_core.deadlines import check_timeout
from scheduler_core.errors import (
    InvalidJobError,
    InvalidParamsError,
    InvalidPriorityError,
    SchedulerError,
)
from scheduler_core.registry import Registry
from scheduler_core.statuses import JobOrigin, JobStatus
from scheduler_core.values import JobSpec

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
MAPPING_KEYS = frozenset(
    {
        "job_type",
        "params",
        "priority",
        "max_retries",
        "not_before",
        "position",
        "timeout_seconds",
    }
)


class SpecBuilder:
    """Turns a job request into a validated JobSpec, using the registered job types."""

    def __init__(self, registry: Registry, *, default_max_retries: int) -> None:
        self.registry = registry
        self.default_max_retries = default_max_retries

    def build(
        self,
        job_type: str,
        params: Any,
        *,
        priority: Any = 0,
        max_retries: int | None = None,
        origin: JobOrigin | str = JobOrigin.QUEUE,
        position: int | None = None,
        not_before: datetime | None = None,
        timeout_seconds: float | None = None,
    ) -> JobSpec:
        jt = self.registry.get(job_type)
        params = check_params(params, job_type)
        if jt.validate is not None:
            _checked(jt.validate, params, f"params for job type {job_type!r} are invalid")
        resource = _checked(
            jt.resource_for, params, f"cannot tell the resource class of this {job_type!r} job"
        )
        check_priority(priority)
        retries = self.default_max_retries if max_retries is None else max_retries
        check_int(retries, name="max_retries", bounds=(0, 1000), error=InvalidJobError)
        if position is not None:
            check_int(position, name="position", bounds=INT64, error=InvalidJobError)
        if not_before is not None and not_before.tzinfo is None:
            raise InvalidJobError("not_before must be timezone-aware, e.g. datetime.now(UTC)")
        return JobSpec(
            job_type=job_type,
            params=params,
            resource=resource,
            priority=priority,
            max_retries=retries,
            origin=check_origin(origin),
            position=position,
            not_before=not_before,
            timeout_seconds=check_timeout(
                timeout_seconds, name="timeout_seconds", error=InvalidJobError
            ),
        )

    def from_mapping(self, item: Mapping[str, Any], *, index: int) -> JobSpec:
        """One entry of `enqueue_jobs` / `create_job_group`'s list."""
        if not isinstance(item, Mapping) or "job_type" not in item:
            raise InvalidJobError(
                f"job #{index} must be a mapping with at least 'job_type' (and 'params'), "
                f"got {item!r}"
            )
        unknown = set(item) - MAPPING_KEYS
        if unknown:
            raise InvalidJobError(
                f"job #{index} has unknown keys {sorted(unknown)}; allowed: {sorted(MAPPING_KEYS)}"
            )
        return self.build(
            item["job_type"],
            item["params"] if item.get("params") is not None else {},
            priority=item.get("priority", 0),
            max_retries=item.get("max_retries"),
            not_before=item.get("not_before"),
            position=item.get("position"),
            timeout_seconds=item.get("timeout_seconds"),
        )


def _checked(fn: Any, params: dict[str, Any], problem: str) -> Any:
    """Call a registered function of params; whatever it raises is InvalidParamsError."""
    try:
        return fn(params)
    except SchedulerError:
        raise
    except Exception as exc:
        raise InvalidParamsError(f"{problem}: {exc}") from exc


def check_params(params: Any, job_type: str) -> dict[str, Any]:
    """A JSON object the databases can store, as a plain dict (a copy)."""
    if not isinstance(params, Mapping):
        raise InvalidParamsError(
            f"params for job type {job_type!r} must be a JSON object (dict), "
            f"got {type(params).__name__}"
        )
    try:
        text = json.dumps(dict(params), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParamsError(
            f"params for job type {job_type!r} are not JSON-serialisable ({exc}); "
            "use strings, numbers, booleans, null, lists and dicts"
        ) from None
    if _has_nul(params):
        raise InvalidParamsError(
            f"params for job type {job_type!r} contain a NUL character (\\x00), which "
            "databases cannot store in JSON; remove it or encode the value (e.g. base64)"
        )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def check_int(value: Any, *, name: str, bounds: tuple[int, int], error: type[Exception]) -> int:
    """An int (not a bool) that the database column can hold."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an integer, got {value!r}")
    low, high = bounds
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}, got {value}")
    return value


def check_text(value: Any, *, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidJobError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidJobError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return value


def check_positive(value: Any, *, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidJobError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def statuses(
    status: JobStatus | str | Sequence[JobStatus | str] | None,
) -> list[JobStatus] | None:
    """A status filter: one status or several, by name in any case."""
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    try:
        return [JobStatus(s.upper() if isinstance(s, str) else s) for s in items]
    except ValueError:
        valid = ", ".join(s.value for s in JobStatus)
        raise InvalidJobError(f"unknown job status in {items!r}; valid: {valid}") from None


def check_origin(origin: Any) -> JobOrigin:
    try:
        return JobOrigin(origin)
    except ValueError:
        valid = ", ".join(o.value for o in JobOrigin)
        raise InvalidJobError(f"unknown origin {origin!r}; valid: {valid}") from None


def check_priority(priority: Any) -> None:
    check_int(
        priority, name="priority (higher runs first)", bounds=INT32, error=InvalidPriorityError
    )
