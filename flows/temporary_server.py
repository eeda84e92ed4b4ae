"""Before a process that used Prefect's temporary server exits.

Without a configured server (`PREFECT_API_URL`), Prefect starts a temporary one for
the process and stops it at exit. Task runs reach that server as events, sent by a
background client and recorded by one of the server's services; stopping the server
while the last of them are in flight cancels the recording, which then fails with a
traceback on the terminal and the task runs stay unfinished in Prefect's database.
So the executor, as it closes, sends the events still queued here and waits, within a
deadline, for the server to have recorded the task runs of this process's latest
flow runs: each in a final state, and no new one appearing between two reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL

SETTLE_SECONDS = 10.0
"""The most a process waits at exit for the temporary server to record its task runs."""
POLL_SECONDS = 0.2


def in_use() -> bool:
    """No server is configured: Prefect's clients use the process's temporary one."""
    return not PREFECT_API_URL.value()


def send_queued_events(seconds: float = SETTLE_SECONDS) -> None:
    """The events Prefect's background client still holds, sent (from a thread with no
    running event loop)."""
    EventsWorker.drain_all(timeout=seconds, at_exit=False)


async def recorded(flow_run_ids: Sequence[UUID], *, seconds: float = SETTLE_SECONDS) -> bool:
    """Wait until the task runs of `flow_run_ids` are recorded: every one final, the same
    ones in two reads in a row. False if that took longer than `seconds`."""
    deadline = time.monotonic() + seconds
    runs = FlowRunFilter(id=FlowRunFilterId(any_=list(flow_run_ids)))
    seen: frozenset[tuple[UUID, str]] | None = None
    async with get_client() as client:
        while True:
            task_runs = await client.read_task_runs(flow_run_filter=runs)
            now = frozenset((t.id, t.state_type.value if t.state_type else "") for t in task_runs)
            final = all(t.state is not None and t.state.is_final() for t in task_runs)
            if final and now == seen:
                return True
            if time.monotonic() >= deadline:
                return False
            seen = now
            await asyncio.sleep(POLL_SECONDS)
