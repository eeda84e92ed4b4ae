"""A fork server for `llmsched` commands: `python -m llmsched ARGS`, without paying for
the imports each time.

    python -m tests.cli.fork_server KIND SOCKET_PATH

It imports what the commands import (KIND `core`: the command line, the scheduler,
SQLAlchemy; KIND `pipelines`: also the pipelines, hence Prefect), prints one line of JSON
(`{"ready": true, ...}`) on stdout, then serves connections on the Unix socket
SOCKET_PATH until its stdin closes. Each connection asks for one command: a JSON request
(`args`, `env`, `cwd`) with three file descriptors (stdin, stdout, stderr). The server
forks; the child takes the request's environment, directory and descriptors and runs
`llmsched` as `python -m llmsched` does (runpy, `__main__`), then exits through the
interpreter's normal exit (atexit, thread joins, flushes). The server answers the child's
pid at once and its exit status (os.waitstatus_to_exitcode) when it ends.

So each command is still a process of its own (its exit code, its output, its pid), only
started from a process that already holds the imports. What a process inherits at import
is why the caller (tests/cli/conftest.py) sends a command here only when it would not
notice: the variables read while importing (PYTHON*, LC_*, LANG, and PREFECT_* for
`pipelines`: Prefect reads its settings when imported) must be the server's; and the
imports must print nothing (`"output"` in the ready line, else the caller runs real
processes). `core` must not import Prefect (Prefect configures logging as it is
imported): a command that needs it imports it in its own process, as it would anyway.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import tempfile
import traceback
from typing import Any

PRELOAD = {
    "core": [
        "llmsched.cli",
        "scheduler_core",
        "scheduler_core.service",
        "scheduler_core.representation",
        "scheduler_core.webhooks",
        "scheduler_core.webhooks.api",
        "scheduler_core.webhooks.targets",
        "flows.resources",
        "sqlalchemy.dialects.sqlite",
        "sqlalchemy.dialects.postgresql.psycopg",
        "yaml",
        "rich.console",
        "rich.table",
        "rich.text",
    ],
}
PRELOAD["pipelines"] = [*PRELOAD["core"], "flows.pipelines"]

MAX_REQUEST = 16 * 1024 * 1024


def preload(kind: str) -> str:
    """Import KIND's modules; return what they printed (on fds 1 and 2)."""
    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            for name in PRELOAD[kind]:
                importlib.import_module(name)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        capture.seek(0)
        return capture.read().decode("utf-8", "replace")


def read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: JSON (up to EOF, the client shuts its side) and its 3 descriptors."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    try:
        chunks = [data]
        size = len(data)
        while data:
            data = conn.recv(65536)
            chunks.append(data)
            size += len(data)
            if size > MAX_REQUEST:
                raise ValueError("request too large")
        if len(fds) != 3:
            raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
        return json.loads(b"".join(chunks)), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def serve(listener: socket.socket) -> dict[str, Any] | None:
    """Fork a child per request until stdin closes. Returns in a child only: its request,
    with descriptors 0, 1 and 2 already in place."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin, selectors.EVENT_READ, "stop")
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd: (pid, its connection)
    while True:
        for key, _ in selector.select():
            if key.data == "stop":
                for pidfd, (pid, conn) in children.items():
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    os.close(pidfd)
                    conn.close()
                return None
            if key.data == "accept":
                conn, _ = listener.accept()
                try:
                    request, fds = read_request(conn)
                except (OSError, ValueError) as exc:
                    conn.sendall(json.dumps({"error": repr(exc)}).encode() + b"\n")
                    conn.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:  # the child: nothing of the server's stays open
                    selector.close()
                    listener.close()
                    conn.close()
                    for pidfd, (_, other) in children.items():
                        os.close(pidfd)
                        other.close()
                    for target, fd in enumerate(fds):
                        os.dup2(fd, target)
                        os.close(fd)
                    return request
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, conn)
                selector.register(pidfd, selectors.EVENT_READ, "child")
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            else:  # a child ended
                pidfd = key.fd
                pid, conn = children.pop(pidfd)
                selector.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):  # the client may have left
                    conn.sendall(
                        json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n"
                    )
                conn.close()


def run_command(request: dict[str, Any]) -> None:
    """In the child: become `python -m llmsched ARGS` in the request's environment."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.argv = ["llmsched", *request["args"]]  # runpy sets argv[0] to the module's file
    runpy.run_module("llmsched", run_name="__main__", alter_sys=True)
    sys.exit(0)


def main() -> None:
    kind, path = sys.argv[1], sys.argv[2]
    control = os.fdopen(os.dup(1), "w")
    try:
        output = preload(kind)
    except BaseException:
        control.write(json.dumps({"ready": False, "error": traceback.format_exc()}) + "\n")
        control.close()
        raise SystemExit(1) from None
    problem = None
    if kind == "core" and "prefect" in sys.modules:
        problem = "the core modules import Prefect"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    control.write(json.dumps({"ready": True, "output": output, "problem": problem}) + "\n")
    control.close()
    # The server's own stray output goes nowhere; a child gets its own descriptors.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.close(devnull)
    gc.freeze()  # the imported objects stay shared with the children (copy-on-write)
    request = serve(listener)
    if request is None:
        listener.close()
        return
    run_command(request)


if __name__ == "__main__":
    main()
