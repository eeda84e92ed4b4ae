"""The `llmsched` command line, run as processes of their own against a real database.

`cli(...)` runs `python -m llmsched ARGS --db <the test's db_url>` with the
test's LLMSCHED_HOME; `cli.many(...)` runs several at once.

Each command is a process of its own, but the `cli` fixture starts it from a fork server
(tests/cli/fork_server.py) that already holds the imports, most of a command's cost
(about 3 s of a 3.3 s command): the child runs `python -m llmsched` as a new process
would, with its own exit code, output and pid. A command whose environment differs from
the server's where imports read it goes to a real `python -m llmsched` process instead
(ForkServers.start). `subprocess_cli` starts every command as a real process, for the
tests of the entry point itself (signals, the bare command's exit code).

Tests that use no Prefect server (no `prefect_api` fixture) run their commands with
PREFECT_API_URL empty, the offline set-up of a user without a server: otherwise each
`submit` tries to create its flow run on the session's test server, which is not
running then (about 1.6 s of connection retries per command) or, when another test
started it, gets flow runs it never looks at.
"""

from __future__ import annotations

import json
import locale
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

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


OFFLINE = {"PREFECT_API_URL": ""}
"""The environment of a test without a Prefect server (see above)."""


class CLI:
    """`servers`: start commands from these fork servers where they can; None: every
    command is a real `python -m llmsched` process. `env`: variables every command gets
    (a command's own `env` overrides them)."""

    def __init__(
        self,
        db_url: str,
        *,
        servers: ForkServers | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.db_url = db_url
        self.servers = servers
        self.env = env or {}

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
        full_env = cli_env(**{**self.env, **(env or {})})
        procs: list[Process] = []
        for args in commands:
            command = self.command(args, db)
            forked = None
            if self.servers is not None:
                forked = self.servers.start(command[3:], full_env)
            procs.append(
                forked
                or subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    preexec_fn=_default_sigint,
                )
            )
        return Pending(commands, procs)


def _default_sigint() -> None:
    """Ctrl-C as a user's terminal delivers it: a test run started in the background
    (where the shell ignores SIGINT, and children inherit that) must not hide it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Process(Protocol):
    """What a test uses of a started command: subprocess.Popen or ForkedProcess."""

    pid: int
    returncode: Any  # int once it has ended

    def communicate(self, timeout: float | None = None) -> tuple[str, str]: ...

    def kill(self) -> None: ...

    def send_signal(self, sig: int) -> None: ...

    def poll(self) -> int | None: ...


class Pending:
    def __init__(self, commands: Sequence[Sequence[str]], procs: Sequence[Process]) -> None:
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


# ---------------------------------------------------------------------- fork servers

PIPELINE_COMMANDS = (["submit"], ["group", "submit"])
"""The commands that import the pipelines (and so Prefect) as they open the scheduler,
before they print anything but a refusal of their own arguments: served by a `pipelines`
server. Every other command imports what it needs beyond `core` in its own process."""
VARYING = ("LLMSCHED_", "OPENAI_", "ANTHROPIC_", "OLLAMA_", "PYTEST_")
"""Variables that may differ between a command and its server: read when a command runs,
never while importing (the tests set them per test). So may names of credentials
(`*_SECRET`, `*_KEY`, `*_TOKEN`), and, for a `core` server (no Prefect imported),
PREFECT_*. Any other difference and the command runs as a real process."""
MAX_SERVERS = 4


def server_kind(args: Sequence[str]) -> str:
    if "--help" in args or "-h" in args:
        return "core"
    for prefix in PIPELINE_COMMANDS:
        if list(args[: len(prefix)]) == prefix:
            return "pipelines"
    return "core"


def import_environment(kind: str, env: dict[str, str]) -> frozenset[tuple[str, str]]:
    """The part of `env` a server of `kind` must share with its commands."""

    def varies(name: str) -> bool:
        return (
            name.startswith(VARYING)
            or name.endswith(("_SECRET", "_KEY", "_TOKEN"))
            or (kind == "core" and name.startswith("PREFECT_"))
        )

    return frozenset((k, v) for k, v in env.items() if not varies(k))


class ForkServers:
    """This test process's fork servers, one per kind and import environment, started
    on first use and stopped at the end of the session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.servers: dict[tuple[str, frozenset[tuple[str, str]]], ForkServer] = {}

    def prepare(self, env: dict[str, str]) -> None:
        """Start the servers these commands will likely want (they import meanwhile)."""
        for kind in ("core", "pipelines"):
            self._server(kind, env, wait=False)

    def start(self, args: Sequence[str], env: dict[str, str]) -> ForkedProcess | None:
        """`python -m llmsched ARGS` from a fork server; None when none can run it."""
        server = self._server(server_kind(args), env)
        if server is None:
            return None
        try:
            return server.start(args, env)
        except (ConnectionError, FileNotFoundError):  # the server has gone
            server.ready = {"ready": False, "error": "gone"}
            return None

    def _server(self, kind: str, env: dict[str, str], wait: bool = True) -> ForkServer | None:
        key = (kind, import_environment(kind, env))
        server = self.servers.get(key)
        if server is None:
            if len(self.servers) >= MAX_SERVERS:
                return None
            path = self.directory / f"{kind}-{len(self.servers)}.sock"
            server = self.servers[key] = ForkServer(kind, path, env)
        return server if not wait or server.usable() else None

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


