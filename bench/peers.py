"""Ours beside huey, DBOS, procrastinate and PgQueuer on one workload, checked as it runs.

Per system and round, on a fresh database (a SQLite directory or a PostgreSQL database):

(a) `jobs` no-op jobs with random priorities 0-9 enqueued one by one (enqueue/s), then
    drained by one worker process with 1 slot and again (a second batch) with 4 slots,
    4 slots first in every other round (jobs/s, from the first job's start to the last
    one's end: worker start-up is not counted);
(b) `exclusive_jobs` jobs of `hold` seconds on a resource limited to one job, drained
    by two worker processes of 2 slots: the median gap from one job's end to the next
    one's start;
(c) ours only: a group of `exclusive_jobs` members alternating between two job types on
    that resource, each type run by one of two worker processes, so that every member
    starts in the other process: the cross-process hand-off.

Two baselines run too: the raw loop (bench/peers_ours.py, the least any queue does) and,
for (a) only, ours' own statements alone on the raw driver (ours' SQL: our database
work without the product's Python). Every worker is started the way its system documents (a
consumer, a worker command, a launched app) and every handler records its job's number
and span (bench/peers_common.py), from which each drain is checked: every job exactly
once, the 1-slot drain in priority order (desc, then FIFO), no two exclusive jobs
overlapping. Rounds alternate the systems, each round with the same priorities for all.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.config import MODES, Context
from bench.measure import ROOT, Goal, Result, Series, gaps_ms
from bench.peers_common import ALTERNATING, DB_ENV, EXCLUSIVE, OUT_ENV

INSTALL = "install the peers with: .venv/bin/pip install -e '.[bench]'"
GRACE = 0.2  # seconds a drain waits after the last expected job, for a late duplicate


@dataclass(frozen=True, slots=True)
class PeerSizes:
    jobs: int
    exclusive_jobs: int
    hold: float  # seconds each exclusive job takes
    timeout: float  # seconds a drain may take before it is reported unfinished


SIZES = {
    "default": PeerSizes(jobs=5000, exclusive_jobs=200, hold=0.005, timeout=600),
    "quick": PeerSizes(jobs=1000, exclusive_jobs=50, hold=0.005, timeout=300),
    "smoke": PeerSizes(jobs=60, exclusive_jobs=10, hold=0.005, timeout=120),
}


@dataclass(slots=True)
class Store:
    """One system's fresh database: a directory (its files, logs) and, on PostgreSQL, a URL."""

    dir: Path
    url: str | None


