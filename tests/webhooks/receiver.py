"""A webhook receiver for tests: `python -m tests.webhooks.receiver --port-file F --record F`.

Records every request (headers, body, the answer given) as one JSON line, then answers
200, or misbehaves as told: fail the first N requests or every Kth one with --status
(and an optional Retry-After), or --hang without answering; --max-refusals caps the
failures of one event id, so a flaky receiver stays within the sender's retries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Behaviour:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.count = 0
        self.refused: dict[str, int] = {}  # refusals per X-Webhook-Id
        self.lock = threading.Lock()
        self.released = threading.Event()  # set at shutdown so hanging handlers end

    def next_answer(self, event_id: str) -> tuple[int, str]:
        """(n, answer) where answer is a status code as text or 'hang'."""
        a = self.args
        with self.lock:
            self.count += 1
            n = self.count
            limited = a.fail_first is not None or a.fail_every is not None
            failing = (
                (a.fail_first is not None and n <= a.fail_first)
                or (a.fail_every is not None and n % a.fail_every == 0)
                or (not limited and (a.hang or a.status is not None))
            )
            if a.max_refusals is not None and self.refused.get(event_id, 0) >= a.max_refusals:
                failing = False
            if failing:
                self.refused[event_id] = self.refused.get(event_id, 0) + 1
        if not failing:
            return n, "200"
        return n, "hang" if a.hang else str(a.status or 500)


def make_handler(behaviour: Behaviour, record: Path) -> type[BaseHTTPRequestHandler]:
    write_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body are two writes: with Nagle's algorithm the body waits
        # for the client's delayed ACK of the headers, 40 ms a request on loopback.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if len(body) < length:  # the sender died mid-request: nothing was received
                self.close_connection = True
                return
            n, answer = behaviour.next_answer(self.headers.get("X-Webhook-Id", ""))
            entry = {
                "n": n,
                "t": time.time(),
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": body.decode(),
                "answer": answer,
            }
            with write_lock, record.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            if answer == "hang":
                behaviour.released.wait(120)
                return
            self.send_response(int(answer))
            if answer != "200" and behaviour.args.retry_after is not None:
                self.send_header("Retry-After", behaviour.args.retry_after)
            reply = b"ok" if answer == "200" else b"nope"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--status", type=int, default=None, help="failing answer (500)")
    parser.add_argument("--fail-first", type=int, default=None)
    parser.add_argument("--fail-every", type=int, default=None)
    parser.add_argument(
        "--max-refusals", type=int, default=None, help="then accept the same event id"
    )
    parser.add_argument("--hang", action="store_true", help="failing answers never come")
    parser.add_argument("--retry-after", default=None, help="Retry-After of failing answers")
    args = parser.parse_args()
    behaviour = Behaviour(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(behaviour, args.record))
    server.daemon_threads = True
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    os.replace(tmp, args.port_file)  # readiness: the port file appears whole, once bound
    try:
        server.serve_forever()
    finally:
        behaviour.released.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
