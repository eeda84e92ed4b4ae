"""PgQueuer's side: a worker process, as `pgq run bench.peers_pgqueuer:create` starts it.

    python -m bench.peers_pgqueuer SLOTS

It calls `pgqueuer.run(factory, ...)`, the supervisor `pgq run` calls (the 1.6.0 CLI
fails on its own log-level option with typer 0.29). The DSN comes from `BENCH_PEERS_DB`.
The exclusive entrypoint has `concurrency_limit=1`, enforced in SQL across every worker.
A worker's slots are `max_concurrent_tasks`, which must be at least twice the batch
size, so N slots fetch N/2 jobs a batch; one slot cannot be said that way and is the
no-op entrypoint's `concurrency_limit=1` instead. A limited entrypoint frees its seat
only when the finished job's status is flushed, which waits for a full status buffer
(`batch_size` jobs) or 0.1 s, so those workers run with `batch_size=1`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer, run
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from bench.peers_common import DB_ENV, EXCLUSIVE, recorder


@asynccontextmanager
async def create(slots: int = 4) -> AsyncIterator[PgQueuer]:
    conn = await asyncpg.connect(os.environ[DB_ENV])
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop", concurrency_limit=1 if slots == 1 else 0)
    async def noop(job: Job) -> None:
        recorder().run(int(job.payload or b"0"))

    @pgq.entrypoint(EXCLUSIVE, concurrency_limit=1)
    async def exclusive(job: Job) -> None:
        n, seconds = (job.payload or b"0 0").split()
        start = time.time()
        await asyncio.sleep(float(seconds))
        recorder().write(int(n), start, time.time())

    try:
        yield pgq
    finally:
        await conn.close()


def main(slots: int, exclusive: bool) -> None:
    limits = {"batch_size": 1} if slots == 1 or exclusive else {}
    if slots > 1:
        limits = {"batch_size": max(1, slots // 2), "max_concurrent_tasks": slots, **limits}
    asyncio.run(run(functools.partial(create, slots), **limits))  # type: ignore[arg-type]


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] == EXCLUSIVE)
