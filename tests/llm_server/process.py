"""Run the fake server as a subprocess for tests, the way a real LLM server runs beside them."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ROOT = Path(__file__).resolve().parents[2]


class LLMServerProcess:
    def __init__(self, *, host: str = "127.0.0.1", startup_timeout: float = 30.0) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="llm-server-")
        self._log = Path(self._workdir.name) / "server.log"

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the fake LLM server is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        port_file = Path(self._workdir.name) / "port"
        with self._log.open("wb") as log:
            command = [sys.executable, "-m", "tests.llm_server", "--host", self.host]
            self._process = subprocess.Popen(
                [*command, "--port", "0", "--port-file", str(port_file)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        while not port_file.exists():
            if (code := self._process.poll()) is not None:
                raise RuntimeError(f"fake LLM server exited with {code}: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"fake LLM server not listening after {self.startup_timeout}s")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self.port = None

    def close(self) -> None:
        self.stop()
        self._workdir.cleanup()

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def control(self, **settings: Any) -> dict[str, Any]:
        """Change behaviour: delay_per_token, fail_next, fail_status, hold, reset."""
        response = httpx.post(f"{self.base_url}/_control", json=settings, timeout=5)
        response.raise_for_status()
        applied: dict[str, Any] = response.json()
        return applied

    def reset(self) -> None:
        self.control(reset=True)

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/_stats", timeout=5)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def wait_for_stats(
        self, condition: Callable[[dict[str, Any]], bool], *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll `/_stats` until `condition` holds, failing loudly at the deadline."""
        deadline = time.monotonic() + timeout
        while not condition(stats := self.stats()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake LLM server stats never matched: {stats}")
            time.sleep(0.02)
        return stats

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
