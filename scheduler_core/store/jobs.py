"""Jobs: queueing, reading, changing params while QUEUED, cancelling, and retry chains."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.errors import JobNotFoundError, JobNotQueuedError, ParamsImmutableError
from scheduler_core.prepared import prepared
from scheduler_core.rules import cancel, groups
from scheduler_core.rules.resources import class_of
from scheduler_core.rules.retry import retry_values
from scheduler_core.statuses import JobStatus
from scheduler_core.store import rows
from scheduler_core.store.base import StoreBase
from scheduler_core.store.hot import (
    IS_QUEUED,
    UNSET_JOB,
    Hot,
    dispatch_order,
    status_in,
    value_binds,
)
from scheduler_core.tables import JOBS as J
from scheduler_core.tables import PARTIAL_STATUSES
from scheduler_core.tables import RESOURCES as RC
from scheduler_core.values import Job, JobSpec, utcnow

IN_CHUNK = 500  # ids per IN (...) list: under every backend's bound-parameter limit


class JobsStore(StoreBase):
    def ensure_resources(self, conn: Connection, names: Iterable[str]) -> None:
        """Create the classes not known yet: uncapped, or an instance capped like its
        class (rules/resources.class_of)."""
        missing = set(names) - self._known_resources
        if missing:
            limits = self.resource_limits(conn) if any(map(class_of, missing)) else {}
            rows = [{"name": n, "limit": limits.get(class_of(n) or n)} for n in sorted(missing)]
            stmt = self._insert(RC).on_conflict_do_nothing(index_elements=["name"])
            conn.execute(stmt, rows)
            self._known_resources |= missing

    def set_resource_limit(self, conn: Connection, name: str, limit: int | None) -> None:
        self.ensure_resources(conn, [name])
        conn.execute(sa.update(RC).where(RC.c.name == name).values(limit=limit))

    def resource_limits(self, conn: Connection) -> dict[str, int | None]:
        return {r.name: r.limit for r in conn.execute(Hot.limits)}

    def insert_jobs(
        self,
        conn: Connection,
        specs: Sequence[JobSpec],
        *,
        group_id: int | None = None,
        now: datetime | None = None,
    ) -> list[Job]:
        now = now or utcnow()
        self.ensure_resources(conn, {s.resource for s in specs})
        first = self.positions.take(len(specs))
        new_rows = [
            {
                "job_type": s.job_type,
                "params": s.params,
                "priority": s.priority,
                "position": s.position if s.position is not None else first + i,
                "status": JobStatus.QUEUED.value,
                "resource": s.resource,
                "held": group_id is not None and groups.held_on_insert(i),
                "group_id": group_id,
                "sequence": i if group_id is not None else None,
                "attempt": 1,
                "max_retries": s.max_retries,
                "not_before": s.not_before,
                "origin": s.origin.value,
                "created_at": now,
                "queued_at": now,
                "timeout_seconds": s.timeout_seconds,
                "cancel_requested": False,
                "external_id": s.external_id,
                "key": s.key,
            }
            for i, s in enumerate(specs)
        ]
        if len(new_rows) == 1:  # enqueue_job: the hot path
            insert = prepared(conn, Hot.insert_one_job)
            ids = [insert.scalar(conn, value_binds(new_rows[0]))]
        else:
            ids = list(conn.execute(Hot.insert_job, new_rows).scalars().all())
        # The rows are known: build the values here instead of reading them back.
        return [
            rows.value(Job, {**row, "job_id": job_id, **UNSET_JOB})
            for row, job_id in zip(new_rows, ids, strict=True)
        ]

    def insert_linked_job(
        self,
        conn: Connection,
        original: Job,
        *,
        not_before: datetime | None,
        now: datetime,
        keep_group: bool = True,
    ) -> Job:
        """A retry of `original` (rules/retry.py says what it copies)."""
        values = retry_values(original, not_before=not_before, now=now, keep_group=keep_group)
        return rows.job(conn.execute(sa.insert(J).values(**values).returning(*J.c)).one())

    def get_job(self, conn: Connection, job_id: int) -> Job:
        row = conn.execute(sa.select(J).where(J.c.job_id == job_id)).first()
        if row is None:
            raise JobNotFoundError(f"job {job_id} does not exist")
        return rows.job(row)

    def list_jobs(
        self,
        conn: Connection,
        *,
        statuses: Sequence[JobStatus] | None = None,
        job_type: str | None = None,
        group_id: int | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        stmt = sa.select(J)
        if statuses:
            stmt = stmt.where(status_in(s.value for s in statuses))
        if job_type:
            stmt = stmt.where(J.c.job_type == job_type)
        if group_id is not None:
            stmt = stmt.where(J.c.group_id == group_id)
        order: Any = J.c.job_id
        if statuses and len(statuses) == 1 and statuses[0] in PARTIAL_STATUSES:
            # Not in the primary key's order: with it, SQLite reads the whole table in
            # that order rather than the status's partial index and a sort of its few.
            order = J.c.job_id + 0
        stmt = stmt.order_by(order)
        if limit:
            stmt = stmt.limit(limit)
        return [rows.job(r) for r in conn.execute(stmt)]

    def queued_in_dispatch_order(self, conn: Connection) -> list[Job]:
        stmt = sa.select(J).where(IS_QUEUED).order_by(*dispatch_order())
        return [rows.job(r) for r in conn.execute(stmt)]

    def update_params(
        self, conn: Connection, job_id: int, params: dict[str, Any], *, resource: str
    ) -> Job:
        """INV-001: params change only while the job is QUEUED."""
        self.ensure_resources(conn, [resource])
        return self._update_queued(
            conn, job_id, "params", ParamsImmutableError, params=params, resource=resource
        )

    def set_priority(self, conn: Connection, job_id: int, priority: int) -> Job:
        return self._update_queued(conn, job_id, "priority", JobNotQueuedError, priority=priority)

    def _update_queued(
        self,
        conn: Connection,
        job_id: int,
        what: str,
        error: type[JobNotQueuedError],
        **values: Any,
    ) -> Job:
        stmt = (
            sa.update(J)
            .where(J.c.job_id == job_id, J.c.status == JobStatus.QUEUED.value)
            .values(**values)
            .returning(*J.c)
        )
        row = conn.execute(stmt).first()
        if row is None:
            job = self.get_job(conn, job_id)
            raise error(
                f"job {job_id} is {job.status.value}: its {what} can only change while it is "
                "QUEUED (INV-001)"
            )
        return rows.job(row)

    def cancel_job(self, conn: Connection, job_id: int, *, now: datetime) -> Job:
        """A QUEUED job ends CANCELLED; a RUNNING one is marked for its worker to stop."""
        stmt = (
            sa.update(J)
            .where(J.c.job_id == job_id, J.c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELLED.value, finished_at=now)
            .returning(*J.c)
        )
        row = conn.execute(stmt).first()
        if row is None:
            row = conn.execute(
                sa.update(J)
                .where(J.c.job_id == job_id, J.c.status == JobStatus.RUNNING.value)
                .values(cancel_requested=True)
                .returning(*J.c)
            ).first()
            if row is None:
                raise cancel.refusal(self.get_job(conn, job_id))
            return rows.job(row)
        job = rows.job(row)
        self.plugins.on_cancelled_in_tx(conn, job)
        if job.group_id is not None:
            self.member_cancelled(conn, job, now=now)
        return job

    def cancel_requested(self, conn: Connection, job_ids: Sequence[int]) -> list[int]:
        """Which of these (RUNNING) jobs a user asked to cancel."""
        return list(
            conn.execute(
                sa.select(J.c.job_id).where(J.c.job_id.in_(job_ids), J.c.cancel_requested.is_(True))
            ).scalars()
        )

    def job_by_key(self, conn: Connection, key: str) -> Job | None:
        row = conn.execute(sa.select(J).where(J.c.key == key)).first()
        return None if row is None else rows.job(row)

    def jobs_by_external_id(self, conn: Connection, external_ids: Sequence[str]) -> list[Job]:
        found: list[Job] = []
        for start in range(0, len(external_ids), IN_CHUNK):
            chunk = external_ids[start : start + IN_CHUNK]
            found += [
                rows.job(r) for r in conn.execute(sa.select(J).where(J.c.external_id.in_(chunk)))
            ]
        return found

    def set_external_id(
        self, conn: Connection, job_id: int, external_id: str | None, *, replace: bool = False
    ) -> bool:
        """Give a job its external id (or move one to it); False if the job has one and
        `replace` is not set."""
        if external_id is not None:
            conn.execute(
                sa.update(J)
                .where(J.c.external_id == external_id, J.c.job_id != job_id)
                .values(external_id=None)
            )
        which = J.c.job_id == job_id
        if not replace:
            which = which & J.c.external_id.is_(None)
        done = conn.execute(sa.update(J).where(which).values(external_id=external_id)).rowcount
        return bool(done)

    def queued_without_external_id(self, conn: Connection, limit: int) -> list[Job]:
        """Queued jobs not yet known outside, in dispatch order."""
        stmt = (
            sa.select(J)
            .where(IS_QUEUED, J.c.external_id.is_(None))
            .order_by(*dispatch_order())
            .limit(limit)
        )
        return [rows.job(r) for r in conn.execute(stmt)]

    if TYPE_CHECKING:  # GroupsStore

        def member_cancelled(self, conn: Connection, job: Job, *, now: datetime) -> None: ...

    def retry_chain(self, conn: Connection, job_id: int) -> list[Job]:
        """The original of `job_id` and every job linked to it by retry_of, in id order.

        Manual retries can branch the chain (two retries of one failed run); all are listed.
        """
        root = self.get_job(conn, job_id)
        while root.retry_of is not None:
            root = self.get_job(conn, root.retry_of)
        chain, frontier = [root], [root.job_id]
        while frontier:
            found = [
                rows.job(r) for r in conn.execute(sa.select(J).where(J.c.retry_of.in_(frontier)))
            ]
            chain.extend(found)
            frontier = [j.job_id for j in found]
        return sorted(chain, key=lambda j: j.job_id or 0)
