"""A hostile webhook receiver for tests: `python -m tests.webhooks.hostile --mode M ...`.

It reads each request whole, then answers badly, on a raw socket so that every byte's
timing is its own:

- `drip-head`: the status line and headers, one byte per `--interval` seconds;
- `drip-body`: the status line (`--status`) and headers at once, then the body one
  byte per `--interval`;
- `huge`: `--status` with a body of `--size` bytes (0: endless, ended by closing), as
  fast as the client reads it.

Records one JSON line per request once it is read (`"kind": "request"`: `n`, `t`,
`headers`, `body`) and one when its connection ended (`"kind": "end"`: `n`, `t`, `how`
it ended, bytes of answer `sent`). A client closing the connection is seen at once, also
between two drips.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

CHUNK = (b"spam\x00eggs\xff\n" * 6000)[: 64 * 1024]  # NUL and invalid UTF-8 included


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        with self.lock, self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def read_request(conn: socket.socket) -> tuple[dict[str, str], bytes] | None:
    """Headers and body of one request; None if the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
    length = int(headers.get("Content-Length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return headers, body


def closed_within(conn: socket.socket, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as the client has closed the connection."""
    readable, _, _ = select.select([conn], [], [], seconds)
    if not readable:
        return False
    try:
        return conn.recv(4096) == b""
    except OSError:
        return True


def drip(conn: socket.socket, data: bytes, interval: float) -> tuple[str, int]:
    sent = 0
    for i in range(len(data)):
        if closed_within(conn, interval):
            return "client closed", sent
        try:
            conn.sendall(data[i : i + 1])
        except OSError:
            return "client closed", sent
        sent += 1
    return "complete", sent


def flood(conn: socket.socket, size: int) -> tuple[str, int]:
    sent = 0
    try:
        while size == 0 or sent < size:
            block = CHUNK if size == 0 else CHUNK[: size - sent]
            conn.sendall(block)
            sent += len(block)
    except OSError:
        return "client closed", sent
    return "complete", sent


def answer(conn: socket.socket, args: argparse.Namespace) -> tuple[str, int]:
    reason = f"HTTP/1.1 {args.status} Hostile\r\n".encode()
    if args.mode == "drip-head":
        head = reason + b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
        return drip(conn, head, args.interval)
    if args.mode == "drip-body":
        conn.sendall(reason + b"Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
        return drip(conn, b"slow body " * 10000, args.interval)
    length = b"" if args.size == 0 else f"Content-Length: {args.size}\r\n".encode()
    conn.sendall(reason + b"Content-Type: application/octet-stream\r\n" + length + b"\r\n")
    return flood(conn, args.size)


def serve(conn: socket.socket, n: int, args: argparse.Namespace, recorder: Recorder) -> None:
    with conn:
        request = read_request(conn)
        if request is None:
            return
        headers, body = request
        recorder.write(
            {
                "kind": "request",
                "n": n,
                "t": time.time(),
                "headers": headers,
                "body": body.decode(),
            }
        )
        how, sent = answer(conn, args)
        recorder.write({"kind": "end", "n": n, "t": time.time(), "how": how, "sent": sent})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=["drip-head", "drip-body", "huge"], required=True)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between drips")
    parser.add_argument("--size", type=int, default=0, help="huge body bytes; 0: endless")
    args = parser.parse_args()
    recorder = Recorder(args.record)
    server = socket.create_server(("127.0.0.1", args.port))
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.getsockname()[1]))
    os.replace(tmp, args.port_file)  # readiness: the port file appears whole, once bound
    for n in itertools.count(1):
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn, n, args, recorder), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
