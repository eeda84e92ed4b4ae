"""Job types: which handler runs a type and which resource class its jobs need."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scheduler_core.deadlines import check_timeout
from scheduler_core.errors import ConfigurationError, UnknownJobTypeError
from scheduler_core.rules.resources import check_name as check_resource_name

Handler = Callable[..., list[str] | None]
ResourceRule = str | Callable[[dict[str, Any]], str]
Validator = Callable[[dict[str, Any]], object]


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
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"job type name must be a non-empty string, got {name!r}")
        if len(name) > 128:
            raise ConfigurationError(
                f"job type name is {len(name)} characters long; the limit is 128"
            )
        if not callable(handler):
            raise ConfigurationError(f"handler for job type {name!r} is not callable")
        if not callable(resource):
            check_resource_name(resource)
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
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownJobTypeError(
                f"unknown job type {name!r} (registered: {known}); "
                "register a handler with svc.register(job_type, handler) first"
            ) from None

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