@contextmanager
def fresh_store(root: Path, postgres: str | None) -> Iterator[Store]:
    home = Path(tempfile.mkdtemp(prefix="peer-", dir=root))
    try:
        if postgres is None:
            yield Store(home, None)
            return
        import psycopg

        name = f"bench_peer_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        try:
            parts = urlsplit(postgres)
            yield Store(home, urlunsplit(parts._replace(path=f"/{name}")))
        finally:
            with psycopg.connect(postgres, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


class System:
    """One queue as its docs have it used: enqueue in this process, workers as processes."""

    name = ""
    package: str | None = None  # the distribution that must be installed
    backends: tuple[str, ...] = ("sqlite", "postgres")
    how = ""  # configuration, as the docs and the table say it
    priority_note = "priority desc, then FIFO"
    figures: tuple[str, ...] = ("enqueue", "slot1", "slot4", "handoff")  # what it is run for

    def __init__(self, store: Store) -> None:
        self.store = store

    def enqueue(self, n: int, priority: int) -> None:
        raise NotImplementedError

    def enqueue_exclusive(self, n: int, seconds: float) -> None:
        raise NotImplementedError

    def worker(self, slots: int, out: Path, exclusive: bool) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the parent's connections (before the database is dropped)."""

    def spawn(self, out: Path, *args: object, env: dict[str, str] | None = None) -> Any:
        """`python ARGS`, its output in a log beside the record file (kept until cleanup)."""
        with (out.parent / f"{out.stem}-{uuid.uuid4().hex[:6]}.log").open("wb") as log:
            return subprocess.Popen(
                [sys.executable, *map(str, args)],
                cwd=ROOT,
                env={**os.environ, OUT_ENV: str(out), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @classmethod
    def label(cls) -> str:
        return f"{cls.name} {version(cls.package)}" if cls.package else cls.name


class Ours(System):
    name = "ours"
    how = "SchedulerService.open(url); worker: start(concurrency=N) until SIGTERM, stop()"
    figures: tuple[str, ...] = ("enqueue", "slot1", "slot4", "handoff", "cross")

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        from bench.peers_ours import register
        from scheduler_core import SchedulerService

        self.url = store.url or f"sqlite:///{store.dir / 'jobs.db'}"
        self.svc = SchedulerService.open(self.url, home=store.dir, retry_backoff_seconds=0)
        register(self.svc, None)
        self.svc.set_resource_limit(EXCLUSIVE, 1)

    def enqueue(self, n: int, priority: int) -> None:
        self.svc.enqueue_job("noop", {"n": n}, priority=priority)

    def enqueue_exclusive(self, n: int, seconds: float) -> None:
        self.svc.enqueue_job(EXCLUSIVE, {"n": n, "seconds": seconds})

    def worker(self, slots: int, out: Path, exclusive: bool) -> Any:
        home = self.store.dir
        return self.spawn(out, "-m", "bench.peers_ours", "ours", self.url, home, slots, out)

    def enqueue_alternating(self, numbers: list[int], seconds: float) -> None:
        """One group whose members alternate between the two types: each member may
        start only once the one before it ended, in the other worker's process."""
        self.svc.create_job_group(
            [
                {"job_type": ALTERNATING[i % 2], "params": {"n": n, "seconds": seconds}}
                for i, n in enumerate(numbers)
            ]
        )

    def alternating_worker(self, index: int, out: Path) -> Any:
        """A worker that runs only the `index`-th alternating type."""
        home, only = self.store.dir, ALTERNATING[index]
        return self.spawn(out, "-m", "bench.peers_ours", "ours", self.url, home, 1, out, only)

    def close(self) -> None:
        self.svc.close()


class OursSql(Ours):
    """Ours' database work alone: what the no-op drains would be with no product around
    the statements (bench/peers_ours.py `ours_sql`)."""

    name = "ours_sql"
    how = (
        "bench/peers_ours.py ours_sql: ours' own statements for a no-op job (the last run's "
        "end, the head, the start and the run) in one transaction per job, as ours writes "
        "them, on the raw driver's connections, a thread per slot"
    )
    figures = ("enqueue", "slot1", "slot4")

    def worker(self, slots: int, out: Path, exclusive: bool) -> Any:
        home = self.store.dir
        return self.spawn(out, "-m", "bench.peers_ours", "ours_sql", self.url, home, slots, out)


class Raw(System):
    name = "raw"
    how = "bench/peers_ours.py: claim+finish transactions, a thread per slot, 1 ms idle poll"

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        from bench import peers_ours

        self.insert = peers_ours.RAW_INSERT.format(p="?" if store.url is None else "%s")
        if store.url is None:
            self.target = str(store.dir / "raw.db")
            self.conn: Any = peers_ours.raw_sqlite(self.target)
            pk = "INTEGER PRIMARY KEY"
        else:
            import psycopg

            self.target = store.url
            self.conn = psycopg.connect(store.url, autocommit=True)
            pk = "BIGSERIAL PRIMARY KEY"
        self.conn.execute(peers_ours.RAW_TABLE.format(pk=pk))
        self.conn.execute(peers_ours.RAW_INDEX)

    def enqueue(self, n: int, priority: int) -> None:
        self.conn.execute(self.insert, (n, priority, 0.0, 0))

    def enqueue_exclusive(self, n: int, seconds: float) -> None:
        self.conn.execute(self.insert, (n, 0, seconds, 1))

    def worker(self, slots: int, out: Path, exclusive: bool) -> Any:
        kind = EXCLUSIVE if exclusive else "noop"
        return self.spawn(out, "-m", "bench.peers_ours", "raw", self.target, kind, slots, out)

    def close(self) -> None:
        self.conn.close()


class Huey(System):
    name = "huey (WAL)"
    package = "huey"
    backends = ("sqlite",)
    journal = "wal"
    how = (
        "SqliteHuey(journal_mode='wal', results=False); `huey_consumer -k thread -w N`; "
        "exclusive: lock_task + retries, retry_delay=0"
    )

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        from bench.peers_huey import make

        self.file = str(store.dir / "huey.db")
        self.huey, self.noop, self.exclusive = make(self.file, self.journal)

    def enqueue(self, n: int, priority: int) -> None:
        self.huey.enqueue(self.noop.s(n, priority=priority))

    def enqueue_exclusive(self, n: int, seconds: float) -> None:
        self.huey.enqueue(self.exclusive.s(n, seconds))

    def worker(self, slots: int, out: Path, exclusive: bool) -> Any:
        from bench.peers_huey import JOURNAL_ENV

        args = ("-m", "huey.bin.huey_consumer", "bench.peers_huey.huey", "-k", "thread")
        env = {DB_ENV: self.file, JOURNAL_ENV: self.journal}
        return self.spawn(out, *args, "-w", slots, "-n", env=env)

    def close(self) -> None:
        self.huey.storage.close()


class HueyDelete(Huey):
    name = "huey (rollback journal)"
    journal = "delete"
    how = "as huey (WAL) but journal_mode='delete', SQLite's default journal"


class Dbos(System):
    name = "dbos"
    package = "dbos"
    how = (
        "workflows enqueued by DBOSClient; worker: DBOS.launch(), queue "
        "worker_concurrency=N, polling_interval_sec=0.01; exclusive: global_concurrency=1; "
        "priority 10-p (lower runs first)"
    )
    priority_note = "priority (lower first), then enqueue time"

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        from dbos import DBOSClient

        self.url = store.url or f"sqlite:///{store.dir / 'dbos.sqlite'}"
        setup = self.spawn(store.dir / "setup", "-m", "bench.peers_dbos", self.url, 0)
        if setup.wait(timeout=120) != 0:
            raise RuntimeError("DBOS setup failed")
        self.client = DBOSClient(system_database_url=self.url)

    def enqueue(self, n: int, priority: int) -> None:
        options: Any = {"queue_name": "bench", "workflow_name": "noop", "priority": 10 - priority}
        self.client.enqueue(options, n)

    def enqueue_exclusive(self, n: int, seconds: float) -> None:
        options: Any = {"queue_name": EXCLUSIVE, "workflow_name": EXCLUSIVE}
        self.client.enqueue(options, n, seconds)

    def worker(self, slots: int, out: Path, exclusive: bool) -> Any:
        return self.spawn(out, "-m", "bench.peers_dbos", self.url, slots)

    def close(self) -> None:
        self.client.destroy()


class Procrastinate(System):
    POLL = 0.1

    name = "procrastinate"
    package = "procrastinate"
    backends = ("postgres",)
    how = (
        "defer: SyncPsycopgConnector; worker: PsycopgConnector, `procrastinate worker "
        "--concurrency N --fetch-job-polling-interval 0.1` (LISTEN/NOTIFY; a freed lock "
        "sends no notification, so the default 5 s poll would pace the exclusive jobs); "
        "exclusive: lock='exclusive'"
    )

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        import procrastinate

        from bench.peers_procrastinate import app

        # The docs' connector for code that only defers, synchronously (the workers are async).
        connector = procrastinate.SyncPsycopgConnector(conninfo=store.url or "")
        self.app = app.with_connector(connector).open()
        self.app.schema_manager.apply_schema()

    def defer(self, name: str, **options: Any) -> Any:
        """The task deferred through this database's app (the module's tasks hold its own)."""
        from procrastinate.tasks import configure_task

        return configure_task(name=name, job_manager=self.app.job_manager, queue="bench", **options)

    def enqueue(self, n: int, priority: int) -> None:
        self.defer("noop", priority=priority).defer(n=n)

    def enqueue_exclusive(self, n: int, seconds: float) -> None:
        self.defer(EXCLUSIVE, lock=EXCLUSIVE).defer(n=n, seconds=seconds)

    def worker(self, slots: int, out: Path, exclusive: bool) -> Any:
        args = ("-m", "procrastinate", "--app", "bench.peers_procrastinate.app", "worker")
        env = {DB_ENV: self.store.url or ""}
        poll = ("--fetch-job-polling-interval", self.POLL)
        return self.spawn(out, *args, "--concurrency", slots, *poll, env=env)

    def close(self) -> None:
        self.app.close()


class PgQueuer(System):
    name = "pgqueuer"
    package = "pgqueuer"
    backends = ("postgres",)
    how = (
        "AsyncpgDriver; worker: pgqueuer.run(factory) (what `pgq run` calls) with "
        "max_concurrent_tasks=N, batch_size=N/2; 1 slot: entrypoint concurrency_limit=1, "
        "batch_size=1; "
        "exclusive: entrypoint concurrency_limit=1"
    )

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        import asyncpg
        from pgqueuer import Queries
        from pgqueuer.db import AsyncpgDriver

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(store.url))
        self.queries = Queries(AsyncpgDriver(self.conn))
        self.loop.run_until_complete(self.queries.install())

    def enqueue(self, n: int, priority: int) -> None:
        self.loop.run_until_complete(self.queries.enqueue("noop", str(n).encode(), priority))

    def enqueue_exclusive(self, n: int, seconds: float) -> None:
        payload = f"{n} {seconds}".encode()
        self.loop.run_until_complete(self.queries.enqueue(EXCLUSIVE, payload, 0))

    def worker(self, slots: int, out: Path, exclusive: bool) -> Any:
        env = {DB_ENV: self.store.url or ""}
        kind = EXCLUSIVE if exclusive else "noop"
        return self.spawn(out, "-m", "bench.peers_pgqueuer", slots, kind, env=env)

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


SYSTEMS: tuple[type[System], ...] = (
    Ours,
    OursSql,
    Raw,
    Huey,
    HueyDelete,
    Dbos,
    Procrastinate,
    PgQueuer,
)
IMPORTS = {"huey": "huey", "dbos": "dbos", "procrastinate": "procrastinate", "pgqueuer": "pgqueuer"}


def missing_packages() -> list[str]:
    return [pkg for pkg, mod in IMPORTS.items() if importlib.util.find_spec(mod) is None]


def install_hint() -> str | None:
    """The one line `--peers` prints when a peer is missing (its rows then say so too)."""
    missing = missing_packages()
    return f"peers not installed: {', '.join(missing)}; {INSTALL}" if missing else None


@dataclass(slots=True)
class Drain:
    """One drain's records and what they show."""

    expected: dict[int, int] = field(default_factory=dict)
    rate: float = 0.0
    gap_ms: float = 0.0
    cross_gap_ms: float = 0.0  # only the gaps where the next job ran in another process
    worst_gap_ms: float = 0.0  # the longest of the gaps, and of the cross-process ones
    worst_cross_gap_ms: float = 0.0
    duplicates: int = 0
    missing: int = 0
    out_of_order: int = 0  # adjacent pairs run against the expected order
    overlaps: int = 0
    worst_overlap_ms: float = 0.0
    error: str = ""
    # CPU per job (µs) between the first record and the last: the worker processes', and
    # on a PostgreSQL server of this machine the server's; None where /proc can't tell.
    worker_cpu_us: float | None = None
    server_cpu_us: float | None = None


def cpu_ns(pids: Iterable[int]) -> dict[tuple[int, int], int]:
    """CPU time so far (ns) of each thread of each process that still exists, keyed by
    (pid, thread id): Linux's per-thread `schedstat`, where /proc/<pid>/stat counts in
    10 ms clock ticks, too coarse for a drain of a fraction of a second. Elsewhere none."""
    times = {}
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                times[(pid, int(task.name))] = int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # the thread ended meanwhile
    return times


def is_local(url: str) -> bool:
    """Does the PostgreSQL server at `url` run on this machine (its CPU is then counted)?"""
    return urlsplit(url).hostname in (None, "", "127.0.0.1", "localhost", "::1")


def server_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (backends, WAL writer,
    checkpointer, ...), or none."""
    pids = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU per job of a drain's worker processes (and of the database server when it
    runs here), from a first sample taken at the first record to a last at the last:
    start-up and shutdown are not counted. Steadier than jobs/s on a busy machine: time
    spent waiting for a CPU is not CPU time. A thread started in between counts from
    its start; one that ended in between is not counted (the drains' workers keep
    theirs, as do the server's backends)."""

    def __init__(self, procs: list[Any], *, server: bool) -> None:
        self._pids = [p.pid for p in procs]
        self._server = server
        self._first: tuple[int, dict[tuple[int, int], int], dict[tuple[int, int], int]] | None
        self._first = None

    def _sample(self) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
        return cpu_ns(self._pids), cpu_ns(server_pids()) if self._server else {}

    def seen(self, records: int) -> None:
        """Called with the count of records so far; samples at the first one."""
        if self._first is None and records:
            self._first = (records, *self._sample())

    def per_job_us(self, records: int) -> tuple[float | None, float | None]:
        """(worker, server) µs of CPU per job since the first sample, `records` now."""
        if self._first is None or records <= self._first[0]:
            return None, None
        jobs = records - self._first[0]
        workers, server = self._sample()

        def per_job(
            before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]
        ) -> float | None:
            if not after:
                return None
            spent = sum(t - before.get(key, 0) for key, t in after.items())
            return spent / 1_000 / jobs

        alive = {pid for pid, _ in workers}
        worker_us = per_job(self._first[1], workers) if alive == set(self._pids) else None
        return worker_us, per_job(self._first[2], server) if self._server else None


def read_records(out: Path) -> list[tuple[int, float, float, int]]:
    """(job number, start, end, pid) of every job run."""
    rows = [line.split() for line in out.read_text().splitlines() if line]
    return [(int(n), float(start), float(end), int(pid)) for n, start, end, pid in rows]


def hand_offs_ms(
    records: list[tuple[int, float, float, int]], *, cross_only: bool = False
) -> list[float]:
    """The gaps (ms) from one job's end to the next job's start (`cross_only`: where the
    next ran in another process, a hand-off between worker processes). The gap into a
    worker process's first job is left out: it holds that process's start-up (imports,
    connections), which every system's second worker may still be in when the first
    job ends, not a hand-off."""
    ordered = sorted((start, end, pid) for _, start, end, pid in records)
    first: dict[int, float] = {}
    for start, _, pid in ordered:
        first.setdefault(pid, start)
    return [
        (nxt[0] - cur[1]) * 1000
        for cur, nxt in itertools.pairwise(ordered)
        if nxt[0] != first[nxt[2]] and (nxt[2] != cur[2] or not cross_only)
    ]


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def drain(
    system: System,
    out: Path,
    expected: dict[int, int],
    *,
    slots: int,
    processes: int,
    exclusive: bool,
    timeout: float,
    workers: Callable[[int], Any] | None = None,
) -> Drain:
    """Start the workers (`workers(i)` starts the i-th, if given), wait until every
    expected job has a record, stop them, check."""
    out.touch()
    procs = [
        workers(i) if workers else system.worker(slots, out, exclusive) for i in range(processes)
    ]
    result = Drain(expected=expected)
    meter = CpuMeter(procs, server=system.store.url is not None and is_local(system.store.url))
    try:
        deadline = time.monotonic() + timeout
        while (seen := out.read_bytes().count(b"\n")) < len(expected):
            meter.seen(seen)
            if any(p.poll() is not None for p in procs):
                result.error = "a worker exited early"
                break
            if time.monotonic() > deadline:
                result.error = f"unfinished after {timeout:.0f} s"
                break
            time.sleep(0.01)
        else:
            result.worker_cpu_us, result.server_cpu_us = meter.per_job_us(seen)
        time.sleep(GRACE)
    finally:
        stop_all(procs)
    records = read_records(out)
    counts = Counter(n for n, _, _, _ in records)
    result.duplicates = sum(c - 1 for c in counts.values() if c > 1)
    result.missing = len(set(expected) - set(counts))
    if records:
        spans = sorted((start, end) for _, start, end, _ in records)
        result.rate = len(records) / max(max(e for _, e in spans) - spans[0][0], 1e-9)
        gaps = gaps_ms(spans)
        result.overlaps = sum(g < 0 for g in gaps) if exclusive else 0
        result.worst_overlap_ms = -min([0.0, *gaps]) if exclusive else 0.0
        handing = hand_offs_ms(records)
        result.gap_ms = statistics.median(handing) if handing else 0.0
        crossing = hand_offs_ms(records, cross_only=True)
        result.cross_gap_ms = statistics.median(crossing) if crossing else float("nan")
        result.worst_gap_ms = max(handing, default=0.0)
        result.worst_cross_gap_ms = max(crossing, default=0.0)
        ran = [n for n, _, _, _ in sorted(records, key=lambda r: r[1])]
        keys = [(-expected.get(n, 0), n) for n in ran]
        result.out_of_order = sum(a > b for a, b in itertools.pairwise(keys))
    return result


FIGURES = ("enqueue", "slot1", "slot4", "cpu1", "cpu4", "server1", "server4", "handoff", "cross")


@dataclass(slots=True)
class Tally:
    """One system's figures over the rounds, and its checks."""

    figures: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in FIGURES})
    jobs: int = 0
    duplicates: int = 0
    missing: int = 0
    out_of_order: int = 0
    overlaps: int = 0
    worst_overlap_ms: float = 0.0
    worst_gap_ms: dict[str, float] = field(default_factory=dict)  # hand-off rows, all rounds
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, d: Drain) -> None:
        """A drain's checks, and its figures unless it did not finish (then its error)."""
        self.jobs += len(d.expected)
        self.duplicates += d.duplicates
        self.missing += d.missing
        self.overlaps += d.overlaps
        self.worst_overlap_ms = max(self.worst_overlap_ms, d.worst_overlap_ms)
        if d.error or d.missing:
            self.errors.append(f"{name}: {d.error or f'{d.missing} jobs never ran'}")
            return
        self.figures[name].append(FIGURE_OF[name](d))
        if name in WORST_OF:
            self.worst_gap_ms[name] = max(self.worst_gap_ms.get(name, 0.0), WORST_OF[name](d))


