"""The E2E job handler of the test plan: records executions, injects failures.

Executions are appended to a file, so a handler in a worker subprocess and the test
that inspects it see the same record.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any


class E2EJobHandler:
    """params: {"name": str, "fail_times": int (fail the first n attempts; -1 always),
    "block": bool or int (wait until released: always, or on the first n attempts)}."""

    def __init__(self, record: Path) -> None:
        self.record = record
        self.release = threading.Event()
        self.started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any]) -> list[str]:
        name = params.get("name", "?")
        with self._lock:
            attempt = sum(1 for e in self.executions() if e["name"] == name) + 1
            with self.record.open("a") as f:
                f.write(json.dumps({"name": name, "attempt": attempt}) + "\n")
        self.started.set()
        block = params.get("block", False)
        if block is True or (not isinstance(block, bool) and attempt <= int(block)):
            self.release.wait(timeout=120)
        fail_times = int(params.get("fail_times", 0))
        if fail_times < 0 or attempt <= fail_times:
            raise RuntimeError(f"injected failure of {name} on attempt {attempt}")
        return [f"artifacts/{name}-{attempt}.txt"]

    def executions(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]

    def names(self) -> list[str]:
        return [e["name"] for e in self.executions()]


def as_flow(handler: E2EJobHandler) -> Any:
    """The same handler as a Prefect flow, so every scenario also runs as flow runs."""
    from prefect import flow

    @flow(name="e2e-handler", persist_result=False)
    async def e2e_flow(
        name: str = "?", fail_times: int = 0, block: bool | int = False
    ) -> list[str]:
        params = {"name": name, "fail_times": fail_times, "block": block}
        return await asyncio.to_thread(handler, params)

    return e2e_flow


def register_e2e(svc: Any, handler: E2EJobHandler, *, executor: str) -> None:
    """Register the E2E handler as job type "e2e", as a callable or as a Prefect flow."""
    if executor == "prefect":
        from flows.executor import install_prefect, register_flow

        install_prefect(svc)
        register_flow(svc, "e2e", as_flow(handler), resource="external")
    else:
        svc.register("e2e", handler, resource="external")
