"""Input checks of the public API: everything is refused before the database sees it,
with one error that names the problem and the fix."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from scheduler_core import references
from scheduler_core.deadlines import check_timeout
from scheduler_core.errors import (
    InvalidIdError,
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
MAX_ID = 2**63 - 1
"""Ids are database integers: 1..MAX_ID (64-bit on SQLite)."""
MAX_ID_POSTGRES = 2**31 - 1
"""PostgreSQL's id columns are INTEGER (32-bit): larger ids cannot exist there."""
PARAMS_MAX_BYTES = 256 * 1024
"""A job's params as compact JSON (UTF-8): larger inputs belong in files the job reads."""
PARAMS_MAX_DEPTH = 32
"""Nesting of params (an object is one level): deep enough for any real request, shallow
enough that no check, encoder or database recurses out of its stack."""
MAX_GROUP_JOBS = 50_000
"""Jobs per enqueue_jobs / create_job_group call (one transaction)."""
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
        members: references.Members | None = None,
    ) -> JobSpec:
        """`members`: for a group member, what its references to earlier members' outputs
        may name (references.py); without it params may hold none."""
        jt = self.registry.get(job_type)
        params = check_params(params, job_type)
        seen = params
        if references.holds(params):  # validators see a placeholder for each reference
            params = references.link(params, members)
            seen = references.with_placeholders(params)
        job_origin = check_origin(origin)
        if not_before is not None and not isinstance(not_before, datetime):
            raise InvalidJobError(
                f"not_before must be a timezone-aware datetime, got {shown(not_before)}"
            )
        if jt.validate is not None:
            _checked(jt.validate, seen, f"params for job type {job_type!r} are invalid")
        resource = _checked(
            jt.resource_for, seen, f"cannot tell the resource class of this {job_type!r} job"
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
            origin=job_origin,
            position=position,
            not_before=not_before,
            timeout_seconds=check_timeout(
                timeout_seconds, name="timeout_seconds", error=InvalidJobError
            ),
        )

    def from_mapping(
        self, item: Mapping[str, Any], *, index: int, names: Mapping[str, int] | None = None
    ) -> JobSpec:
        """One entry of `enqueue_jobs` / `create_job_group`'s list; `names`: a group's
        named members (references.names_of), whose entries may have a `name`."""
        if not isinstance(item, Mapping) or "job_type" not in item:
            raise InvalidJobError(
                f"job #{index} must be a mapping with at least 'job_type' (and 'params'), "
                f"got {shown(item)}"
            )
        allowed = MAPPING_KEYS if names is None else MAPPING_KEYS | {"name"}
        unknown = [k for k in item if k not in allowed]
        if unknown:
            raise InvalidJobError(
                f"job #{index} has unknown keys {shown(sorted(map(str, unknown)))}; "
                f"allowed: {sorted(allowed)}"
            )
        try:
            return self.build(
                item["job_type"],
                item["params"] if item.get("params") is not None else {},
                priority=item.get("priority", 0),
                max_retries=item.get("max_retries"),
                not_before=item.get("not_before"),
                position=item.get("position"),
                timeout_seconds=item.get("timeout_seconds"),
                members=None if names is None else references.Members(names, index),
            )
        except InvalidJobError as exc:
            raise member_error(exc, index) from None

    def from_list(self, jobs: Any, *, what: str, group: bool = False) -> list[JobSpec]:
        """Every entry of a list of job mappings, refused as a whole at the first bad one;
        a `group`'s entries may be named and use earlier entries' outputs (references.py)."""
        items = check_job_list(jobs, what)
        names = references.names_of(items) if group else None
        return [self.from_mapping(j, index=i, names=names) for i, j in enumerate(items)]


def member_error(exc: InvalidJobError, index: int) -> InvalidJobError:
    """`exc` for the list entry `index`: the same class, its message prefixed `job #i: `;
    `member` and `problem` keep the two apart for callers that name entries their way."""
    error = type(exc)(f"job #{index}: {exc}")
    error.member = index  # type: ignore[attr-defined]
    error.problem = str(exc)  # type: ignore[attr-defined]
    return error


def check_job_list(jobs: Any, what: str) -> Sequence[Any]:
    """A list (or tuple) of at most MAX_GROUP_JOBS job mappings."""
    if not isinstance(jobs, list | tuple):
        raise InvalidJobError(
            f"{what} takes a list of job mappings such as [{{'job_type': 'story', "
            f"'params': {{...}}}}], got {type(jobs).__name__}"
        )
    if len(jobs) > MAX_GROUP_JOBS:
        raise InvalidJobError(
            f"{what} got {len(jobs)} jobs; the limit is {MAX_GROUP_JOBS} per call: "
            "split the work into several calls"
        )
    return jobs


def _checked(fn: Any, params: dict[str, Any], problem: str) -> Any:
    """Call a registered function of params; whatever it raises is InvalidParamsError."""
    try:
        return fn(params)
    except SchedulerError:
        raise
    except Exception as exc:
        raise InvalidParamsError(f"{problem}: {exc}") from exc