def one_round(
    cls: type[System],
    store: Store,
    sizes: PeerSizes,
    rng: random.Random,
    tally: Tally,
    *,
    four_first: bool = False,
) -> None:
    system = cls(store)
    try:
        prios = {n: rng.randint(0, 9) for n in range(sizes.jobs)}
        start = time.perf_counter()
        for n, p in prios.items():
            system.enqueue(n, p)
        tally.figures["enqueue"].append(sizes.jobs / (time.perf_counter() - start))
        drains: list[tuple[str, Drain]] = []
        # The second batch drains from a database holding the first one's ended jobs:
        # the rounds alternate which slot count goes first.
        for i, slots in enumerate((4, 1) if four_first else (1, 4)):
            batch = {n + i * sizes.jobs: p for n, p in prios.items()}
            if i:
                for n, p in batch.items():
                    system.enqueue(n, p)
            name = f"slot{slots}"
            done = drain(
                system,
                store.dir / f"{name}.txt",
                batch,
                slots=slots,
                processes=1,
                exclusive=False,
                timeout=sizes.timeout,
            )
            drains.append((name, done))
            for figure, cpu in (("cpu", done.worker_cpu_us), ("server", done.server_cpu_us)):
                if cpu is not None and not done.error:
                    tally.figures[f"{figure}{slots}"].append(cpu)
            if slots == 1:  # the order is checked where one job runs at a time
                tally.out_of_order += done.out_of_order
        first = 2 * sizes.jobs
        if "handoff" in cls.figures:
            held = dict.fromkeys(range(first, first + sizes.exclusive_jobs), 0)
            for n in held:
                system.enqueue_exclusive(n, sizes.hold)
            excl = drain(
                system,
                store.dir / "exclusive.txt",
                held,
                slots=2,
                processes=2,
                exclusive=True,
                timeout=sizes.timeout,
            )
            drains.append(("handoff", excl))
        if "cross" in cls.figures:  # every hand-off between processes
            assert isinstance(system, Ours)
            first += sizes.exclusive_jobs
            alternating = dict.fromkeys(range(first, first + sizes.exclusive_jobs), 0)
            system.enqueue_alternating(list(alternating), sizes.hold)
            out = store.dir / "cross.txt"
            cross = drain(
                system,
                out,
                alternating,
                slots=1,
                processes=2,
                exclusive=True,
                timeout=sizes.timeout,
                workers=lambda i: system.alternating_worker(i, out),
            )
            drains.append(("cross", cross))
        for name, d in drains:
            tally.add(name, d)
    finally:
        system.close()


