"""Which job, group and flow run the current code runs for: read from the Prefect flow run
the executor started, whose tags name the job and its group (prefect_jobs.flow_run_tags),
so that outputs and usage are linked to the run without passing ids through every task."""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, replace

scheduler_run_id: ContextVar[int | None] = ContextVar("scheduler_run_id", default=None)
"""The scheduler's run the current flow run executes, set by the Prefect executor around
the flow (a Prefect flow run does not know it)."""


CONTEXT_TAGS = ("job", "group")
"""The flow run tags (`job:<id>`, `group:<id>`) that link outputs and usage to the run."""


@dataclass(frozen=True, slots=True)
class RunContext:
    job_id: int | None = None
    group_id: int | None = None
    flow_run_id: str | None = None
    run_id: int | None = None


def run_context_from(flow_run_id: str | None, tags: Iterable[str]) -> RunContext:
    """The context a flow run's id and `job:<id>` / `group:<id>` tags give."""
    found: dict[str, int] = {}
    for tag in tags:
        name, sep, value = str(tag).partition(":")
        if sep and name in CONTEXT_TAGS and value.isdigit() and name not in found:
            found[name] = int(value)
    return RunContext(
        job_id=found.get("job"),
        group_id=found.get("group"),
        flow_run_id=str(flow_run_id) if flow_run_id else None,
    )


def current_run_context() -> RunContext:
    """The current flow run's context; all None outside a flow run (a script, a test)."""
    from prefect.runtime import flow_run

    flow_run_id = flow_run.id
    context = run_context_from(flow_run_id, flow_run.tags if flow_run_id else ())
    return replace(context, run_id=scheduler_run_id.get()) if flow_run_id else context