def check_params(params: Any, job_type: str) -> dict[str, Any]:
    """A JSON object the databases can store, as a plain dict (a copy), within
    PARAMS_MAX_DEPTH and PARAMS_MAX_BYTES."""
    if not isinstance(params, Mapping):
        raise InvalidParamsError(
            f"params for job type {job_type!r} must be a JSON object (dict), "
            f"got {type(params).__name__}"
        )
    problem = _walk(params)  # before json.dumps, which recurses as deep as the value
    if problem == "depth":
        raise InvalidParamsError(
            f"params for job type {job_type!r} are nested more than {PARAMS_MAX_DEPTH} "
            "levels deep (or contain themselves); flatten them"
        )
    if problem == "size":
        raise InvalidParamsError(
            f"params for job type {job_type!r} hold more than {PARAMS_MAX_BYTES} values, more "
            f"than {PARAMS_MAX_BYTES} bytes (256 KiB) of JSON: pass a path to a file instead"
        )
    try:
        text = json.dumps(dict(params), allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidParamsError(
            f"params for job type {job_type!r} are not JSON-serialisable ({exc}); "
            "use strings, numbers, booleans, null, lists and dicts"
        ) from None
    if problem == "nul":
        raise InvalidParamsError(
            f"params for job type {job_type!r} contain a NUL character (\\x00), which "
            "databases cannot store in JSON; remove it or encode the value (e.g. base64)"
        )
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > PARAMS_MAX_BYTES:
        raise InvalidParamsError(
            f"params for job type {job_type!r} are {size} bytes of JSON; the limit is "
            f"{PARAMS_MAX_BYTES} (256 KiB): pass a path to a file instead of its content"
        )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def nested(data: Any) -> Iterator[tuple[Any, Any, int]]:
    """Every (key, value, depth) in `data`, containers (mappings, lists, tuples) opened
    after they are yielded, so a caller stops at its limit before going deeper;
    iterative, so no input can exhaust the stack. The top value has key None, depth 1."""
    stack: list[tuple[Any, Any, int]] = [(None, data, 1)]
    while stack:
        key, value, depth = stack.pop()
        yield key, value, depth
        if isinstance(value, Mapping):
            stack.extend((k, v, depth + 1) for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((None, v, depth + 1) for v in value)


def _walk(params: Mapping[str, Any]) -> str | None:
    """'depth' if containers nest deeper than PARAMS_MAX_DEPTH, 'size' if there are more
    values than PARAMS_MAX_BYTES could encode (each takes a byte at least: a value that
    shares one list many times is refused before it is expanded), 'nul' if a string
    holds NUL, else None."""
    nul = False
    for seen, (key, value, depth) in enumerate(nested(params), start=1):
        if seen > PARAMS_MAX_BYTES:
            return "size"
        nul = nul or any(isinstance(t, str) and "\x00" in t for t in (key, value))
        if depth > PARAMS_MAX_DEPTH and isinstance(value, Mapping | list | tuple):
            return "depth"
    return "nul" if nul else None


def max_id(dialect: str) -> int:
    """The largest id the backend's id columns hold."""
    return MAX_ID if dialect == "sqlite" else MAX_ID_POSTGRES


def check_id(value: Any, *, name: str, high: int = MAX_ID) -> int:
    """A record id: an int (not a bool) from 1 to `high` (max_id of the backend), so no
    id reaches the database as a value its column cannot hold."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidIdError(f"{name} must be an integer from 1 to {high}, got {shown(value)}")
    return value


def check_optional_id(value: Any, *, name: str, high: int = MAX_ID) -> int | None:
    return None if value is None else check_id(value, name=name, high=high)


def shown(value: Any, limit: int = 80) -> str:
    """`value` for an error message: its repr, cut to `limit` characters; never raises
    (a huge int or a broken __repr__ is described instead)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_int(value: Any, *, name: str, bounds: tuple[int, int], error: type[Exception]) -> int:
    """An int (not a bool) that the database column can hold."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an integer, got {shown(value)}")
    low, high = bounds
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}, got {shown(value)}")
    return value


def check_text(value: Any, *, name: str, limit: int) -> str:
    """A string of at most `limit` characters without NUL, which databases cannot store."""
    if not isinstance(value, str):
        raise InvalidJobError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidJobError(f"{name} is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise InvalidJobError(f"{name} contains a NUL character (\\x00); remove it")
    return value


def check_optional_text(value: Any, *, name: str, limit: int) -> str | None:
    return None if value is None else check_text(value, name=name, limit=limit)


def check_limit(value: Any, *, name: str = "limit") -> int | None:
    """A result count: None (no limit) or a positive integer."""
    if value is None:
        return None
    return check_int(value, name=name, bounds=(1, MAX_ID), error=InvalidJobError)


def check_texts(values: Any, *, name: str, limit: int) -> list[str]:
    """A list (or tuple) of strings, each as check_text."""
    if not isinstance(values, list | tuple):
        raise InvalidJobError(f"{name} must be a list of strings, got {type(values).__name__}")
    return [check_text(v, name=name, limit=limit) for v in values]


def statuses(
    status: JobStatus | str | Sequence[JobStatus | str] | None,
) -> list[JobStatus] | None:
    """A status filter: one status or several, by name in any case."""
    if status is None:
        return None
    valid = ", ".join(s.value for s in JobStatus)
    if isinstance(status, str):
        items: list[Any] = [status]
    elif isinstance(status, list | tuple | set | frozenset):
        items = list(status)
    else:
        raise InvalidJobError(f"unknown job status {shown(status)}; valid: {valid}")
    try:
        return [JobStatus(s.upper() if isinstance(s, str) else s) for s in items]
    except (ValueError, TypeError):
        raise InvalidJobError(f"unknown job status in {shown(items)}; valid: {valid}") from None


def check_origin(origin: Any) -> JobOrigin:
    try:
        return JobOrigin(origin)
    except (ValueError, TypeError):
        valid = ", ".join(o.value for o in JobOrigin)
        raise InvalidJobError(f"unknown origin {shown(origin)}; valid: {valid}") from None


def check_priority(priority: Any) -> None:
    check_int(
        priority, name="priority (higher runs first)", bounds=INT32, error=InvalidPriorityError
    )
