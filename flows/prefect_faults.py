"""The Prefect API as a dependency of the executor: which failures are its faults (not
the job's), a health probe, and the flow runs an outage left RUNNING or PENDING, set
Crashed once the API answers again so that Prefect shows no zombie."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.settings import PREFECT_API_URL
from prefect.states import Crashed

log = logging.getLogger("flows.executor")

DEPENDENCY = "prefect-api"
HEALTH_TIMEOUT = 5.0


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_api_request(exc: BaseException) -> bool:
    api = PREFECT_API_URL.value()
    try:
        url = str(exc.request.url)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when unset
        return False
    return bool(api) and url.startswith(str(api).rstrip("/"))


def is_api_fault(exc: BaseException) -> bool:
    """Did the Prefect API fail (unreachable, dropped, 5xx)? A model server's failure is
    the job's: only errors of requests to PREFECT_API_URL count."""
    for error in _chain(exc):
        transport = isinstance(error, httpx.TransportError)
        server = isinstance(error, httpx.HTTPStatusError) and error.response.status_code >= 500
        if (transport or server) and _is_api_request(error):
            return True
    return False


def api_answers() -> bool:
    """GET /health of PREFECT_API_URL (a temporary local server is always there)."""
    api = PREFECT_API_URL.value()
    if not api:
        return True
    try:
        response = httpx.get(f"{str(api).rstrip('/')}/health", timeout=HEALTH_TIMEOUT)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


class Zombies:
    """Flow runs an API outage interrupted: to be set Crashed when the API is back."""

    def __init__(self) -> None:
        self._ids: set[UUID] = set()
        self._lock = threading.Lock()

    def add(self, flow_run_id: UUID) -> None:
        with self._lock:
            self._ids.add(flow_run_id)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._ids)

    async def crash(self, client: PrefectClient) -> None:
        """Set each left non-final flow run Crashed; the ones that fail stay for later."""
        with self._lock:
            pending = list(self._ids)
        for flow_run_id in pending:
            try:
                flow_run = await client.read_flow_run(flow_run_id)
                if flow_run.state is not None and not flow_run.state.is_final():
                    await client.set_flow_run_state(
                        flow_run_id,
                        Crashed(
                            message="the Prefect API became unreachable while it ran; the "
                            "scheduler put its job back in the queue"
                        ),
                        force=True,
                    )
                    log.warning("action=mark_crashed flow_run_id=%s reason=api_outage", flow_run_id)
            except Exception as exc:
                log.warning("action=mark_crashed_failed flow_run_id=%s error=%s", flow_run_id, exc)
                continue
            with self._lock:
                self._ids.discard(flow_run_id)