class ForkServer:
    """One `python -m tests.cli.fork_server KIND SOCKET` process."""

    def __init__(self, kind: str, path: Path, env: dict[str, str]) -> None:
        self.kind, self.path = kind, path
        self.log = path.with_suffix(".log")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.cli.fork_server", kind, str(path)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=_default_sigint,
            )
        self.ready: dict[str, Any] | None = None

    def usable(self) -> bool:
        """Ready, and its imports printed nothing (a real process would print it to
        the command's stderr)."""
        if self.ready is None:
            self.ready = self._wait_ready(timeout=120)
        ready = self.ready
        return bool(ready.get("ready") and not ready.get("output") and not ready.get("problem"))

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return {"ready": False, "error": f"not ready after {timeout} s"}
        line = self.proc.stdout.readline()
        if not line:
            return {"ready": False, "error": self.log.read_text(errors="replace")}
        ready: dict[str, Any] = json.loads(line)
        return ready

    def start(self, args: Sequence[str], env: dict[str, str]) -> ForkedProcess:
        return ForkedProcess(self.path, list(args), env)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the server kills what still runs, and exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class ForkedProcess:
    """A command a fork server started: what the tests use of a text-mode Popen, its
    stdin /dev/null, its stdout and stderr in files (read once it has ended)."""

    def __init__(self, path: Path, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.returncode: int | None = None
        self._buffer = b""
        self._output: tuple[str, str] | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(str(path))
        except OSError:
            self._sock.close()
            raise
        self._out = tempfile.TemporaryFile()  # noqa: SIM115  (closed once read)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        request = json.dumps({"args": args, "env": env, "cwd": str(ROOT)}).encode()
        stdin = os.open(os.devnull, os.O_RDONLY)
        try:
            sent = socket.send_fds(
                self._sock, [request[:4096]], [stdin, self._out.fileno(), self._err.fileno()]
            )
        finally:
            os.close(stdin)
        self._sock.sendall(request[sent:])
        self._sock.shutdown(socket.SHUT_WR)
        reply = self._message(timeout=60)
        if "pid" not in reply:
            raise AssertionError(f"the fork server refused llmsched {args}: {reply}")
        self.pid: int = reply["pid"]

    def _message(self, timeout: float | None) -> dict[str, Any]:
        """The server's next line; socket.timeout (TimeoutError) after `timeout`."""
        self._sock.settimeout(timeout)
        while b"\n" not in self._buffer:
            data = self._sock.recv(4096)
            if not data:
                raise AssertionError(f"the fork server left llmsched {self.args}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self.returncode = int(self._message(timeout)["exit"])
            except (TimeoutError, BlockingIOError):  # BlockingIOError: timeout 0
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            self._sock.close()
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        if self._output is None:
            self._output = _text(self._out), _text(self._err)
            self._out.close()
            self._err.close()
        return self._output


def _text(file: IO[bytes]) -> str:
    """As a text-mode Popen reads it: decoded, universal newlines."""
    file.seek(0)
    data = file.read().decode(locale.getpreferredencoding(False))
    return data.replace("\r\n", "\n").replace("\r", "\n")


@pytest.fixture(scope="session")
def fork_servers() -> Iterator[ForkServers]:
    # A short directory of its own: a Unix socket's path is limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="llmsched-fork-"))
    servers = ForkServers(directory)
    servers.prepare(cli_env(**OFFLINE))
    yield servers
    servers.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def cli(db_url: str, fork_servers: ForkServers, request: pytest.FixtureRequest) -> CLI:
    offline = "prefect_api" not in request.fixturenames
    return CLI(db_url, servers=fork_servers, env=OFFLINE if offline else None)


@pytest.fixture
def subprocess_cli(db_url: str, request: pytest.FixtureRequest) -> CLI:
    """Every command a real `python -m llmsched` process: for the entry point itself."""
    offline = "prefect_api" not in request.fixturenames
    return CLI(db_url, env=OFFLINE if offline else None)


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
