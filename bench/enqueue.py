"""Enqueue rate: `enqueue_job` one by one and `enqueue_jobs` in batches, against raw inserts.

The raw baseline inserts the same rows with the bare driver: one transaction per row
for the single case, one `executemany` transaction per batch for the batch case.
"""

from __future__ import annotations

from bench.config import Context
from bench.measure import Goal, Result, alternate, compare, rate


def run(ctx: Context) -> list[Result]:
    s, name = ctx.sizes, ctx.backend.name
    driver = "sqlite3" if name == "sqlite" else "psycopg"
    batch = [{"job_type": "noop"}] * s.batch
    with ctx.backend.database() as ours_db, ctx.backend.database() as raw_db:
        svc = ours_db.open_service()
        svc.register("noop", lambda params: None)
        raw = raw_db.raw_queue()
        single_raw, single, batch_raw, batched = alternate(
            ctx.rounds,
            [
                lambda: rate(s.enqueue_window, raw.insert_one),
                lambda: rate(s.enqueue_window, lambda: svc.enqueue_job("noop")),
                lambda: rate(s.batches, lambda: raw.insert_many(s.batch)) * s.batch,
                lambda: rate(s.batches, lambda: svc.enqueue_jobs(batch)) * s.batch,
            ],
        )
    return [
        compare(
            "enqueue single (enqueue_job), jobs/s",
            name,
            "jobs/s",
            single,
            single_raw,
            baseline_label=f"raw {driver} insert, one per transaction",
            goal=Goal(">= 5,000 jobs/s", 5000, at_least=True),
        ),
        compare(
            f"enqueue batch (enqueue_jobs of {s.batch}), jobs/s",
            name,
            "jobs/s",
            batched,
            batch_raw,
            baseline_label=f"raw {driver} executemany of {s.batch}",
        ),
    ]