ROWS = {
    "enqueue": ("enqueue one by one, jobs/s", "jobs/s", True),
    "slot1": ("drain, 1 worker process x 1 slot, jobs/s", "jobs/s", True),
    "slot4": ("drain, 1 worker process x 4 slots, jobs/s", "jobs/s", True),
    "cpu1": ("drain, 1 slot: the worker process's CPU per job, µs", "µs", False),
    "cpu4": ("drain, 4 slots: the worker process's CPU per job, µs", "µs", False),
    "server1": ("drain, 1 slot: the database server's CPU per job, µs", "µs", False),
    "server4": ("drain, 4 slots: the database server's CPU per job, µs", "µs", False),
    "handoff": ("exclusive hand-off, 2 processes x 2 slots, median gap ms", "ms", False),
    "cross": (
        "hand-off to another worker process (ours: a group whose members alternate "
        "between 2 processes, one job type each), median gap ms",
        "ms",
        False,
    ),
}
FIGURE_OF: dict[str, Callable[[Drain], float]] = {
    "slot1": lambda d: d.rate,
    "slot4": lambda d: d.rate,
    "handoff": lambda d: d.gap_ms,
    "cross": lambda d: d.cross_gap_ms,
}
# The hand-off rows' tails: the longest single gap, over every round.
WORST_OF: dict[str, Callable[[Drain], float]] = {
    "handoff": lambda d: d.worst_gap_ms,
    "cross": lambda d: d.worst_cross_gap_ms,
}
# Rows without a target: what the drains cost in CPU, which a busy machine's waits for a
# CPU (other processes, a virtual machine's steal time) do not blur as they blur jobs/s.
INFORMATIONAL = ("cpu1", "cpu4", "server1", "server4")
DRAINS = ("slot1", "slot4", *INFORMATIONAL)  # rows beside ours' statements alone
BASELINES = ("ours", "ours_sql", "raw")  # not peers: ours, and what it is measured against
CROSS_PROCESS_TARGET_MS = 10.0  # the bound, besides "no worse than the best peer"


