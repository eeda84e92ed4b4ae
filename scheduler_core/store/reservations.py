"""Direct-execution reservations (DEC-004): while one is active the queue pauses; it
expires after its TTL unless its holder's heartbeat extends it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.errors import ReservationNotFoundError
from scheduler_core.statuses import ReservationStatus
from scheduler_core.store.base import StoreBase
from scheduler_core.tables import RESERVATIONS as RES
from scheduler_core.values import Reservation

_ACTIVE = ReservationStatus.ACTIVE.value


class ReservationsStore(StoreBase):
    def insert_reservation(
        self, conn: Connection, *, reserved_by: str, worker_id: str, ttl: float, now: datetime
    ) -> Reservation:
        self._dispatch_lock(conn, exclusive=True)
        row = conn.execute(
            sa.insert(RES)
            .values(
                reserved_by=reserved_by,
                worker_id=worker_id,
                status=_ACTIVE,
                created_at=now,
                ttl_seconds=ttl,
                expires_at=now + timedelta(seconds=ttl),
            )
            .returning(*RES.c)
        ).one()
        return Reservation.model_validate(row._mapping)

    def active_reservations(self, conn: Connection, *, now: datetime) -> list[Reservation]:
        stmt = (
            sa.select(RES)
            .where(RES.c.status == _ACTIVE, RES.c.expires_at > now)
            .order_by(RES.c.reservation_id)
        )
        return [Reservation.model_validate(r._mapping) for r in conn.execute(stmt)]

    def release_reservation(self, conn: Connection, reservation_id: int, *, now: datetime) -> bool:
        """Release it; True if it was still in force (active and not expired)."""
        found = conn.execute(
            sa.select(RES.c.status, RES.c.expires_at).where(RES.c.reservation_id == reservation_id)
        ).first()
        if found is None:
            raise ReservationNotFoundError(f"reservation {reservation_id} does not exist")
        result = conn.execute(
            sa.update(RES)
            .where(RES.c.reservation_id == reservation_id, RES.c.status == _ACTIVE)
            .values(status=ReservationStatus.RELEASED.value, released_at=now)
        )
        return result.rowcount == 1 and found.expires_at > now

    def extend_reservations(self, conn: Connection, *, worker_id: str, now: datetime) -> None:
        """Heartbeat: push each live reservation's expiry to now + its own ttl."""
        live = conn.execute(
            sa.select(RES.c.reservation_id, RES.c.ttl_seconds).where(
                RES.c.worker_id == worker_id, RES.c.status == _ACTIVE, RES.c.expires_at > now
            )
        ).all()
        for reservation_id, ttl in live:
            conn.execute(
                sa.update(RES)
                .where(RES.c.reservation_id == reservation_id)
                .values(expires_at=now + timedelta(seconds=ttl))
            )

    def release_reservations_of(
        self, conn: Connection, worker_ids: Sequence[str], *, now: datetime
    ) -> int:
        result = conn.execute(
            sa.update(RES)
            .where(RES.c.worker_id.in_(worker_ids), RES.c.status == _ACTIVE)
            .values(status=ReservationStatus.RELEASED.value, released_at=now)
        )
        return int(result.rowcount)
