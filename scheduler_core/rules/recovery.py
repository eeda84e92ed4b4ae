"""DEC-008 crash recovery: which RUNNING jobs belong to dead workers, and how their runs
end. Jobs of live workers are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from scheduler_core.statuses import JobRunStatus, WorkerStatus
from scheduler_core.values import Outcome, Worker

IsAlive = Callable[[Worker | None], bool]


def owner_is_dead(
    worker_id: str | None, *, workers: Mapping[str, Worker], me: str, is_alive: IsAlive
) -> bool:
    """A job's owner is dead unless it is this process or a live registered worker."""
    if worker_id == me:
        return False
    return not is_alive(workers.get(worker_id) if worker_id else None)


def dead_workers(workers: Mapping[str, Worker], *, me: str, is_alive: IsAlive) -> list[str]:
    """Workers still registered as RUNNING that are dead: to be marked DEAD and their
    reservations released."""
    return sorted(
        worker_id
        for worker_id, worker in workers.items()
        if worker.status == WorkerStatus.RUNNING
        and owner_is_dead(worker_id, workers=workers, me=me, is_alive=is_alive)
    )


def crashed(worker_id: str | None, worker: Worker | None) -> Outcome:
    """The end of a dead worker's run: FAILED, saying it was recovered after a crash; the
    retry rule applies as to any failure."""
    where = f"{worker.host} pid {worker.pid}" if worker else "unknown"
    return Outcome(
        status=JobRunStatus.FAILED,
        error=(
            f"recovered after crash: worker {worker_id} ({where}) died while the job was RUNNING"
        ),
    )