def rows(
    backend: str, sizes: PeerSizes, tallies: dict[str, Tally], labels: dict[str, str]
) -> list[Result]:
    results: list[Result] = []
    ours = tallies.get("ours")
    peers = {k: t for k, t in tallies.items() if k not in BASELINES}
    for key, (what, unit, higher) in ROWS.items():
        row = f"peers: {what} ({sizes.jobs:,} / {sizes.exclusive_jobs} jobs)"
        if key in INFORMATIONAL and (ours is None or not ours.figures[key]):
            continue  # not measurable here (no /proc, a server elsewhere, SQLite)
        if ours is None or not ours.figures[key]:
            results.append(Result(row=row, backend=backend, unit=unit, error="ours did not run"))
            continue
        mine = ours.figures[key]
        ranked = sorted(
            (k for k, t in peers.items() if t.figures[key]),
            key=lambda k: statistics.median(peers[k].figures[key]),
            reverse=higher,
        )
        others = ", ".join(
            f"{labels[k]} {statistics.median(peers[k].figures[key]):,.1f}" for k in ranked
        )
        best = ranked[0] if ranked else None
        notes = [f"peers: {others}"] if others else []
        if key in WORST_OF:  # the tail beside the median: ours', and the best peer's
            tails = [("ours", ours), *([(labels[best], peers[best])] if best else [])]
            if worst := [
                f"{label} {tally.worst_gap_ms[key]:.1f} ms"
                for label, tally in tails
                if key in tally.worst_gap_ms
            ]:
                notes.append("worst gap over the rounds: " + ", ".join(worst))
        goal = (
            Goal(f"< {CROSS_PROCESS_TARGET_MS:.0f} ms", CROSS_PROCESS_TARGET_MS, False)
            if key == "cross"
            else None
            if key in INFORMATIONAL
            else Goal(">= 1x best peer" if higher else "<= 1x best peer", 1.0, higher, True)
        )
        results.append(
            paired(
                row,
                backend,
                unit,
                mine,
                peers[best].figures[key] if best else None,
                f"best peer: {labels[best]}" if best else "no peer ran",
                goal,
                "; ".join(notes),
            )
        )
        raw = tallies.get("raw")
        if raw and raw.figures[key]:
            results.append(
                paired(
                    f"{row}, vs raw",
                    backend,
                    unit,
                    mine,
                    raw.figures[key],
                    labels["raw"],
                    None,
                    "the least any queue does: the same transactions, no product",
                )
            )
        sql = tallies.get("ours_sql")
        if sql and sql.figures[key] and key in DRAINS:
            share = ""
            if raw and raw.figures[key] and statistics.median(raw.figures[key]):
                of_raw = statistics.median(sql.figures[key]) / statistics.median(raw.figures[key])
                share = f"; ours' statements alone are {of_raw:.2f}x raw"
            results.append(
                paired(
                    f"{row}, vs ours' statements alone",
                    backend,
                    unit,
                    mine,
                    sql.figures[key],
                    labels["ours_sql"],
                    None,
                    "ours' database work with none of its Python" + share,
                )
            )
    for key, tally in tallies.items():
        checks = tally.duplicates + tally.missing + tally.out_of_order + tally.overlaps
        note = (
            f"of {tally.jobs:,} jobs: {tally.duplicates} ran twice, {tally.missing} never ran; "
            f"{tally.out_of_order} pairs out of priority order (1 slot); "
            f"{tally.overlaps} exclusive overlaps"
            + (f" (worst {tally.worst_overlap_ms:.2f} ms)" if tally.overlaps else "")
        )
        results.append(
            Result(
                row=f"peers: checks, {labels[key]}",
                backend=backend,
                unit="violations",
                ours=Series([float(checks)]),
                goal=Goal("0", 0, at_least=False),
                note=note,
                # A drain that did not finish, or a round that failed: the run is not
                # a measurement of that system (and the command exits 1).
                error="; ".join(tally.errors) if tally.errors else None,
                details={"system": key, "figures": tally.figures},
            )
        )
    return results


