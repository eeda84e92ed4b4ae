"""What the fault tests share: a mixed workload, worker processes, the execution log."""

from __future__ import annotations

import itertools
import random
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from scheduler_core import JobStatus, SchedulerService
from scheduler_core.tables import RUNS
from tests.conftest import wait_for
from tests.support import kill, start_module


@dataclass
class Workload:
    """Jobs queued with their expected ends: (attempts, final status) per original."""

    expected: dict[int, tuple[int, JobStatus]] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)  # group id -> expected status

    @property
    def size(self) -> int:
        return len(self.expected)


def queue_mixed_workload(svc: SchedulerService, *, singles: int, seed: int = 1) -> Workload:
    """Singles (a fifth on the exclusive `ollama` resource, one in twenty failing once),
    groups that complete, and groups whose middle member exhausts its retries."""
    rng = random.Random(seed)
    svc.register("work", lambda params: None, resource=lambda p: str(p.get("res", "external")))
    svc.set_resource_limit("ollama", 1)
    load = Workload()
    specs: list[dict[str, Any]] = []
    for _ in range(singles):
        res = "ollama" if rng.random() < 0.2 else "external"
        fail = 1 if rng.random() < 0.05 else 0
        specs.append({"job_type": "work", "params": {"res": res, "fail": fail}, "max_retries": 3})
    for job in svc.enqueue_jobs(specs):
        fails = int(job.params["fail"])
        load.expected[job.job_id or 0] = (1 + fails, JobStatus.COMPLETED)
    for g in range(20):
        broken = g % 5 == 0
        members = [
            {"job_type": "work", "params": {"res": "external"}},
            {
                "job_type": "work",
                "params": {"res": "external", "fail": -1 if broken else 0},
                "max_retries": 1,
            },
            {"job_type": "work", "params": {"res": "ollama"}},
        ]
        group, jobs = svc.create_job_group(members, name=f"g{g}")
        load.groups[group.group_id or 0] = "PARTIAL" if broken else "COMPLETED"
        ends = (
            [(1, JobStatus.COMPLETED), (2, JobStatus.FAILED), (0, JobStatus.SKIPPED)]
            if broken
            else [(1, JobStatus.COMPLETED)] * 3
        )
        for job, end in zip(jobs, ends, strict=True):
            load.expected[job.job_id or 0] = end
    return load


class Workers:
    """Worker processes of tests/faults/fault_worker.py on one database."""

    def __init__(
        self, url: str, log: Path, count: int, slots: int = 2, env: dict[str, str] | None = None
    ) -> None:
        self.log = log
        self.procs: list[subprocess.Popen[str]] = []
        self.ids: list[str] = []
        for _ in range(count):
            proc = start_module("tests.faults.fault_worker", url, str(log), str(slots), env=env)
            self.procs.append(proc)
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            assert line[:1] == ["ready"], line
            self.ids.append(line[1])

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            kill(proc)


def executions(log: Path) -> tuple[Counter[int], Counter[int], list[tuple[float, float]]]:
    """Starts and completions per job id, and the (start, end) of completed ollama jobs."""
    starts: Counter[int] = Counter()
    dones: Counter[int] = Counter()
    ollama: list[tuple[float, float]] = []
    for line in log.read_text().splitlines():
        kind, job_id, _attempt, res, *times = line.split()
        if kind == "start":
            starts[int(job_id)] += 1
        else:
            dones[int(job_id)] += 1
            if res == "ollama":
                ollama.append((float(times[0]), float(times[1])))
    return starts, dones, ollama


def check_outcome(svc: SchedulerService, load: Workload, log: Path) -> dict[str, int]:
    """Every original ended as designed (no attempt burned, none lost), every completed
    job completed exactly once, no two `ollama` executions overlapped. Returns counts."""
    jobs = svc.list_jobs()
    assert not [j for j in jobs if not j.status.is_terminal], "jobs left QUEUED or RUNNING"
    chains: dict[int, list[Any]] = defaultdict(list)
    by_id = {j.job_id: j for j in jobs}
    for job in jobs:
        root = job
        while root.retry_of is not None:
            root = by_id[root.retry_of]
        chains[root.job_id or 0].append(job)
    wrong = {
        root: (
            [j.status.value for j in sorted(chain, key=lambda j: j.attempt)],
            load.expected[root],
        )
        for root, chain in chains.items()
        if (len(chain), max(chain, key=lambda j: j.attempt).status)
        != (max(load.expected[root][0], 1), load.expected[root][1])
    }
    assert not wrong, f"{len(wrong)} chains ended other than designed: {list(wrong.items())[:5]}"
    for group_id, status in load.groups.items():
        assert svc.get_job_group(group_id).status.value == status
    _starts, dones, ollama = executions(log)
    completed = {j.job_id for j in jobs if j.status == JobStatus.COMPLETED}
    twice = {job_id: n for job_id, n in dones.items() if n > 1}
    assert not twice, f"completed more than once: {twice}"
    assert set(dones) == completed
    ollama.sort()
    overlaps = [(a, b) for a, b in itertools.pairwise(ollama) if b[0] < a[1]]
    assert not overlaps, f"{len(overlaps)} overlapping ollama executions"
    return {
        "jobs": len(jobs),
        "originals": len(chains),
        "retries": len(jobs) - len(chains),
        "completed": len(completed),
    }


def started_after(svc: SchedulerService, when: Any) -> set[str]:
    """The workers that started a job after `when`."""

    def read(conn: sa.Connection) -> set[str]:
        rows = conn.execute(sa.select(RUNS.c.worker_id).where(RUNS.c.started_at > when).distinct())
        return {r[0] for r in rows}

    return svc.db.read(read)


def done_count(svc: SchedulerService) -> int:
    return len(svc.list_jobs(status=["COMPLETED", "FAILED", "SKIPPED", "CANCELLED"]))


def check_recovered(
    svc: SchedulerService, load: Workload, workers: Workers, *, since: Any
) -> dict[str, int]:
    """After a fault ended at `since`: every job ends, every worker is alive and its
    dispatcher claimed work again, and `check_outcome` holds. Returns its counts."""
    wait_for(
        lambda: not svc.list_jobs(status=["QUEUED", "RUNNING"]),
        timeout=300,
        interval=0.5,
        what="every job terminal after the fault",
    )
    assert workers.alive()
    assert started_after(svc, since) == set(workers.ids), "a dispatcher stopped"
    return check_outcome(svc, load, workers.log)
