"""Rows of our own tables as public values, without pydantic's per-field checks."""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from scheduler_core.values import Job, JobGroup, JobRun

M = TypeVar("M", Job, JobRun, JobGroup)


def _enum_fields(model: type[Any]) -> dict[str, type[Enum]]:
    fields: dict[str, type[Enum]] = {}
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, Enum):
            fields[name] = kind
    return fields


_ENUMS: dict[type[Any], dict[str, type[Enum]]] = {
    model: _enum_fields(model) for model in (Job, JobRun, JobGroup)
}
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    model: tuple(model.model_fields) for model in (Job, JobRun, JobGroup)
}


def value(model: type[M], data: dict[str, Any]) -> M:
    """A public value from one of our own rows (every field, valid values): only the
    status/origin strings become their enums. What `model_construct` does, without
    its per-field alias and default checks, which cost more than the row's SQL. Fields
    are put in the value's order: a table's column order depends on how it was created
    (a migrated table has its new columns last)."""
    for name, enum in _ENUMS[model].items():
        data[name] = enum(data[name])
    data = {name: data[name] for name in _FIELDS[model]}
    made: M = model.__new__(model)  # SQLModel's __new__ sets pydantic's private slots
    object.__setattr__(made, "__dict__", data)
    object.__setattr__(made, "__pydantic_fields_set__", set(data))
    return made


def value_in(model: type[M], row: Any) -> M:
    """A value of `model` from a row that holds its columns and more (a claim's head
    with its class, a member's end with its group)."""
    return value(model, {name: getattr(row, name) for name in _FIELDS[model]})


def changed(made: M, **changes: Any) -> M:
    """`made` with `changes` (valid values of its fields): `model_copy(update=...)`
    without pydantic's copy machinery, which costs more than a job's end statement."""
    copy: M = type(made).__new__(type(made))
    object.__setattr__(copy, "__dict__", {**made.__dict__, **changes})
    object.__setattr__(copy, "__pydantic_fields_set__", made.model_fields_set | changes.keys())
    return copy


def job(row: Any) -> Job:
    return value(Job, row._asdict())


def run(row: Any) -> JobRun:
    return value(JobRun, row._asdict())


def group(row: Any) -> JobGroup:
    return value(JobGroup, row._asdict())