def paired(
    row: str,
    backend: str,
    unit: str,
    ours: list[float],
    other: list[float] | None,
    label: str,
    goal: Goal | None,
    note: str,
) -> Result:
    """A row whose ratio is per round, or of the medians if a side lost a round."""
    ratios = None
    if other and len(other) == len(ours):
        ratios = Series([o / b if b else float("inf") for o, b in zip(ours, other, strict=True)])
    elif other:
        mine, theirs = statistics.median(ours), statistics.median(other)
        ratios = Series([mine / theirs if theirs else float("inf")])
    return Result(
        row=row,
        backend=backend,
        unit=unit,
        ours=Series(ours),
        baseline=Series(other) if other else None,
        baseline_label=label,
        ratios=ratios,
        goal=goal,
        note=note,
    )


def run(ctx: Context) -> list[Result]:
    mode = next(name for name, sizes in MODES.items() if sizes is ctx.sizes)
    sizes, backend = SIZES[mode], ctx.backend
    missing = missing_packages()
    here = [cls for cls in SYSTEMS if backend.name in cls.backends]
    systems = [cls for cls in here if cls.package not in missing]
    labels = {cls.name: cls.label() for cls in systems}
    labels["raw"] = "raw sqlite3 WAL" if backend.name == "sqlite" else "raw psycopg SKIP LOCKED"
    labels["ours_sql"] = "ours' statements alone, raw " + (
        "sqlite3" if backend.name == "sqlite" else "psycopg"
    )
    tallies = {cls.name: Tally() for cls in systems}
    rounds = 1 if mode == "smoke" else ctx.rounds  # smoke: every path once, within a minute
    for round_ in range(rounds):
        for cls in systems:
            ctx.say(f"round {round_ + 1}: {cls.name}")
            tally = tallies[cls.name]
            try:
                with fresh_store(backend.root, backend.postgres_url) as store:
                    rng = random.Random(round_)
                    one_round(cls, store, sizes, rng, tally, four_first=round_ % 2 == 1)
            except Exception as exc:
                tally.errors.append(f"round {round_ + 1}: {exc!r}"[:300])
    results = rows(backend.name, sizes, tallies, labels)
    skipped = [cls.name for cls in here if cls not in systems]
    if skipped:
        note = f"not installed: {', '.join(skipped)}; {INSTALL}"
        results.append(Result(row="peers: not run", backend=backend.name, unit="", note=note))
    for result in results:
        system = next((c for c in systems if c.name == result.details.get("system")), None)
        if system is not None:  # a checks row: how the system ran, its order semantics
            result.details["how"] = system.how
            result.note += f"; order expected: {system.priority_note}"
        result.details["versions"] = {
            cls.name: version(cls.package) for cls in systems if cls.package
        }
    return results
