"""A run's end: close the run and its job, then apply the retry and group rules in the
same transaction; or, after an infrastructure fault, the job back in the queue
(rules/faults.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.errors import StaleStateError
from scheduler_core.prepared import prepared
from scheduler_core.rules.retry import automatic_retry_at
from scheduler_core.statuses import JobRunStatus, JobStatus
from scheduler_core.store import rows
from scheduler_core.store.base import StoreBase
from scheduler_core.store.hot import (
    QUEUED,
    RUNNING,
    Hot,
    end_binds,
    ending,
    member_end,
    run_and_job_end,
    run_end,
)
from scheduler_core.tables import JOBS as J
from scheduler_core.tables import LEASES as L
from scheduler_core.tables import RUNS as R
from scheduler_core.values import Claim, Finish, Job, JobGroup, Outcome


def not_running(claim: Claim) -> StaleStateError:
    """A run's end found it no longer RUNNING."""
    return StaleStateError(
        f"job {claim.job.job_id} / run {claim.run.run_id} is no longer RUNNING; "
        "it was finished elsewhere (recovered as crashed?)"
    )


class FinishStore(StoreBase):
    if TYPE_CHECKING:  # JobsStore, GroupsStore

        def insert_linked_job(
            self,
            conn: Connection,
            original: Job,
            *,
            not_before: datetime | None,
            now: datetime,
            keep_group: bool = True,
        ) -> Job: ...

        def get_group(self, conn: Connection, group_id: int) -> JobGroup: ...

        def cancel_group(self, conn: Connection, group_id: int, *, now: datetime) -> JobGroup: ...

        def member_ended(
            self, conn: Connection, job: Job, *, group: JobGroup, retry: Job | None, now: datetime
        ) -> JobGroup: ...

    def finish(self, conn: Connection, claim: Claim, outcome: Outcome, *, now: datetime) -> Finish:
        """Close a RUNNING run and its job, then apply the retry and group rules. On
        PostgreSQL the end's statement takes the shared dispatch lock as well, for the
        claim that may follow in the transaction (store/claims.py)."""
        params = self.end_params(claim, outcome, now=now)
        group: JobGroup | None = None  # a member's, read with its end on PostgreSQL
        reads = self.plugins.end_reads("postgresql" if self.is_postgres else "sqlite")
        if not self.is_postgres:
            run_row = prepared(conn, ending(run_end, reads)).first(conn, params)
            ended = prepared(conn, Hot.finish_job).rowcount(conn, params)
        elif claim.job.group_id is None:
            run_row = prepared(conn, ending(run_and_job_end, reads)).first(conn, params)
            ended = 1
        else:
            params["b_group_id"] = claim.job.group_id
            run_row = prepared(conn, ending(member_end, reads)).first(conn, params)
            ended = 1
            if run_row is not None and run_row.group_id is not None:
                group = rows.value_in(JobGroup, run_row)
        if run_row is None or ended != 1:
            raise not_running(claim)
        return self.ended(conn, claim, outcome, params, run_row, group=group, reads=reads, now=now)

    @staticmethod
    def end_params(claim: Claim, outcome: Outcome, *, now: datetime) -> dict[str, Any]:
        """The bind values of `claim`'s end."""
        return end_binds(
            claim.run.run_id or 0,
            claim.job.job_id or 0,
            status=outcome.status.value,
            now=now,
            exit_code=outcome.exit_code,
            error=outcome.error,
            artifacts=list(outcome.artifacts),
        )

    def ended(
        self,
        conn: Connection,
        claim: Claim,
        outcome: Outcome,
        params: dict[str, Any],
        run_row: Any,
        *,
        group: JobGroup | None,
        reads: tuple[tuple[str, Any], ...],
        now: datetime,
    ) -> Finish:
        """The rest of an end, once its statement closed the run and the job (`run_row`:
        the run's flow run id and the plugins' reads): the retry and group rules and the
        plugins' hooks."""
        job_status = JobStatus(outcome.status.value)
        # A RUNNING job's row changes only here, its run's only here and in gaining a flow
        # run id (returned): the claimed values plus their ends are the rows.
        job = rows.changed(claim.job, status=job_status, finished_at=now)
        run = rows.changed(
            claim.run,
            status=outcome.status,
            finished_at=now,
            exit_code=outcome.exit_code,
            error=outcome.error,
            artifacts=params["b_artifacts"],
            flow_run_id=run_row.flow_run_id,
        )
        if group is None and job.group_id is not None:
            group = self.get_group(conn, job.group_id)
        retry_at = automatic_retry_at(
            job,
            policy=self.retry_policy,
            group_cancel_requested=group is not None and group.cancel_requested,
            now=now,
        )
        retry = (
            None
            if retry_at is None
            else self.insert_linked_job(conn, job, not_before=retry_at, now=now)
        )
        for label, _ in reads:  # for the plugins' hook, and for it alone
            conn.info[label] = getattr(run_row, label)
        try:
            self.plugins.on_terminal_run_in_tx(conn, job, run)
        finally:
            for label, _ in reads:
                conn.info.pop(label, None)
        if job.status == JobStatus.FAILED:
            self.plugins.on_retry_decided_in_tx(conn, job, retry)
        if group is not None and job.status == JobStatus.CANCELLED:
            group = self.cancel_group(conn, group.group_id or 0, now=now)  # the user's stop
        elif group is not None:
            group = self.member_ended(conn, job, group=group, retry=retry, now=now)
        return Finish(job=job, run=run, retry=retry, group=group)

    def retries(self, claim: Claim, outcome: Outcome, *, now: datetime) -> bool:
        """Would `claim`'s end, outside a group, queue an automatic retry?"""
        job = rows.changed(claim.job, status=JobStatus(outcome.status.value), finished_at=now)
        policy = self.retry_policy
        return (
            automatic_retry_at(job, policy=policy, group_cancel_requested=False, now=now)
            is not None
        )

    def requeue(self, conn: Connection, claim: Claim) -> Job:
        """RUNNING -> QUEUED after an infrastructure fault: the same job and attempt, in its
        place in line; its run row (and the leases it recorded) removed."""
        run_id = claim.run.run_id
        conn.execute(sa.delete(L).where(L.c.run_id == run_id))
        removed = conn.execute(
            sa.delete(R).where(R.c.run_id == run_id, R.c.status == JobRunStatus.RUNNING.value)
        ).rowcount
        back = conn.execute(
            sa.update(J)
            .where(J.c.job_id == claim.job.job_id, J.c.status == RUNNING)
            .values(status=QUEUED, started_at=None, worker_id=None)
            .returning(*J.c)
        ).first()
        if removed != 1 or back is None:
            raise StaleStateError(
                f"job {claim.job.job_id} / run {run_id} is no longer RUNNING; "
                "it was finished elsewhere"
            )
        return rows.job(back)
