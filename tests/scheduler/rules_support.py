"""Shared helpers of the rule tests (test_rules_*.py, test_bad_input.py, test_invariants.py).

`GateHandler` is a job handler whose jobs can be held at a gate until the test
releases them, so a test decides exactly when a RUNNING job ends. Subprocess
helpers start the real worker and reservation-holder processes for crash tests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from scheduler_core import Job, JobRun, JobStatus, SchedulerService
from tests.conftest import wait_for
from tests.support import drain, kill, start_module

__all__ = ["drain", "kill", "start_module"]

ROOT = Path(__file__).resolve().parents[2]

COUNTED_TABLES = ("job", "job_run", "job_group", "reservation")


def by_model(params: dict[str, Any]) -> str:
    """The resource rule of the LLM job types: a function of params."""
    return "ollama" if str(params.get("model", "")).startswith("ollama/") else "external"


def register_llm(svc: SchedulerService, handler: Any) -> None:
    """Register the job type "llm" as an application does: its resource rule, and the
    cap of one `ollama` job at a time that the rule's resources need."""
    svc.register("llm", handler, resource=by_model)
    svc.set_resource_limit("ollama", 1)


class GateHandler:
    """params: {"name": str, "block": bool (wait at the gate until released),
    "fail": int (fail the first n attempts of this name; -1 always)}.

    Thread-safe: records the order jobs started and finished, by name.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: list[str] = []
        self.finished: list[str] = []
        self._attempts: Counter[str] = Counter()
        self._gates: dict[str, threading.Event] = {}
        self._started_events: dict[str, threading.Event] = {}
        self._all_open = False  # after release_all(), gates made later are open too

    def _event(self, table: dict[str, threading.Event], name: str) -> threading.Event:
        with self._lock:
            return table.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        self._event(self._gates, name).set()

    def release_all(self) -> None:
        """Open every gate, including those of jobs that reach theirs afterwards (a job
        can be RUNNING before its handler has been called)."""
        with self._lock:
            self._all_open = True
            gates = list(self._gates.values())
        for gate in gates:
            gate.set()

    def _gate(self, name: str) -> threading.Event:
        gate = self._event(self._gates, name)
        if self._all_open:
            gate.set()
        return gate

    def wait_started(self, name: str, timeout: float = 10.0) -> None:
        if not self._event(self._started_events, name).wait(timeout):
            raise AssertionError(f"job {name!r} did not start within {timeout}s")

    def __call__(self, params: dict[str, Any]) -> list[str]:
        name = str(params.get("name", "?"))
        with self._lock:
            self._attempts[name] += 1
            attempt = self._attempts[name]
            self.started.append(name)
        self._event(self._started_events, name).set()
        if params.get("block") and not _wait_in_slices(self._gate(name), 60):
            raise RuntimeError(f"gate of {name} was never released")
        with self._lock:
            self.finished.append(name)
        fail = int(params.get("fail", 0))
        if fail < 0 or attempt <= fail:
            raise RuntimeError(f"injected failure of {name} on attempt {attempt}")
        return [f"artifacts/{name}-{attempt}.txt"]


def _wait_in_slices(gate: threading.Event, timeout: float) -> bool:
    """Python code between short waits: a cancel (an exception raised in this thread)
    lands within a slice, as in a handler that does work rather than one C call."""
    deadline = time.monotonic() + timeout
    while not gate.wait(0.05):
        if time.monotonic() > deadline:
            return False
    return True


def count_rows(svc: SchedulerService) -> dict[str, int]:
    """Row count of every table a submission could write to."""

    def read(conn: sa.Connection) -> dict[str, int]:
        return {
            t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
            for t in COUNTED_TABLES
        }

    return svc.db.read(read)


def run_in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    """Run fn in a daemon thread; the returned list receives its result or exception."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn(*args, **kwargs))
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def status_of(svc: SchedulerService, job: Job | int) -> JobStatus:
    job_id = job if isinstance(job, int) else job.job_id
    assert job_id is not None
    return svc.get_job(job_id).status


def wait_status(
    svc: SchedulerService, job: Job | int, status: JobStatus, timeout: float = 10.0
) -> None:
    wait_for(
        lambda: status_of(svc, job) == status,
        timeout=timeout,
        what=f"job {job if isinstance(job, int) else job.job_id} to be {status.value}",
    )


def run_of(svc: SchedulerService, job: Job) -> JobRun:
    assert job.job_id is not None
    run = svc.get_job_run_for_job(job.job_id)
    assert run is not None, f"job {job.job_id} has no run"
    return run
