"""The single-Ollama rule inside the flow: a Prefect global concurrency limit per Ollama
server, `ollama@<host>:<port>` (ollama_servers.py), of 1.

The dispatcher already never starts a second job on a server's slot; this guard makes
the rule hold for any flow run that calls the server, scheduled or not. It is strict: a
missing limit is an error, never a silent unguarded run (Prefect's default only warns).

The lease id is reported to the executor as soon as it is granted, so that crash
recovery can release exactly that lease instead of leaving it to expire.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.asyncio import concurrency
from prefect.concurrency.context import ConcurrencyContext
from prefect.exceptions import ObjectNotFound

from flows.ollama_servers import ollama_slot_name
from scheduler_core.errors import ConfigurationError

log = logging.getLogger("flows.guard")

LEASE_SECONDS = 60.0

LeaseListener = Callable[[str, UUID | None], None]
# Set by the executor around a flow run: called with the limit's name and the lease id when
# granted, None when released.
lease_listener: ContextVar[LeaseListener | None] = ContextVar("lease_listener", default=None)


class OllamaLimitMissingError(RuntimeError):
    """The Ollama server's global concurrency limit does not exist on the Prefect server."""


@asynccontextmanager
async def ollama_slot(
    *, server: str | None = None, timeout_seconds: float | None = None
) -> AsyncIterator[None]:
    """Hold the one slot of the Ollama server `server` (`host:port`; default: the one this
    process calls, OLLAMA_HOST) for the duration of a local model call."""
    name = ollama_slot_name(server)
    listener = lease_listener.get()
    ctx = ConcurrencyContext.get()
    known = set(ctx.cleanup_lease_ids) if ctx else set()
    async with AsyncExitStack() as stack:
        if listener is not None:
            stack.callback(listener, name, None)  # runs after the lease is released
        try:
            await stack.enter_async_context(
                concurrency(
                    name,
                    occupy=1,
                    strict=True,
                    lease_duration=LEASE_SECONDS,
                    timeout_seconds=timeout_seconds,
                )
            )
        except ConcurrencySlotAcquisitionError as exc:
            raise OllamaLimitMissingError(
                f"the Prefect global concurrency limit {name!r} does not exist; "
                f"create it with `prefect gcl create {name} --limit 1` or start a worker "
                "with this OLLAMA_HOST, which creates it"
            ) from exc
        granted = [lease for lease in (ctx.cleanup_lease_ids if ctx else []) if lease not in known]
        if listener is not None and granted:
            listener(name, granted[-1])
        yield


async def ensure_ollama_limit(name: str | None = None) -> None:
    """Create the global concurrency limit (1) of the Ollama server this process calls
    (`name`, default from OLLAMA_HOST), or check that it is 1 and active."""
    name = name or ollama_slot_name()
    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=1)
            )
            log.info("action=create_limit name=%s limit=1", name)
            return
    if limit.limit != 1 or not limit.active:
        raise ConfigurationError(
            f"the Prefect concurrency limit {name!r} has limit {limit.limit} "
            f"(active={limit.active}); only one workload may run on an Ollama server: "
            f"`prefect gcl update {name} --limit 1 --enable`"
        )


_ensured: set[str] = set()


async def ensure_ollama_limit_once(name: str) -> None:
    """`ensure_ollama_limit` for a server a job names, checked once per process: the
    model calls that follow need no API round trip for it."""
    if name not in _ensured:
        await ensure_ollama_limit(name)
        _ensured.add(name)
