"""The store: every state change as one named method, and the only code that writes SQL.

Each method takes an open write transaction. A state change is a conditional
``UPDATE ... WHERE status = <expected>`` whose row count is checked, so an illegal
transition fails loudly instead of overwriting. What follows from a change (a retry,
the next group member, skipped members, the group's end) is decided by rules/ and
written in the same transaction. One module per concern:

- jobs.py: queueing, reading, params, cancel, retry chains
- claims.py: QUEUED -> RUNNING (queue and direct), live capacity
- finish.py: RUNNING -> terminal, with the retry and group rules
- cycle.py: on PostgreSQL, a slot's end and next claim in one server call
- groups.py: group rows, member end/cancel, skip, finalize
- reservations.py, workers.py, leases.py: the rest of the records
- hot.py: the prebuilt dispatch-path statements; rows.py: rows as values
"""

from __future__ import annotations

from scheduler_core.store.claims import ClaimsStore
from scheduler_core.store.cycle import CycleStore
from scheduler_core.store.finish import FinishStore
from scheduler_core.store.groups import GroupsStore
from scheduler_core.store.jobs import JobsStore
from scheduler_core.store.leases import LeasesStore
from scheduler_core.store.reservations import ReservationsStore
from scheduler_core.store.workers import WorkersStore


class Store(
    JobsStore,
    CycleStore,
    ClaimsStore,
    FinishStore,
    GroupsStore,
    ReservationsStore,
    WorkersStore,
    LeasesStore,
):
    """All of the above on one object, as the service uses it."""


__all__ = ["Store"]
