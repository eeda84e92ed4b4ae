"""Helpers of the webhook tests: a real receiver process, settings that retry fast, waits."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scheduler_core import Job, JobRun, SchedulerService
from scheduler_core.webhooks import DeliveryStatus, WebhookDeliveryView, list_webhook_deliveries
from tests.conftest import wait_for
from tests.support import drain, kill, start_module

__all__ = ["drain", "kill"]

ROOT = Path(__file__).resolve().parents[2]

# Small delays so every retry path finishes in well under a second.
FAST: dict[str, Any] = {
    "timeout": 1.5,
    "attempt_deadline": 1.5,
    "backoff_seconds": 0.05,
    "backoff_max_seconds": 0.2,
    "jitter": 0.1,
    "poll_interval": 0.2,
    "lease_seconds": 3.0,
}


# The receivers of these tests listen on 127.0.0.1, which the product refuses by default
# (non-global targets): every test service opts in explicitly.
LOCAL_RECEIVERS: dict[str, Any] = {"allow_private": True}


def free_port() -> int:
    """A port nothing listens on right now (for a receiver that is down, then up)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RECEIVER = "tests.webhooks.receiver"
HOSTILE = "tests.webhooks.hostile"  # drips its answer, or answers a huge body


class Receiver:
    """`python -m tests.webhooks.receiver` (or `module`) in its own process; ready once its
    port file exists."""

    def __init__(self, directory: Path, *args: str, port: int = 0, module: str = RECEIVER) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port_file = directory / "port"
        self.record = directory / "requests.jsonl"
        self.args = args
        self.port = port
        self.module = module
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self, timeout: float = 10.0) -> Receiver:
        self.port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "--port-file",
                str(self.port_file),
                "--record",
                str(self.record),
                "--port",
                str(self.port),
                *self.args,
            ],
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"receiver exited with {self.proc.returncode} before ready")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"receiver not ready within {timeout}s")
            time.sleep(0.01)
        self.port = int(self.port_file.read_text())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None

    def requests(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def wait_requests(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return wait_for(  # type: ignore[no-any-return]
            lambda: (r := self.requests()) and len(r) >= n and r,
            timeout=timeout,
            what=f"{n} requests at the receiver",
        )


def start_worker(db_url: str, *args: str) -> subprocess.Popen[str]:
    """`python -m tests.webhooks.worker_process db_url args...`, stdout piped."""
    return start_module("tests.webhooks.worker_process", db_url, *args)


def run_for(svc: SchedulerService, job: Job) -> JobRun:
    assert job.job_id is not None
    run = svc.get_job_run_for_job(job.job_id)
    assert run is not None, f"job {job.job_id} has no run"
    return run


def payload(request: dict[str, Any]) -> dict[str, Any]:
    return json.loads(request["body"])  # type: ignore[no-any-return]


def delivered_payloads(receiver: Receiver) -> list[dict[str, Any]]:
    """Payloads the receiver accepted (answered 200)."""
    return [payload(r) for r in receiver.requests() if r["answer"] == "200"]


def wait_deliveries(
    svc: SchedulerService, status: DeliveryStatus, n: int, timeout: float = 10.0
) -> list[WebhookDeliveryView]:
    """Wait until there are exactly `n` deliveries and all of them have `status`."""

    def done() -> list[WebhookDeliveryView] | None:
        found = list_webhook_deliveries(svc)
        if len(found) == n and all(d.status == status for d in found):
            return found
        return None

    return wait_for(done, timeout=timeout, what=f"{n} deliveries {status.value}")  # type: ignore[no-any-return]
