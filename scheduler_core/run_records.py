"""What an executor may call back while it runs a job: attach the flow run executing
it, and record or clear the external concurrency leases it holds. Executors get this
narrow interface, never the whole service."""

from __future__ import annotations

from typing import Any, Protocol

from scheduler_core.database import Database
from scheduler_core.store import Store
from scheduler_core.values import utcnow


class RunCallbacks(Protocol):
    def attach_flow_run(self, run_id: int, flow_run_id: str) -> None:
        """Record which flow run executes a RUNNING job run (once)."""

    def set_external_id(self, job_id: int, external_id: str) -> str | None:
        """Record the job's id in the orchestrator that runs it (its flow run); the id
        it had before, if any."""

    def record_lease(self, run_id: int, *, name: str, lease_id: str) -> None:
        """Remember an external concurrency lease the run holds, for crash recovery."""

    def clear_lease(self, run_id: int, lease_id: str | None = None) -> None:
        """The run released the lease (or all of its leases)."""


class RunRecords:
    """RunCallbacks on the scheduler's database; also reads a run's leases back."""

    def __init__(self, db: Database, store: Store) -> None:
        self._db = db
        self._store = store

    def attach_flow_run(self, run_id: int, flow_run_id: str) -> None:
        self._db.write(lambda c: self._store.set_flow_run_id(c, run_id, flow_run_id))

    def set_external_id(self, job_id: int, external_id: str) -> str | None:
        def tx(conn: Any) -> str | None:
            previous = self._store.get_job(conn, job_id).external_id
            self._store.set_external_id(conn, job_id, external_id, replace=True)
            return previous

        return self._db.write(tx)

    def record_lease(self, run_id: int, *, name: str, lease_id: str) -> None:
        self._db.write(
            lambda c: self._store.record_lease(
                c, run_id=run_id, name=name, lease_id=lease_id, now=utcnow()
            )
        )

    def clear_lease(self, run_id: int, lease_id: str | None = None) -> None:
        self._db.write(lambda c: self._store.clear_lease(c, run_id=run_id, lease_id=lease_id))

    def leases_of(self, run_id: int) -> list[tuple[str, str]]:
        return self._db.read(lambda c: self._store.leases_of(c, run_id))
