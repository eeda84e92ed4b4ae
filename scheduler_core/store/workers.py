"""Worker membership: registration, heartbeat, status, and who runs what."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.statuses import WorkerStatus
from scheduler_core.store import rows
from scheduler_core.store.base import StoreBase
from scheduler_core.store.hot import RUNNING, status_in
from scheduler_core.tables import JOBS as J
from scheduler_core.tables import RUNS as R
from scheduler_core.tables import WORKERS as W
from scheduler_core.values import Claim, Worker


class WorkersStore(StoreBase):
    def upsert_worker(self, conn: Connection, worker: Worker) -> None:
        stmt = self._insert(W).values(**worker.model_dump())
        stmt = stmt.on_conflict_do_update(
            index_elements=["worker_id"],
            set_={k: stmt.excluded[k] for k in ("slots", "status", "heartbeat_at", "stopped_at")},
        )
        conn.execute(stmt)

    def heartbeat(self, conn: Connection, worker_id: str, *, now: datetime) -> None:
        conn.execute(
            sa.update(W)
            .where(W.c.worker_id == worker_id, W.c.status == WorkerStatus.RUNNING.value)
            .values(heartbeat_at=now)
        )

    def set_worker_status(
        self, conn: Connection, worker_id: str, status: WorkerStatus, *, now: datetime
    ) -> None:
        conn.execute(
            sa.update(W)
            .where(W.c.worker_id == worker_id)
            .values(status=status.value, stopped_at=now)
        )

    def list_workers(self, conn: Connection) -> list[Worker]:
        return [
            Worker.model_validate(r._mapping)
            for r in conn.execute(sa.select(W).order_by(W.c.started_at))
        ]

    def running_claims_by_worker(
        self, conn: Connection, worker_id: str | None = None
    ) -> dict[str | None, list[Claim]]:
        """Every RUNNING job with its run (of one worker, if given), by worker: two queries,
        however many there are."""
        stmt = sa.select(J).where(status_in([RUNNING]))
        if worker_id is not None:
            stmt = stmt.where(J.c.worker_id == worker_id)
        jobs = [rows.job(r) for r in conn.execute(stmt)]
        if not jobs:
            return {}
        runs = {
            run.job_id: run
            for run in (
                rows.run(r)
                for r in conn.execute(sa.select(R).where(R.c.job_id.in_([j.job_id for j in jobs])))
            )
        }
        out: dict[str | None, list[Claim]] = {}
        for job in jobs:
            run = runs.get(job.job_id or 0)
            if run is not None:
                out.setdefault(job.worker_id, []).append(Claim(job=job, run=run))
        return out
