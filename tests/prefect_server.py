"""A real `prefect server start` process for tests, that can be stopped and started again
on the same port and database (its PREFECT_HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import wait_for


class PrefectServer:
    def __init__(self, home: Path, port: int, **settings: str) -> None:
        """`settings`: extra PREFECT_* variables of the server (none: its defaults)."""
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}/api"
        self.settings = settings
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 90) -> None:
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_API_URL": self.url,
            **self.settings,
        }
        with (self.home / "server.log").open("ab") as log:
            command = ("server", "start", "--host", "127.0.0.1", "--port", str(self.port))
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for(self.healthy, timeout=timeout, interval=0.2, what="the Prefect server")

    def healthy(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            log = (self.home / "server.log").read_text(errors="replace")
            raise RuntimeError(f"prefect server exited: {log[-3000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
