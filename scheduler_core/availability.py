"""Whether this worker's dependencies answer. A fault of one (the database, an
executor's API) pauses dispatch; the worker probes it with backoff and resumes by
itself when it answers again. One log line when dispatch pauses, one when it resumes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("scheduler_core.worker")

Probe = Callable[[], bool]

FIRST_PROBE_SECONDS = 0.2
MAX_PROBE_SECONDS = 5.0
REPEAT_SECONDS = 60.0  # a fault this soon after resuming counts as the same outage
MAX_HOLD_SECONDS = 300.0


class Availability:
    """The faulted dependencies of this worker and how to probe each."""

    def __init__(self, probes: Mapping[str, Probe], *, default: Probe, worker_id: str) -> None:
        """`probes` by dependency name; `default` probes any other (an executor's)."""
        self._probes = dict(probes)
        self._default = default
        self._worker_id = worker_id
        self._faults: dict[str, tuple[str, float]] = {}  # dependency -> (error, since)
        self._resumed: dict[str, float] = {}  # dependency -> when it answered again
        self._streak: dict[str, int] = {}  # faults soon after resuming, in a row
        self._lock = threading.Lock()

    def add_probe(self, dependency: str, probe: Probe) -> None:
        """How to tell that `dependency` (a plugin's) answers again after its fault."""
        self._probes[dependency] = probe

    @property
    def paused(self) -> bool:
        with self._lock:
            return bool(self._faults)

    def resumed_within(self, dependency: str, seconds: float) -> bool:
        """Is `dependency` down, or did it answer again less than `seconds` ago?"""
        with self._lock:
            if dependency in self._faults:
                return True
            resumed = self._resumed.get(dependency)
        return resumed is not None and time.monotonic() - resumed < seconds

    def fault(self, dependency: str, error: str) -> None:
        """`dependency` failed: pause dispatch until it answers (logged once)."""
        with self._lock:
            if dependency in self._faults:
                return
            now = time.monotonic()
            self._faults[dependency] = (error, now)
            again = now - self._resumed.get(dependency, -REPEAT_SECONDS) < REPEAT_SECONDS
            self._streak[dependency] = self._streak.get(dependency, 0) + 1 if again else 0
        log.warning(
            "action=dispatch_paused worker_id=%s dependency=%s error=%s",
            self._worker_id,
            dependency,
            error,
        )

    def wait_until_available(self, stop: threading.Event) -> bool:
        """Probe every faulted dependency with backoff until all answer (True), or until
        `stop` is set (False)."""
        with self._lock:
            streak = max((self._streak.get(d, 0) for d in self._faults), default=0)
        # A dependency that answers its probe but fails again at once (an API that is up
        # but refuses writes) is waited out longer each time, not retried in a hot loop.
        if streak and stop.wait(min(FIRST_PROBE_SECONDS * 2**streak, MAX_HOLD_SECONDS)):
            return False
        delay = FIRST_PROBE_SECONDS
        while True:
            with self._lock:
                pending = list(self._faults)
            if not pending:
                return True
            for dependency in pending:
                if self._probe(dependency):
                    self._resolved(dependency)
            if not self.paused:
                return True
            if stop.wait(delay):
                return False
            delay = min(delay * 2, MAX_PROBE_SECONDS)

    def _probe(self, dependency: str) -> bool:
        probe = self._probes.get(dependency, self._default)
        try:
            return bool(probe())
        except Exception:
            return False

    def _resolved(self, dependency: str) -> None:
        with self._lock:
            _error, since = self._faults.pop(dependency, ("", time.monotonic()))
            self._resumed[dependency] = time.monotonic()
        log.warning(
            "action=dispatch_resumed worker_id=%s dependency=%s paused_seconds=%.1f",
            self._worker_id,
            dependency,
            time.monotonic() - since,
        )
