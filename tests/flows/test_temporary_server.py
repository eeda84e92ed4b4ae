"""`llmsched demo` without a configured Prefect server: Prefect starts a temporary one
for the process and stops it at exit. The executor lets it record the task runs first
(flows/temporary_server.py): no recording cut off with a traceback on the terminal,
and every task run final in Prefect's database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


@pytest.mark.slow
@pytest.mark.sqlite_only  # the demo's own database: the default SQLite file
def test_the_demo_leaves_every_task_run_recorded_on_the_temporary_server(
    tmp_path: Path,
) -> None:
    prefect_home = tmp_path / "prefect-home"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LLMSCHED_DATABASE"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        PREFECT_HOME=str(prefect_home),
        LLMSCHED_HOME=str(tmp_path / "home"),
        COLUMNS="200",
    )
    done = subprocess.run(
        [sys.executable, "-m", "llmsched", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Stopping temporary server" in output  # the case under test: no server was set
    assert "Traceback" not in output and "Error flushing" not in output, output[-3000:]
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        states = [s for (s,) in db.execute("SELECT state_type FROM task_run")]
    assert len(states) >= 10  # the research flow's tasks and both stories'
    assert all(s in FINAL for s in states), states
