"""Job groups: their rows, and what a member's end or cancel writes (rules/groups.py
decides which)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core import references
from scheduler_core.errors import GroupNotFoundError
from scheduler_core.prepared import prepared
from scheduler_core.rules import groups
from scheduler_core.rules.groups import GroupStep
from scheduler_core.statuses import JobGroupStatus, JobOrigin, JobRunStatus, JobStatus
from scheduler_core.store import rows
from scheduler_core.store.base import StoreBase
from scheduler_core.store.hot import Hot
from scheduler_core.tables import GROUPS as G
from scheduler_core.tables import JOBS as J
from scheduler_core.tables import RUNS as R
from scheduler_core.values import Job, JobGroup, JobSpec


class GroupsStore(StoreBase):
    if TYPE_CHECKING:  # JobsStore

        def insert_jobs(
            self,
            conn: Connection,
            specs: Sequence[JobSpec],
            *,
            group_id: int | None = None,
            now: datetime | None = None,
        ) -> list[Job]: ...

        def get_job(self, conn: Connection, job_id: int) -> Job: ...

    def insert_group(
        self,
        conn: Connection,
        *,
        name: str,
        specs: Sequence[JobSpec],
        now: datetime,
        key: str | None = None,
    ) -> tuple[JobGroup, list[Job]]:
        origin = specs[0].origin if specs else JobOrigin.QUEUE
        row = conn.execute(
            sa.insert(G)
            .values(
                name=name,
                status=JobGroupStatus.QUEUED.value,
                size=len(specs),
                cancel_requested=False,
                origin=origin.value,
                key=key,
                created_at=now,
            )
            .returning(*G.c)
        ).one()
        group = rows.group(row)
        jobs = self.insert_jobs(conn, specs, group_id=group.group_id, now=now)
        return group, jobs

    def group_by_key(self, conn: Connection, key: str) -> tuple[JobGroup, list[Job]] | None:
        row = conn.execute(sa.select(G).where(G.c.key == key)).first()
        if row is None:
            return None
        members = conn.execute(
            sa.select(J)
            .where(J.c.group_id == row.group_id, J.c.retry_of.is_(None))
            .order_by(J.c.sequence)
        )
        return rows.group(row), [rows.job(m) for m in members]

    def get_group(self, conn: Connection, group_id: int) -> JobGroup:
        row = prepared(conn, Hot.get_group).first(conn, {"b_group_id": group_id})
        if row is None:
            raise GroupNotFoundError(f"job group {group_id} does not exist")
        return rows.group(row)

    def params_at_start(self, conn: Connection, job: Job) -> dict[str, Any]:
        """The params `job` starts with (its run's snapshot): each reference to an earlier
        member's outputs replaced by that member's last COMPLETED run's artifacts, across
        its retries (references.py). A reference whose member has none stays in place."""
        params = dict(job.params)
        if job.group_id is None and job.retry_of is None:  # only members hold references
            return params
        wanted = references.wanted(params)
        if not wanted:
            return params
        group_id = job.group_id
        origin = job
        while group_id is None and origin.retry_of is not None:  # a manual retry's group
            origin = self.get_job(conn, origin.retry_of)
            group_id = origin.group_id
        outputs: dict[int, list[str]] = {}
        for member in sorted(wanted):
            found = conn.execute(
                sa.select(R.c.artifacts)
                .select_from(R.join(J, R.c.job_id == J.c.job_id))
                .where(
                    J.c.group_id == group_id,
                    J.c.sequence == member,
                    R.c.status == JobRunStatus.COMPLETED.value,
                )
                .order_by(R.c.run_id.desc())
                .limit(1)
            ).first()
            if found is not None:
                outputs[member] = list(found.artifacts)
        return references.resolve(params, outputs)

    def member_ended(
        self, conn: Connection, job: Job, *, group: JobGroup, retry: Job | None, now: datetime
    ) -> JobGroup:
        """After a member's run ended: wait for its retry, release the next member, or
        skip the rest; then finalize the group if every member is terminal."""
        step = groups.after_member_end(job, group=group, retry_created=retry is not None)
        return self._apply(conn, step, job, group=group, now=now)

    def member_cancelled(self, conn: Connection, job: Job, *, now: datetime) -> None:
        assert job.group_id is not None
        group = self.get_group(conn, job.group_id)
        self._apply(
            conn, groups.after_member_cancelled(job, group=group), job, group=group, now=now
        )

    def _apply(
        self, conn: Connection, step: GroupStep, job: Job, *, group: JobGroup, now: datetime
    ) -> JobGroup:
        if step == GroupStep.WAIT:
            return group
        if step == GroupStep.SKIP_REST:
            self._skip_rest(conn, job, now=now)
        elif step == GroupStep.RELEASE_NEXT and self._release_next(conn, job):
            return group
        return self._finalize_if_done(conn, group.group_id or 0, now=now)

    def _release_next(self, conn: Connection, job: Job) -> bool:
        """Release the next queued member after `job`; False if there is none."""
        params = {"b_group_id": job.group_id, "b_sequence": job.sequence}
        return prepared(conn, Hot.release_next).first(conn, params) is not None

    def _skip_rest(self, conn: Connection, failed: Job, *, now: datetime) -> None:
        skipped_rows = conn.execute(
            sa.update(J)
            .where(
                J.c.group_id == failed.group_id,
                J.c.status == JobStatus.QUEUED.value,
                J.c.sequence > failed.sequence,
            )
            .values(status=JobStatus.SKIPPED.value, held=False, finished_at=now)
            .returning(*J.c)
        ).all()
        error = groups.skip_error(failed)
        for row in sorted(skipped_rows, key=lambda r: (r.sequence, r.job_id)):
            skipped = rows.job(row)
            run_row = conn.execute(
                sa.insert(R)
                .values(
                    job_id=skipped.job_id,
                    status=JobRunStatus.SKIPPED.value,
                    started_at=None,
                    finished_at=now,
                    error=error,
                    artifacts=[],
                    params_snapshot=skipped.params,
                )
                .returning(*R.c)
            ).one()
            self.plugins.on_terminal_run_in_tx(conn, skipped, rows.run(run_row))

    def _finalize_if_done(self, conn: Connection, group_id: int, *, now: datetime) -> JobGroup:
        """Write the group's terminal status once every member is terminal, never before."""
        group = self.get_group(conn, group_id)
        members = conn.execute(
            sa.select(J.c.sequence, J.c.status).where(J.c.group_id == group_id)
        ).all()
        status = groups.outcome(group, ((seq, JobStatus(s)) for seq, s in members))
        if status is None:
            return group
        row = conn.execute(
            sa.update(G)
            .where(
                G.c.group_id == group_id,
                G.c.status.in_([JobGroupStatus.QUEUED.value, JobGroupStatus.RUNNING.value]),
            )
            .values(status=status.value, finished_at=now)
            .returning(*G.c)
        ).one()
        group = rows.group(row)
        self.plugins.on_group_end_in_tx(conn, group)
        return group

    def cancel_group(self, conn: Connection, group_id: int, *, now: datetime) -> JobGroup:
        """Cancel the queued members and mark a running one for its worker to stop; the
        group ends CANCELLED once every member has ended."""
        group = self.get_group(conn, group_id)
        if group.status.is_terminal:
            return group
        cancelled = conn.execute(
            sa.update(J)
            .where(J.c.group_id == group_id, J.c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELLED.value, finished_at=now)
            .returning(*J.c)
        ).all()
        for row in sorted(cancelled, key=lambda r: (r.sequence, r.job_id)):
            self.plugins.on_cancelled_in_tx(conn, rows.job(row))
        conn.execute(
            sa.update(J)
            .where(J.c.group_id == group_id, J.c.status == JobStatus.RUNNING.value)
            .values(cancel_requested=True)
        )
        conn.execute(sa.update(G).where(G.c.group_id == group_id).values(cancel_requested=True))
        return self._finalize_if_done(conn, group_id, now=now)
