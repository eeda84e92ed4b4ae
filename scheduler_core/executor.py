"""The executor seam: how a claimed job's handler is run and its outcome recorded.

The default executor calls the registered Python callable in the calling thread.
Other executors (Prefect flow runs) implement the same `Executor` protocol.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import Protocol

from scheduler_core.models import Job, JobRun
from scheduler_core.registry import JobType
from scheduler_core.statuses import JobRunStatus
from scheduler_core.store import Outcome

log = logging.getLogger("scheduler_core.executor")


@dataclass(slots=True)
class ExecutionContext:
    """What a handler may know about the run it executes; it may set log_path/flow_run_id."""

    job: Job
    run: JobRun
    log_path: str | None = None
    flow_run_id: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Executor(Protocol):
    def execute(self, job_type: JobType, ctx: ExecutionContext) -> Outcome: ...


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def outcome_from_result(result: object, ctx: ExecutionContext) -> Outcome:
    """Turn a handler's return value into an Outcome; a wrong type fails the run."""
    if result is None:
        artifacts: list[str] = []
    elif isinstance(result, list | tuple) and all(isinstance(a, str) for a in result):
        artifacts = list(result)
    else:
        return Outcome(
            status=JobRunStatus.FAILED,
            error=(
                f"handler returned {type(result).__name__}; "
                "expected a list of artifact paths (list[str]) or None"
            ),
            exit_code=1,
            log_path=ctx.log_path,
            flow_run_id=ctx.flow_run_id,
        )
    return Outcome(
        status=JobRunStatus.COMPLETED,
        exit_code=0,
        artifacts=artifacts,
        log_path=ctx.log_path,
        flow_run_id=ctx.flow_run_id,
    )


class CallableExecutor:
    """Runs `handler(params)` or `handler(params, context)` in the calling thread."""

    def execute(self, job_type: JobType, ctx: ExecutionContext) -> Outcome:
        try:
            params = dict(ctx.job.params)
            result = (
                job_type.handler(params, ctx)
                if job_type.takes_context
                else job_type.handler(params)
            )
        except Exception as exc:
            log.debug("action=handler_failed job_id=%s\n%s", ctx.job.job_id, traceback.format_exc())
            return Outcome(
                status=JobRunStatus.FAILED,
                error=describe_error(exc),
                exit_code=1,
                log_path=ctx.log_path,
                flow_run_id=ctx.flow_run_id,
            )
        return outcome_from_result(result, ctx)
