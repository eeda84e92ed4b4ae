"""Helpers shared by every test package: real subprocesses, and draining a queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from scheduler_core import SchedulerService

ROOT = Path(__file__).resolve().parents[1]

# The JSON shape of a run, shared by the API, the CLI and webhook payloads.
RUN_KEYS = {
    "run_id",
    "job_id",
    "status",
    "started_at",
    "finished_at",
    "duration_seconds",
    "exit_code",
    "error",
    "artifacts",
    "log_path",
    "flow_run_id",
    "job_type",
    "attempt",
    "retry_of",
    "group_id",
    "sequence",
    "priority",
    "resource",
    "slot",
}


def start_module(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`python -m module args...` from the project root, stdout piped; `env` adds
    variables to this process's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
    )


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a process we started and reap it (so its pid is really gone)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def terminate(proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    """SIGTERM a process we started (a worker drains), then SIGKILL it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def drain(svc: SchedulerService) -> int:
    """Dispatch in this thread until nothing is eligible; the number of jobs run."""
    n = 0
    while svc.dispatch_one() is not None:
        n += 1
    return n
