"""The executor seam: how a claimed job's handler is run and its outcome reported.

The default executor calls the registered Python callable in the calling thread.
Other executors (an application's, e.g. one running each job as a workflow engine's
flow run) implement the same `Executor` protocol and reuse `run_log` and
`outcome_from_result`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from scheduler_core.files import open_private, private_dir
from scheduler_core.redaction import redact
from scheduler_core.registry import JobType
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Job, JobRun, Outcome

if TYPE_CHECKING:
    from scheduler_core.run_records import RunCallbacks

RUN_LOGGER = "llmsched.run"
_run_logger = logging.getLogger(RUN_LOGGER)  # one lookup, not one per run
TRACEBACK_LIMIT = 16_384


@dataclass(slots=True)
class ExecutionContext:
    """What a handler may know about the run it executes."""

    job: Job
    run: JobRun
    callbacks: RunCallbacks | None = None  # what an executor may record about the run
    timeout_seconds: float | None = None  # the execution deadline (deadlines.py)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def log_path(self) -> str | None:
        return self.run.log_path

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """Lines logged here land in this run's log file."""
        return RunLog(self)


class Executor(Protocol):
    def execute(self, job_type: JobType, ctx: ExecutionContext) -> Outcome: ...


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def failed(error: str, *, exit_code: int = 1) -> Outcome:
    return Outcome(status=JobRunStatus.FAILED, error=error, exit_code=exit_code)


def outcome_from_result(result: object) -> Outcome:
    """Turn a handler's return value into an Outcome; a wrong type fails the run."""
    if result is None:
        return Outcome(status=JobRunStatus.COMPLETED, exit_code=0)
    if isinstance(result, list | tuple) and all(isinstance(a, str) for a in result):
        return Outcome(status=JobRunStatus.COMPLETED, exit_code=0, artifacts=list(result))
    return failed(
        f"handler returned {type(result).__name__}; "
        "expected a list of artifact paths (list[str]) or None"
    )


def _line(created: float, level: str, source: str, message: str) -> str:
    """A run-log line: `2026-01-31 12:00:00,123 INFO <step>: <message>` (local time)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
    return f"{stamp},{int((created - int(created)) * 1000):03d} {level} {source}: {message}"


class _RunLogFormatter(logging.Formatter):
    """Records as run-log lines, with their traceback or stack below like logging's."""

    def format(self, record: logging.LogRecord) -> str:
        source = getattr(record, "source", record.name)
        # Records carry upstream text (a model server's error, a traceback): redacted.
        text = _line(record.created, record.levelname, source, redact(record.getMessage()))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = f"{text}\n{redact(record.exc_text, limit=TRACEBACK_LIMIT)}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        return text


