"""What an executor records about a RUNNING run: the flow run executing it, and the
external concurrency leases it holds (so recovery can release exactly those)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.errors import StaleStateError
from scheduler_core.statuses import JobRunStatus
from scheduler_core.store import rows
from scheduler_core.store.base import StoreBase
from scheduler_core.tables import LEASES as L
from scheduler_core.tables import RUNS as R
from scheduler_core.values import JobRun


class LeasesStore(StoreBase):
    def get_run(self, conn: Connection, run_id: int) -> JobRun | None:
        row = conn.execute(sa.select(R).where(R.c.run_id == run_id)).first()
        return rows.run(row) if row else None

    def get_run_for_job(self, conn: Connection, job_id: int) -> JobRun | None:
        row = conn.execute(sa.select(R).where(R.c.job_id == job_id)).first()
        return rows.run(row) if row else None

    def set_flow_run_id(self, conn: Connection, run_id: int, flow_run_id: str) -> None:
        """Link a RUNNING run to the flow run executing it; set once, never changed."""
        result = conn.execute(
            sa.update(R)
            .where(
                R.c.run_id == run_id,
                R.c.status == JobRunStatus.RUNNING.value,
                R.c.flow_run_id.is_(None),
            )
            .values(flow_run_id=flow_run_id)
        )
        if result.rowcount != 1:
            raise StaleStateError(f"run {run_id} is not RUNNING or already has a flow run")

    def record_lease(
        self, conn: Connection, *, run_id: int, name: str, lease_id: str, now: datetime
    ) -> None:
        conn.execute(
            sa.insert(L).values(run_id=run_id, name=name, lease_id=lease_id, acquired_at=now)
        )

    def clear_lease(self, conn: Connection, *, run_id: int, lease_id: str | None = None) -> None:
        stmt = sa.delete(L).where(L.c.run_id == run_id)
        if lease_id is not None:
            stmt = stmt.where(L.c.lease_id == lease_id)
        conn.execute(stmt)

    def leases_of(self, conn: Connection, run_id: int) -> list[tuple[str, str]]:
        rows_ = conn.execute(sa.select(L.c.name, L.c.lease_id).where(L.c.run_id == run_id))
        return [(r.name, r.lease_id) for r in rows_]
