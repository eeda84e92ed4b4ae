"""Claims: QUEUED -> RUNNING for the next eligible job, or for a direct execution.

On SQLite a claim is a select of the first head (store/hot.py `first_head`) and its
start, under the write lock the transaction took up front. On PostgreSQL concurrent
claims skip each other's locked heads (`FOR UPDATE SKIP LOCKED`), capped resources are
serialised by a lock on their resource row, and an advisory lock orders claims against
reservations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.errors import ReservationNotFoundError, StaleStateError
from scheduler_core.prepared import prepared
from scheduler_core.rules import resources
from scheduler_core.rules.ordering import dispatch_key
from scheduler_core.statuses import JobStatus, WorkerStatus
from scheduler_core.store import rows
from scheduler_core.store.base import StoreBase
from scheduler_core.store.hot import (
    UNSET_RUN,
    Bindings,
    Hot,
    first_head,
    heads_skip_locked,
    run_values,
    slot_name,
    start_binds,
    status_in,
    type_params,
    value_binds,
)
from scheduler_core.tables import RESERVATIONS as RES
from scheduler_core.tables import WORKERS as W
from scheduler_core.values import Claim, Claims, Job, JobRun, JobSpec, Reservation, utcnow


class ClaimsStore(StoreBase):
    if TYPE_CHECKING:  # JobsStore, ReservationsStore

        def insert_jobs(
            self, conn: Connection, specs: Sequence[JobSpec], *, now: datetime | None = None
        ) -> list[Job]: ...

        def resource_limits(self, conn: Connection) -> dict[str, int | None]: ...

        def active_reservations(self, conn: Connection, *, now: datetime) -> list[Reservation]: ...

        def params_at_start(self, conn: Connection, job: Job) -> dict[str, Any]: ...

    def claim_next(
        self,
        conn: Connection,
        *,
        worker_id: str,
        job_types: Sequence[str],
        now: datetime,
        bindings: Bindings = (),
    ) -> Claim | None:
        """Claim the next eligible job for this worker, or None when nothing may run.

        `bindings`: the worker's instances of resource classes (Registry.bind); a job of
        a bound class occupies, and is capped by, the worker's instance of it.
        """
        return self.claim_many(
            conn, 1, worker_id=worker_id, job_types=job_types, now=now, bindings=bindings
        ).first

    def claim_many(
        self,
        conn: Connection,
        count: int,
        *,
        worker_id: str,
        job_types: Sequence[str],
        now: datetime,
        bindings: Bindings = (),
        after_end: bool = False,
    ) -> Claims:
        """Up to `count` claims in one transaction, as `count` claim_next calls in a row
        would make them (dispatch order, caps, reservations), for slots that are free
        together. On PostgreSQL the heads are read in one statement and the dispatch
        lock taken once; `after_end`: the transaction recorded a run's end already
        (store/finish.py), whose statement took that lock."""
        claims = Claims()
        if not job_types or count < 1:
            return claims
        if not self.is_postgres:
            while len(claims) < count:
                head = self._first_head(conn, job_types=job_types, now=now, bindings=bindings)
                if head is None:
                    break
                slot = slot_name(head.resource, bindings)
                claims.append(
                    self._start(conn, head.job_id, slot=slot, worker_id=worker_id, now=now)
                )
            return claims
        if not after_end:
            self._dispatch_lock(conn, exclusive=False)
        state = prepared(conn, heads_skip_locked(len(job_types), bindings)).all(
            conn, {**type_params(job_types), "now": now, "n": count}
        )
        if not state or state[0].reserved:
            return claims
        claims.passed_over = any(r.passed_over for r in state)
        capped = {r.class_name: r.class_limit for r in state if r.class_limit is not None}
        locked: set[str] = set()  # capped slots whose row this transaction locked
        full: set[str] = set()
        for head in sorted((r for r in state if r.job_id is not None), key=dispatch_key):
            if len(claims) == count:
                break
            slot = slot_name(head.resource, bindings)
            limit = capped.get(head.resource)
            if slot in full:
                continue
            if limit is not None and slot not in locked:
                # Claims of the slot wait here until this one commits; the start then
                # counts its RUNNING jobs in a snapshot taken after the lock.
                prepared(conn, Hot.lock_resource).execute(conn, {"resource": slot})
                locked.add(slot)
            job = rows.value_in(Job, head)
            claim = self._start_with_run(
                conn, job, slot=slot, limit=limit, worker_id=worker_id, now=now
            )
            if claim is None:
                full.add(slot)
            else:
                claims.append(claim)
        return claims

    def has_claimable(
        self,
        conn: Connection,
        *,
        job_types: Sequence[str],
        now: datetime,
        bindings: Bindings = (),
    ) -> bool:
        """Would claim_next claim a job now, row locks aside? (Read only: a claim still
        checks.)"""
        if not job_types:
            return False
        return self._first_head(conn, job_types=job_types, now=now, bindings=bindings) is not None

    @staticmethod
    def _first_head(
        conn: Connection, *, job_types: Sequence[str], now: datetime, bindings: Bindings
    ) -> Any | None:
        """The first job, in dispatch order, that a claim would start now (its id and
        resource), or None: the SQLite claim's head, and on both backends `has_claimable`."""
        params: dict[str, Any] = {**type_params(job_types), "now": now}
        return prepared(conn, first_head(len(job_types), bindings)).first(conn, params)

    def _running_in(self, conn: Connection, slot: str) -> int:
        """The RUNNING jobs of a capped slot; on PostgreSQL with the slot's row locked, so
        that claims of the slot are serialised across processes until this one commits."""
        if self.is_postgres:
            prepared(conn, Hot.lock_resource).execute(conn, {"resource": slot})
        return int(prepared(conn, Hot.running_of).scalar(conn, {"resource": slot}))

    def _slot_is_full(self, conn: Connection, slot: str, limit: int) -> bool:
        return not resources.has_room(limit=limit, running=self._running_in(conn, slot))

    def _start(
        self, conn: Connection, job_id: int, *, slot: str, worker_id: str, now: datetime
    ) -> Claim:
        """QUEUED -> RUNNING plus its JobRun; the run's log path is fixed here, once.

        The start time is read here, after every lock of the claim is held, so a job
        never appears to start before the run whose end made room for it.
        """
        now = max(now, utcnow())
        params = start_binds(job_id, now=now, worker_id=worker_id, slot=slot)
        row = prepared(conn, Hot.start_job).first(conn, params)
        if row is None:
            raise left_queued(job_id)
        return self._started(conn, rows.job(row), worker_id=worker_id, now=now)

    def _start_with_run(
        self,
        conn: Connection,
        job: Job,
        *,
        slot: str,
        limit: int | None,
        worker_id: str,
        now: datetime,
    ) -> Claim | None:
        """PostgreSQL: `_start` of `job` (its row as queued, locked by this transaction)
        and its group's start, in one round trip. With a cap (`limit`), only if the slot,
        locked by the caller, has room (rules/resources.py `has_room`, counted by the
        statement in a snapshot taken after that lock); None if it has none."""
        now = max(now, utcnow())
        values = self.run_values_of(conn, job, worker_id=worker_id, now=now)
        params = value_binds(values)
        params.update(start_binds(job.job_id or 0, now=now, worker_id=worker_id, slot=slot))
        if limit is None:
            row = prepared(conn, Hot.start_job_with_run).first(conn, params)
        else:
            params["b_limit"] = limit
            row = prepared(conn, Hot.start_capped_job_with_run).first(conn, params)
            if row is None:  # the job is locked here, so still QUEUED: the slot is full
                return None
        if row is None:
            raise left_queued(job.job_id)
        return self.claim_of(
            job, values, slot=slot, worker_id=worker_id, now=now, run_id=row.run_id
        )

    @staticmethod
    def claim_of(
        job: Job, values: dict[str, Any], *, slot: str, worker_id: str, now: datetime, run_id: int
    ) -> Claim:
        """The claim of `job` (its row as queued), started now with the run of `values`
        (`run_values`) as `run_id`: built from what was written, not read back."""
        started = rows.changed(
            job, status=JobStatus.RUNNING, started_at=now, worker_id=worker_id, slot=slot
        )
        return _claim(started, values, run_id=run_id)  # and its group started

    def run_values_of(
        self, conn: Connection, job: Job, *, worker_id: str, now: datetime
    ) -> dict[str, Any]:
        """The new JobRun row of `job`, starting now: its params with earlier members'
        outputs in place of references (store/groups.py)."""
        return run_values(
            job.job_id or 0,
            now=now,
            worker_id=worker_id,
            params=self.params_at_start(conn, job),
            log_path=self.log_path_for(job),
        )

    def _started(self, conn: Connection, job: Job, *, worker_id: str, now: datetime) -> Claim:
        """The rest of a start: the job's JobRun, and its group's start."""
        values = self.run_values_of(conn, job, worker_id=worker_id, now=now)
        insert = prepared(conn, Hot.insert_run)
        run_id = insert.scalar(conn, value_binds(values))
        if job.group_id is not None:
            prepared(conn, Hot.start_group).execute(
                conn, {"b_group_id": job.group_id, "b_now": now}
            )
        return _claim(job, values, run_id=run_id)

    def claim_direct(
        self,
        conn: Connection,
        spec: JobSpec,
        *,
        reservation_id: int,
        worker_id: str,
        heartbeat_timeout: float,
        now: datetime,
        bindings: Bindings = (),
    ) -> Claim | None:
        """Start a direct job if its reservation is first in line and a slot is free."""
        self._dispatch_lock(conn, exclusive=True)
        active = self.active_reservations(conn, now=now)
        if not any(r.reservation_id == reservation_id for r in active):
            raise ReservationNotFoundError(
                f"reservation {reservation_id} is not active (released or expired)"
            )
        if active[0].reservation_id != reservation_id:
            return None
        running = conn.execute(
            sa.select(sa.func.count()).where(status_in([JobStatus.RUNNING.value]))
        ).scalar_one()
        live_slots = self.live_slots(conn, now=now, heartbeat_timeout=heartbeat_timeout)
        if not resources.direct_has_room(running=running, live_slots=live_slots):
            return None
        slot = dict(bindings).get(spec.resource, spec.resource)
        limit = self.resource_limits(conn).get(spec.resource)
        if limit is not None and self._slot_is_full(conn, slot, limit):
            return None
        (job,) = self.insert_jobs(conn, [spec], now=now)
        if self.is_postgres:
            claim = self._start_with_run(
                conn, job, slot=slot, limit=None, worker_id=worker_id, now=now
            )
        else:
            claim = self._start(conn, job.job_id or 0, slot=slot, worker_id=worker_id, now=now)
        assert claim is not None, "an uncapped start returns its claim or raises"
        conn.execute(
            sa.update(RES)
            .where(RES.c.reservation_id == reservation_id)
            .values(job_id=claim.job.job_id)
        )
        return claim

    def live_slots(self, conn: Connection, *, now: datetime, heartbeat_timeout: float) -> int:
        """Slots of the workers whose heartbeat is fresh."""
        fresh = now - timedelta(seconds=heartbeat_timeout)
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(W.c.slots), 0)).where(
                W.c.status == WorkerStatus.RUNNING.value, W.c.heartbeat_at >= fresh
            )
        ).scalar_one()
        return int(total)


def left_queued(job_id: int | None) -> StaleStateError:
    return StaleStateError(f"job {job_id} left QUEUED while being claimed")


def _claim(job: Job, values: dict[str, Any], *, run_id: int) -> Claim:
    """The claim of a started job: its run built from the values inserted, not read back."""
    return Claim(job=job, run=rows.value(JobRun, {**values, **UNSET_RUN, "run_id": run_id}))