class _RunLogRouter(logging.Handler):
    """One handler for the whole process, routing each record to its run's log file.

    Adding and removing a handler per run would clear the logging module's caches on
    every job; a route is a dict entry instead.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(_RunLogFormatter())
        self._routes: dict[object, Any] = {}

    def attach(self, names: tuple[str, ...]) -> None:
        # Checked every run: a library's logging.config.dictConfig() drops our handler.
        for name in names:
            logger = logging.getLogger(name)
            if self not in logger.handlers:
                logger.addHandler(self)
                if logger.getEffectiveLevel() > logging.INFO:
                    logger.setLevel(logging.INFO)

    def route(self, key: object, stream: Any) -> None:
        self._routes[key] = stream

    def unroute(self, key: object) -> None:
        self._routes.pop(key, None)

    def emit(self, record: logging.LogRecord) -> None:
        stream = self._routes.get(("run", getattr(record, "run_id", None))) or self._routes.get(
            ("flow_run", getattr(record, "flow_run_id", None))
        )
        if stream is not None:
            self.write(stream, record)

    def write(self, stream: Any, record: logging.LogRecord) -> None:
        # Name the step: a workflow engine's records may carry their task or flow run's name.
        record.source = (
            getattr(record, "task_run_name", None)
            or getattr(record, "flow_run_name", None)
            or record.name
        )
        try:
            _append(stream, self.format(record))
        except Exception:
            self.handleError(record)


def _append(stream: Any, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()  # readable at once: a run's log is tailed while it runs


_router = _RunLogRouter()


def _open_log(path: str) -> Any:
    """Append to the run's log file (files.py: private unless shared with a group),
    creating its directory only when it is missing (one check per process would miss a
    directory removed by log clean-up)."""
    try:
        return open_private(path, "a")
    except FileNotFoundError:
        private_dir(os.path.dirname(path))
        return open_private(path, "a")


@contextmanager
def run_log(
    ctx: ExecutionContext,
    *,
    loggers: tuple[str, ...] = (),
) -> Iterator[RunLog]:
    """This run's log: our start/end lines plus every record logged for it.

    Records reach it when they carry this run's `run_id` (ctx.logger) or, once
    `RunLog.follow_flow_run` is called, the executor's `flow_run_id` (the loggers given).
    The file is created at the run's first record or at an end other than COMPLETED;
    a run that completes without logging leaves no file (creating one per job would
    cost more than the rest of a short job's bookkeeping).
    """
    _router.attach((RUN_LOGGER, *loggers))
    log = RunLog(ctx)
    if ctx.log_path is None:
        yield log
        return
    _router.route(("run", ctx.run.run_id), log)
    try:
        yield log
    finally:
        _router.unroute(("run", ctx.run.run_id))
        for key in log.followed:
            _router.unroute(key)
        log.close()


class RunLog(logging.LoggerAdapter[logging.Logger]):
    """The run's logger and its file, opened at the first line written to it;
    `follow_flow_run` adds the records of the executor's flow run (those carrying its
    `flow_run_id`) to the file."""

    def __init__(self, ctx: ExecutionContext) -> None:
        super().__init__(_run_logger, {"run_id": ctx.run.run_id, "job_id": ctx.job.job_id})
        self.ctx = ctx
        self.started = time.time()
        self.stream: Any = None
        self.followed: list[object] = []
        self._opening = threading.Lock()

    @property
    def written(self) -> bool:
        """Has the run's log file been created?"""
        return self.stream is not None

    def _file(self) -> Any:
        """The open file, created with the run's start line on first use."""
        if self.stream is None:
            with self._opening:  # records may come from the executor's threads at once
                if self.stream is None:
                    stream = _open_log(self.ctx.log_path or "")
                    job = self.ctx.job
                    start = (
                        f"action=start job_id={job.job_id} run_id={self.ctx.run.run_id} "
                        f"type={job.job_type} attempt={job.attempt} params={job.params}"
                    )
                    _append(stream, _line(self.started, "INFO", RUN_LOGGER, start))
                    self.stream = stream
        return self.stream

    def write(self, text: str) -> None:
        """The router's stream interface: a formatted record, appended."""
        if self.ctx.log_path is not None:
            self._file().write(text)

    def flush(self) -> None:
        if self.stream is not None:
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()

    def line(self, level: int, msg: str, *args: object) -> None:
        """One of our own lines, straight into the file: the logging machinery (record,
        caller lookup, handler chain) would cost more than a no-op job's execution."""
        if self.ctx.log_path is not None:
            text = _line(time.time(), logging.getLevelName(level), RUN_LOGGER, msg % args)
            _append(self._file(), text)

    def follow_flow_run(self, flow_run_id: str) -> None:
        if self.ctx.log_path is not None:
            key = ("flow_run", flow_run_id)
            _router.route(key, self)
            self.followed.append(key)


def log_outcome(log: RunLog, outcome: Outcome) -> None:
    if outcome.status == JobRunStatus.COMPLETED:
        if log.written:  # a silent, successful run leaves no file
            log.line(logging.INFO, "action=finish status=COMPLETED artifacts=%s", outcome.artifacts)
    elif outcome.interrupted_by is not None:
        log.line(
            logging.WARNING,
            "action=interrupted dependency=%s error=%s; the job goes back to the queue",
            outcome.interrupted_by,
            redact(outcome.error or ""),
        )
    else:
        log.line(
            logging.ERROR,
            "action=finish status=%s error=%s",
            outcome.status.value,
            redact(outcome.error or ""),
        )


class CallableExecutor:
    """Runs `handler(params)` or `handler(params, context)` in the calling thread."""

    def execute(self, job_type: JobType, ctx: ExecutionContext) -> Outcome:
        with run_log(ctx) as log:
            try:
                params = dict(ctx.job.params)
                result = (
                    job_type.handler(params, ctx)
                    if job_type.takes_context
                    else job_type.handler(params)
                )
            except Exception as exc:
                log.error("handler raised:\n%s", traceback.format_exc())
                outcome = failed(describe_error(exc))
            else:
                outcome = outcome_from_result(result)
            log_outcome(log, outcome)
            return outcome
