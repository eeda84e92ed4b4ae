"""The test session's Prefect address, fixed on import, before anything imports Prefect."""

from __future__ import annotations

import os
import socket
import tempfile


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Prefect reads its settings when it is imported, and threads other than the main one
# (the executor's event loop) only ever see those: so the test API's address is fixed
# here, before anything imports Prefect. The `prefect_api` fixture starts the server on it.
PREFECT_PORT = free_port()
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{PREFECT_PORT}/api"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="llmsched-test-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
