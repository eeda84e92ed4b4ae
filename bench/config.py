"""Sizes per mode and the context every row family receives.

The default sizes are the issue's (1,000 and 100,000 queued, 10,000 + 100 orphans,
10,000 jobs for memory); `--quick` shrinks windows and rounds but keeps the shapes;
`--smoke` runs every code path on tiny sizes in a few seconds per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.backends import Backend
from bench.prefect_server import PrefectServer


@dataclass(frozen=True, slots=True)
class Sizes:
    rounds: int
    window: int  # enqueue+dispatch iterations per throughput round
    small_queue: int
    big_queue: int
    enqueue_window: int  # single enqueues per round
    batch: int  # enqueue_jobs batch size measured
    batches: int  # batches per round
    dispatch_jobs: int  # jobs drained per multi-process round
    processes: tuple[int, ...]
    prefect_jobs: int
    pipeline_jobs: int  # story pipeline jobs per group
    handoff_jobs: int  # Ollama jobs per round
    handoff_hold: float  # seconds each Ollama job holds the slot
    direct_samples: int
    direct_hold: float  # seconds the running job takes before the direct one
    recovery_queued: int
    orphans: int
    memory_small: int
    memory_big: int


DEFAULT = Sizes(
    rounds=3,
    window=2000,
    small_queue=1000,
    big_queue=100_000,
    enqueue_window=2000,
    batch=500,
    batches=20,
    dispatch_jobs=3000,
    processes=(2, 4),
    prefect_jobs=30,
    pipeline_jobs=10,
    handoff_jobs=6,
    handoff_hold=0.05,
    direct_samples=5,
    direct_hold=0.2,
    recovery_queued=10_000,
    orphans=100,
    memory_small=100,
    memory_big=10_000,
)

QUICK = Sizes(
    rounds=3,
    window=500,
    small_queue=1000,
    big_queue=20_000,
    enqueue_window=500,
    batch=500,
    batches=4,
    dispatch_jobs=800,
    processes=(2, 4),
    prefect_jobs=10,
    pipeline_jobs=5,
    handoff_jobs=4,
    handoff_hold=0.05,
    direct_samples=3,
    direct_hold=0.1,
    recovery_queued=10_000,
    orphans=100,
    memory_small=100,
    memory_big=2000,
)

SMOKE = Sizes(
    rounds=2,
    window=20,
    small_queue=50,
    big_queue=500,
    enqueue_window=20,
    batch=50,
    batches=2,
    dispatch_jobs=40,
    processes=(2,),
    prefect_jobs=2,
    pipeline_jobs=2,
    handoff_jobs=3,
    handoff_hold=0.02,
    direct_samples=1,
    direct_hold=0.05,
    recovery_queued=200,
    orphans=5,
    memory_small=10,
    memory_big=60,
)

MODES = {"default": DEFAULT, "quick": QUICK, "smoke": SMOKE}

# Row families, each a module `bench.<name>` with `run(ctx) -> list[Result]`. They are
# imported only when run, after the Prefect settings are exported; the Prefect ones come
# last so that a run without them never starts the server.
FAMILIES = (
    "throughput",
    "enqueue",
    "dispatchers",
    "direct",
    "recovery",
    "memory",
    "prefect_overhead",
    "pipeline_overhead",
    "handoff",
)

# Not in the default run: `--peers` adds it (bench/peers.py), as it needs the `bench` extra.
PEERS = "peers"


@dataclass(slots=True)
class Context:
    """What a row family needs: where to put databases, how big, how often, and Prefect."""

    backend: Backend
    sizes: Sizes
    rounds: int
    prefect: PrefectServer
    say: Callable[[str], None]
