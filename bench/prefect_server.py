"""A real `prefect server start` process for the Prefect rows, started on first use.

The API URL, a temporary PREFECT_HOME and analytics-off are exported when this object
is made, which must happen before Prefect is imported: Prefect reads its settings
from the environment at import, and threads that run flows (the executor's event
loop) see only those import-time settings, exactly as in a user's worker process.

The server runs as `prefect server start` runs it for a user: its default SQLite
database and every background service on (event persister, task-run recorder), so the
Prefect rows measure what users get.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """Exports the settings now; starts the server on the first `url()`; `close()` stops it."""

    def __init__(self, home: Path) -> None:
        if "prefect" in sys.modules:
            raise RuntimeError("PrefectServer must be set up before Prefect is imported")
        self.home = home
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.startup_seconds: float | None = None
        self._server: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)
        os.environ.update(
            {
                "PREFECT_API_URL": self.api_url,
                "PREFECT_HOME": str(home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false",
            }
        )

    def url(self) -> str:
        if self._server is None:
            self._start()
        return self.api_url

    def _start(self) -> None:
        log_path = self.home / "server.log"
        command = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        started = time.perf_counter()
        with log_path.open("wb") as log:
            self._server = subprocess.Popen(
                [sys.executable, "-m", *command],
                env=dict(os.environ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _healthy(self.api_url):
            if self._server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Prefect server did not start: {log_path.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        self.startup_seconds = time.perf_counter() - started

    def close(self) -> None:
        """Flush what this process still sends to the API (logs, events), then stop."""
        if self._server is None:
            return
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for worker in (APILogWorker, EventsWorker):
            worker.drain_all(timeout=30)
        self._server.terminate()
        try:
            self._server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._server.kill()
            self._server.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
