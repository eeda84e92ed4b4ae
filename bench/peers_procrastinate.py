"""procrastinate's side: the app `procrastinate --app bench.peers_procrastinate.app worker` runs.

The connection string comes from `BENCH_PEERS_DB`. The exclusive jobs are deferred with
`lock="exclusive"`, procrastinate's way to keep jobs from running at the same time.
"""

from __future__ import annotations

import os

import procrastinate

from bench.peers_common import DB_ENV, recorder

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get(DB_ENV, ""))
)


@app.task(name="noop", queue="bench")
def noop(n: int) -> None:
    recorder().run(n)


@app.task(name="exclusive", queue="bench")
def exclusive(n: int, seconds: float) -> None:
    recorder().run(n, seconds)
