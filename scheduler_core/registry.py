"""Job types: which handler runs a type and which resource class its jobs need."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scheduler_core.deadlines import check_timeout
from scheduler_core.errors import ConfigurationError, UnknownJobTypeError
from scheduler_core.rules.resources import check_name as check_resource_name

Handler = Callable[..., list[str] | None]
ResourceRule = str | Callable[[dict[str, Any]], str]
Validator = Callable[[dict[str, Any]], object]

_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""A job type name: safe in a file name (its run logs are named after it) and a URL."""


def check_type_name(name: object) -> str:
    """1-128 letters, digits or _ . : -, starting with a letter or digit."""
    if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
        from scheduler_core.validation import shown

        length = f" ({len(name)} characters)" if isinstance(name, str) and len(name) > 128 else ""
        raise ConfigurationError(
            f"invalid job type name {shown(name)}{length}: use 1-128 letters, digits or _ . : -, "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    handler: Handler
    resource: ResourceRule = "default"
    takes_context: bool = False
    validate: Validator | None = None
    timeout_seconds: float | None = None  # the type's execution deadline

    def resource_for(self, params: dict[str, Any]) -> str:
        if callable(self.resource):
            return check_resource_name(self.resource(params))
        return self.resource


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self.bindings: tuple[tuple[str, str], ...] = ()

    def bind(self, resource: str, instance: str) -> None:
        """This process's jobs of class `resource` occupy `instance`: workers that bind a
        class to different instances (each to its own model server) run such jobs side by
        side, each instance capped like the class."""
        check_resource_name(resource)
        check_resource_name(instance)
        bound = dict(self.bindings)
        bound[resource] = instance
        self.bindings = tuple(sorted(bound.items()))

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        resource: ResourceRule = "default",
        validate: Validator | None = None,
        timeout_seconds: float | None = None,
    ) -> JobType:
        check_type_name(name)
        if not callable(handler):
            raise ConfigurationError(f"handler for job type {name!r} is not callable")
        if not callable(resource):
            check_resource_name(resource)
        if validate is not None and not callable(validate):
            raise ConfigurationError(f"validate for job type {name!r} is not callable")
        timeout = check_timeout(timeout_seconds, name="timeout_seconds", error=ConfigurationError)
        job_type = JobType(
            name,
            handler,
            resource,
            takes_context=_takes_context(handler),
            validate=validate,
            timeout_seconds=timeout,
        )
        self._types[name] = job_type
        return job_type

    def get(self, name: str) -> JobType:
        found = self._types.get(name) if isinstance(name, str) else None
        if found is None:
            from scheduler_core.validation import shown

            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownJobTypeError(
                f"unknown job type {shown(name)} (registered: {known}); "
                "register a handler with svc.register(job_type, handler) first"
            )
        return found

    def names(self) -> list[str]:
        return sorted(self._types)


def _takes_context(handler: Handler) -> bool:
    """A handler may take `(params)` or `(params, context)`."""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)
