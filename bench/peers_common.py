"""What every system's worker shares: one line per executed job in an append-only file.

Each handler writes `n start end pid` with one `os.write` on an O_APPEND descriptor, so
lines from threads and processes never interleave; the parent reads the file to time the
drain (first start to last end) and to check exactly-once, order and overlap.
"""

from __future__ import annotations

import os
import time

OUT_ENV = "BENCH_PEERS_OUT"  # the record file of the worker started with it
DB_ENV = "BENCH_PEERS_DB"  # the system's database (a URL or a file path)
EXCLUSIVE = "exclusive"  # the resource (lock, queue, entrypoint) limited to one job
ALTERNATING = ("exclusive_a", "exclusive_b")  # two job types on EXCLUSIVE (ours only)


class Recorder:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.pid = os.getpid()

    def write(self, n: int, start: float, end: float) -> None:
        os.write(self.fd, f"{n} {start:.6f} {end:.6f} {self.pid}\n".encode())

    def run(self, n: int, seconds: float = 0.0) -> None:
        """The job itself: sleep `seconds` (a no-op at 0) and record the span."""
        start = time.time()
        if seconds:
            time.sleep(seconds)
        self.write(n, start, time.time())


_recorder: Recorder | None = None


def recorder() -> Recorder:
    """This process's recorder, opened on first use from `BENCH_PEERS_OUT`."""
    global _recorder
    if _recorder is None:
        _recorder = Recorder(os.environ[OUT_ENV])
    return _recorder
