"""No-op jobs per second through `dispatch_one()` against a raw sqlite3 claim+finish loop.

python -m bench.throughput [--queued 1000 100000] [--measure 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from scheduler_core import SchedulerService

BATCH = 5000


def raw_sqlite_pairs_per_second(path: Path, *, queued: int, measure: int) -> float:
    """The floor of what any SQLite-backed queue can do: claim + finish, two commits."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE job (id INTEGER PRIMARY KEY, status TEXT, priority INT, position INT)")
    db.execute("CREATE INDEX ix ON job (status, priority DESC, position, id)")
    db.executemany(
        "INSERT INTO job (status, priority, position) VALUES ('QUEUED', 0, ?)",
        ((i,) for i in range(queued + measure)),
    )
    start = time.perf_counter()
    for _ in range(measure):
        db.execute("BEGIN IMMEDIATE")
        (job_id,) = db.execute(
            "SELECT id FROM job WHERE status='QUEUED' ORDER BY priority DESC, position, id LIMIT 1"
        ).fetchone()
        db.execute("UPDATE job SET status='RUNNING' WHERE id=? AND status='QUEUED'", (job_id,))
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE job SET status='DONE' WHERE id=? AND status='RUNNING'", (job_id,))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return measure / elapsed


def dispatch_one_per_second(path: Path, *, queued: int, measure: int) -> float:
    svc = SchedulerService.open(f"sqlite:///{path}", retry_backoff_seconds=0, home=path.parent)
    svc.register("noop", lambda params: None)
    total = queued + measure  # the queue never drops below `queued` while measuring
    for first in range(0, total, BATCH):
        n = min(BATCH, total - first)
        svc.enqueue_jobs([{"job_type": "noop", "params": {}}] * n)
    start = time.perf_counter()
    for _ in range(measure):
        assert svc.dispatch_one() is not None
    elapsed = time.perf_counter() - start
    svc.close()
    return measure / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queued", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--measure", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    header = f"{'queued':>8} {'raw sqlite3/s':>14} {'dispatch_one/s':>15} {'ratio':>6}"
    print(f"{header}  (median of {args.repeat}, min-max)")
    for queued in args.queued:
        raw, ours = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                raw.append(
                    raw_sqlite_pairs_per_second(
                        Path(tmp) / "raw.db", queued=queued, measure=args.measure
                    )
                )
                ours.append(
                    dispatch_one_per_second(
                        Path(tmp) / "jobs.db", queued=queued, measure=args.measure
                    )
                )
        r, o = statistics.median(raw), statistics.median(ours)
        print(
            f"{queued:>8} {r:>14,.0f} {o:>15,.0f} {o / r:>6.3f}"
            f"  raw {min(raw):,.0f}-{max(raw):,.0f}, ours {min(ours):,.0f}-{max(ours):,.0f}"
        )


if __name__ == "__main__":
    main()
