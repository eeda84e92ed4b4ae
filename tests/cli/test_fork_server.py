"""The fork servers (tests/cli/fork_server.py) that start most commands of these tests:
a command started from one prints and exits exactly as `python -m llmsched` does, and
the servers are in use (else every command silently costs a new interpreter again)."""

from __future__ import annotations

import pytest

from scheduler_core import SchedulerService
from tests.cli.conftest import CLI, ForkedProcess, server_kind


@pytest.mark.sqlite_only  # how a command is started; nothing of the backend
def test_a_forked_command_is_a_real_one(
    cli: CLI, subprocess_cli: CLI, setup_svc: SchedulerService
) -> None:
    job = setup_svc.enqueue_job("story", {"theme": "same"})
    commands = [
        ["jobs", "--json"],  # served by the `core` server
        ["show", str(job.job_id)],
        ["show", "999"],  # refused: exit 2, one error line
        ["submit", "story", "theme=x", "length=abc"],  # the `pipelines` server
    ]
    assert {server_kind(c) for c in commands} == {"core", "pipelines"}
    forked = cli.start(commands)
    assert all(isinstance(p, ForkedProcess) for p in forked.procs), forked.procs
    assert len({p.pid for p in forked.procs}) == len(commands)  # a process each
    real = subprocess_cli.many(commands)
    assert [r.code for r in real] == [0, 0, 2, 2]
    assert forked.results() == real
    assert setup_svc.list_jobs() == [job]  # nothing was queued
