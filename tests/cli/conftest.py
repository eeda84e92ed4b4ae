"""The `llmsched` command line, run as real subprocesses against a real database.

`cli(...)` runs `python -m llmsched ARGS --db <the test's db_url>` with the
test's LLMSCHED_HOME; `cli.many(...)` runs several at once (start-up is most of the cost).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scheduler_core import SchedulerService
from tests.conftest import TEST_SETTINGS
from tests.llm_server.process import LLMServerProcess

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.stdout)

    @property
    def error(self) -> str:
        """The one error line; fails unless stderr is exactly `error: ...` and stdout empty."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), self
        assert "Traceback" not in self.stderr
        return lines[0]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSCHED_DATABASE")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200", **extra)
    return env


class CLI:
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def command(self, args: Sequence[str], db: bool) -> list[str]:
        cmd = [sys.executable, "-m", "llmsched", *args]
        return [*cmd, "--db", self.db_url] if db else cmd

    def __call__(
        self, *args: str, db: bool = True, env: dict[str, str] | None = None, timeout: float = 60
    ) -> Result:
        (result,) = self.many([list(args)], db=db, env=env, timeout=timeout)
        return result

    def many(
        self,
        commands: Sequence[Sequence[str]],
        *,
        db: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> list[Result]:
        """Run commands concurrently; results in the same order."""
        return self.start(commands, db=db, env=env).results(timeout=timeout)

    def start(
        self,
        commands: Sequence[Sequence[str]],
        *,
        db: bool = True,
        env: dict[str, str] | None = None,
    ) -> Pending:
        """Start commands concurrently; collect them later with `.results()`."""
        procs = [
            subprocess.Popen(
                self.command(args, db),
                cwd=ROOT,
                env=cli_env(**(env or {})),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=_default_sigint,
            )
            for args in commands
        ]
        return Pending(commands, procs)


def _default_sigint() -> None:
    """Ctrl-C as a user's terminal delivers it: a test run started in the background
    (where the shell ignores SIGINT, and children inherit that) must not hide it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Pending:
    def __init__(
        self, commands: Sequence[Sequence[str]], procs: list[subprocess.Popen[str]]
    ) -> None:
        self.commands = commands
        self.procs = procs

    def results(self, timeout: float = 60) -> list[Result]:
        results = []
        for args, proc in zip(self.commands, self.procs, strict=True):
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                raise AssertionError(f"llmsched {args} timed out: {out}{err}") from None
            results.append(Result(list(args), proc.returncode, out, err))
        return results


@pytest.fixture
def cli(db_url: str) -> CLI:
    return CLI(db_url)


@pytest.fixture
def setup_svc(db_url: str) -> Iterator[SchedulerService]:
    """An in-process service on the same database, to prepare and check state directly.

    It knows `story` and `research` as plain callables (no Prefect): `fail` in params
    makes a run fail.
    """
    svc = SchedulerService.open(db_url, **TEST_SETTINGS)

    def handler(params: dict[str, Any]) -> list[str]:
        if params.get("fail"):
            raise RuntimeError(f"boom: {params['fail']}")
        return [f"/tmp/{params.get('theme', 'x')}.md"]

    svc.register("story", handler, resource="local")
    svc.register("research", handler, resource="external")
    yield svc
    svc.close()


def drain(svc: SchedulerService) -> int:
    n = 0
    while svc.dispatch_one() is not None:
        n += 1
    return n


WaitFor = Callable[..., Any]


@pytest.fixture
def llm(llm_server: LLMServerProcess, monkeypatch: pytest.MonkeyPatch) -> LLMServerProcess:
    """The fake LLM server, reset, as the OpenAI API of every command this test starts."""
    llm_server.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", f"{llm_server.base_url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    return llm_server
