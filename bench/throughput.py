"""No-op jobs/s, enqueue + dispatch + finish, with the queue held at a constant length.

Each iteration enqueues one job (`enqueue_job`) and runs one (`dispatch_one`), so the
queue stays at its pre-filled length while measuring. The raw baseline does the same
three transactions (insert, claim, finish) with the bare driver.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from bench.backends import Db, fill
from bench.config import Context
from bench.measure import Goal, Result, alternate, compare, rate

WARMUP = 50


def product_side(db: Db, *, queued: int, window: int) -> Callable[[], float]:
    svc = db.open_service()
    svc.register("noop", lambda params: None)
    fill(svc, queued)

    def step() -> None:
        svc.enqueue_job("noop")
        if svc.dispatch_one() is None:
            raise AssertionError("dispatch_one found no job in a non-empty queue")

    rate(WARMUP, step)
    return lambda: rate(window, step)


def raw_side(db: Db, *, queued: int, window: int) -> Callable[[], float]:
    raw = db.raw_queue()
    raw.insert_many(queued)

    def step() -> None:
        raw.insert_one()
        raw.claim_and_finish()

    rate(WARMUP, step)
    return lambda: rate(window, step)


def run(ctx: Context) -> list[Result]:
    s, name = ctx.sizes, ctx.backend.name
    raw_label = "raw sqlite3" if name == "sqlite" else "raw psycopg SKIP LOCKED"
    with ExitStack() as stack:
        dbs = [stack.enter_context(ctx.backend.database()) for _ in range(3)]
        ctx.say(f"filling {s.big_queue:,} queued jobs")
        sides = [
            raw_side(dbs[0], queued=s.small_queue, window=s.window),
            product_side(dbs[1], queued=s.small_queue, window=s.window),
            product_side(dbs[2], queued=s.big_queue, window=s.window),
        ]
        raw, small, big = alternate(ctx.rounds, sides)
    return [
        compare(
            f"no-op jobs/s, {s.small_queue:,} queued",
            name,
            "jobs/s",
            small,
            raw,
            baseline_label=f"{raw_label} insert+claim+finish",
            goal=Goal(">= 3,000 jobs/s", 3000, at_least=True),
        ),
        compare(
            f"no-op jobs/s, {s.big_queue:,} queued",
            name,
            "jobs/s",
            big,
            small,
            baseline_label=f"ours, {s.small_queue:,} queued",
            goal=Goal(">= 0.9x", 0.9, at_least=True, on_ratio=True),
        ),
    ]
