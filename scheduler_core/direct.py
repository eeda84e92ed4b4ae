"""Direct execution (DEC-004): reserve the next slot, which pauses the queue, wait for
a free slot without preempting anything, run, release. Order: running work, then the
direct job, then the rest of the queue."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from scheduler_core.deadlines import check_timeout
from scheduler_core.errors import InvalidJobError, ReservationTimeoutError
from scheduler_core.statuses import JobOrigin
from scheduler_core.validation import check_id, check_optional_id, check_text
from scheduler_core.values import Claim, Claims, Finish, JobRun, JobSpec, Reservation, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from scheduler_core.database import Database
    from scheduler_core.membership import Membership
    from scheduler_core.registry import Registry
    from scheduler_core.settings import SchedulerSettings
    from scheduler_core.signal import Signal
    from scheduler_core.store import Store
    from scheduler_core.validation import SpecBuilder

log = logging.getLogger("scheduler_core")


class DirectExecution:
    """The direct-execution part of SchedulerService."""

    if TYPE_CHECKING:  # set by SchedulerService
        db: Database
        settings: SchedulerSettings
        store: Store
        specs: SpecBuilder
        registry: Registry
        signal: Signal
        membership: Membership
        worker_id: str
        max_id: int

        def execute_claim(
            self, claim: Claim, *, until: threading.Event | None = None
        ) -> Finish: ...

        def _claimed(self, claim: Callable[[Connection], Claims]) -> Claims: ...

    def reserve_next_slot(self, reserved_by: str, *, ttl: float | None = None) -> Reservation:
        """Pause queue dispatch and claim the next free slot for a direct execution.

        While this process lives its heartbeat keeps the reservation alive; if it
        vanishes the reservation expires `ttl` seconds (default reservation_ttl) later.
        Every argument is checked before anything is written (the worker row included).
        """
        check_text(reserved_by, name="reserved_by", limit=256)
        seconds = check_timeout(ttl, name="ttl", error=InvalidJobError)
        if seconds is None:
            seconds = self.settings.reservation_ttl
        self.membership.register(slots=self.membership.slots or 0)
        reservation = self.db.write(
            lambda c: self.store.insert_reservation(
                c, reserved_by=reserved_by, worker_id=self.worker_id, ttl=seconds, now=utcnow()
            )
        )
        log.info(
            "action=reserve reservation_id=%s reserved_by=%s",
            reservation.reservation_id,
            reserved_by,
        )
        return reservation

    def has_active_reservation(self) -> bool:
        return bool(self.active_reservations())

    def active_reservations(self) -> list[Reservation]:
        return self.db.read(lambda c: self.store.active_reservations(c, now=utcnow()))

    def release_reservation(self, reservation_id: int) -> bool:
        """Release a reservation; the queue resumes. False if it had already ended."""
        check_id(reservation_id, name="reservation_id", high=self.max_id)
        released = self.db.write(
            lambda c: self.store.release_reservation(c, reservation_id, now=utcnow())
        )
        self.signal.notify()
        return released

    def execute_direct(
        self,
        job_type: str,
        params: Mapping[str, Any] | None = None,
        *,
        reserved_by: str = "direct",
        priority: int = 0,
        max_retries: int | None = None,
        timeout: float | None = None,
        reservation_id: int | None = None,
        timeout_seconds: float | None = None,
    ) -> JobRun:
        """Run a job now, in this thread, in the next free slot, without preempting anything.

        Order: running work finishes, then this job, then the rest of the queue.
        """
        spec = self.specs.build(
            job_type,
            {} if params is None else params,
            priority=priority,
            max_retries=max_retries,
            origin=JobOrigin.DIRECT,
            timeout_seconds=timeout_seconds,
        )
        check_text(reserved_by, name="reserved_by", limit=256)
        check_timeout(timeout, name="timeout", error=InvalidJobError)
        check_optional_id(reservation_id, name="reservation_id", high=self.max_id)
        own = reservation_id is None
        rid = reservation_id or self.reserve_next_slot(reserved_by).reservation_id
        assert rid is not None
        try:
            return self.execute_claim(self._wait_for_slot(spec, rid, timeout)).run
        finally:
            if own:
                self.release_reservation(rid)

    def _wait_for_slot(self, spec: JobSpec, reservation_id: int, timeout: float | None) -> Claim:
        """Claim the direct job as soon as its reservation is first and a slot is free."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self.signal.version
            claim = self._claimed(
                lambda c: Claims.of(
                    self.store.claim_direct(
                        c,
                        spec,
                        reservation_id=reservation_id,
                        worker_id=self.worker_id,
                        heartbeat_timeout=self.settings.heartbeat_timeout,
                        now=utcnow(),
                        bindings=self.registry.bindings,
                    )
                )
            ).first
            if claim is not None:
                return claim
            wait = self.settings.direct_poll_interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReservationTimeoutError(
                        f"no free slot for direct {spec.job_type!r} job within {timeout}s; "
                        "running work is never preempted: retry later or raise the timeout"
                    )
                wait = min(wait, remaining)
            self.signal.wait(seen, wait)
