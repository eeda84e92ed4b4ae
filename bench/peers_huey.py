"""huey's side: a SqliteHuey and its two tasks, as `huey_consumer bench.peers_huey.huey` loads them.

The file comes from `BENCH_PEERS_DB` and the journal mode from `BENCH_PEERS_JOURNAL`
(`wal`, huey 3.5's default, or `delete`, SQLite's default). huey has no limit on a
resource; its documented tool is `lock_task`, which fails a task that finds the lock
held, so the exclusive task retries (without delay) until it gets the lock.
"""

from __future__ import annotations

import os
from typing import Any

from huey import SqliteHuey

from bench.peers_common import DB_ENV, EXCLUSIVE, recorder

JOURNAL_ENV = "BENCH_PEERS_JOURNAL"


def make(filename: str, journal: str) -> tuple[SqliteHuey, Any, Any]:
    """A huey and its tasks; the parent makes one per database to enqueue, with the
    same task names the consumer's module-level one registers."""
    huey = SqliteHuey("bench", filename=filename, journal_mode=journal, results=False)

    def noop(n: int) -> None:
        recorder().run(n)

    def exclusive(n: int, seconds: float) -> None:
        with huey.lock_task(EXCLUSIVE):
            recorder().run(n, seconds)

    return (
        huey,
        huey.task(name="noop")(noop),
        huey.task(name=EXCLUSIVE, retries=1_000_000, retry_delay=0)(exclusive),
    )


# The consumer's instance; imported without `BENCH_PEERS_DB` (by the parent) it is unused
# and writes no file.
huey, noop, exclusive = make(os.environ.get(DB_ENV, ":memory:"), os.environ.get(JOURNAL_ENV, "wal"))
