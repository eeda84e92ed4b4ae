"""Crash recovery (DEC-008): close the runs of dead workers' RUNNING jobs as FAILED
(the retry rule applies), mark those workers DEAD and release their reservations.
rules/recovery.py decides who is dead; jobs of live workers are never touched."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler_core.database import Database
from scheduler_core.errors import StaleStateError
from scheduler_core.liveness import worker_is_alive
from scheduler_core.plugins import Plugin
from scheduler_core.rules import recovery
from scheduler_core.spool import Spool
from scheduler_core.statuses import WorkerStatus
from scheduler_core.store import Store
from scheduler_core.values import Claim, Finish, Outcome, Worker, utcnow

log = logging.getLogger("scheduler_core")


@dataclass(slots=True)
class RecoveryReport:
    running_jobs_recovered: int = 0
    retries_created: int = 0
    workers_marked_dead: int = 0
    reservations_released: int = 0
    spooled_ends_written: int = 0
    recovered_job_ids: list[int] = field(default_factory=list)


FinishFn = Callable[[Claim, Outcome], Finish]


def recover(
    db: Database,
    store: Store,
    *,
    me: str,
    heartbeat_timeout: float,
    finish: FinishFn,
    plugins: Plugin,
    spool: Spool | None = None,
    trust_heartbeats: bool = True,
) -> RecoveryReport:
    """One recovery pass; safe to run in several processes at once. First the ends that
    gone workers of this host kept on disk (spool.py) are written as they happened."""
    report = RecoveryReport()
    now = utcnow()
    workers = {w.worker_id: w for w in db.read(store.list_workers)}

    def is_alive(worker: Worker | None) -> bool:
        return worker_is_alive(
            worker,
            now=now,
            heartbeat_timeout=heartbeat_timeout,
            trust_heartbeats=trust_heartbeats,
        )

    def gone(worker_id: str | None) -> bool:
        return recovery.owner_is_dead(worker_id, workers=workers, me=me, is_alive=is_alive)

    if spool is not None:
        report.spooled_ends_written = spool.replay(finish, gone=gone)
    for worker_id, claims in db.read(store.running_claims_by_worker).items():
        if gone(worker_id):
            outcome = recovery.crashed(worker_id, workers.get(worker_id) if worker_id else None)
            _close_crashed(claims, outcome, finish=finish, plugins=plugins, report=report)
    dead = recovery.dead_workers(workers, me=me, is_alive=is_alive)
    if dead:

        def mark(conn: Any) -> int:
            for worker_id in dead:
                store.set_worker_status(conn, worker_id, WorkerStatus.DEAD, now=now)
            return store.release_reservations_of(conn, dead, now=now)

        report.reservations_released = db.write(mark)
        report.workers_marked_dead = len(dead)
    return report


def _close_crashed(
    claims: list[Claim],
    outcome: Outcome,
    *,
    finish: FinishFn,
    plugins: Plugin,
    report: RecoveryReport,
) -> None:
    """Finish a dead worker's RUNNING jobs as crashed (the retry rule applies)."""
    for claim in claims:
        try:
            done = finish(claim, outcome)
        except StaleStateError:
            continue  # another process recovered it first
        report.running_jobs_recovered += 1
        report.recovered_job_ids.append(claim.job.job_id or 0)
        report.retries_created += done.retry is not None
        log.warning(
            "action=recover job_id=%s run_id=%s worker_id=%s retry_job_id=%s",
            claim.job.job_id,
            claim.run.run_id,
            claim.job.worker_id,
            done.retry.job_id if done.retry else None,
        )
        plugins.on_recovered(claim, done)
