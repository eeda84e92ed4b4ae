"""The claims this process holds, so that handing back our own orphans never takes one.

An orphan is a job RUNNING under this worker's id that no thread here runs: a claim whose
commit reached the database although the call failed (an outage). Finding them compares
the database with what is held, so claims and that comparison must not interleave: a
claim committed but not yet held would look orphaned. Claims run side by side (shared);
the sweep waits for the claims in flight and holds new ones back while it reads
(exclusive). A claim is counted: a job handed back can be claimed again before the old
claim's thread let go.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler_core.values import Claim

GATE_SECONDS = 60.0
"""The longest a claim waits for a sweep, or a sweep for the claims in flight; both are
bounded by the database's own retry deadline well before this."""


class Holdings:
    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._cond = threading.Condition()
        self._claiming = 0
        self._sweeping = False

    @contextmanager
    def claiming(self) -> Iterator[None]:
        """Around a claim's transaction and its `hold`."""
        with self._cond:
            self._cond.wait_for(lambda: not self._sweeping, timeout=GATE_SECONDS)
            self._claiming += 1
        try:
            yield
        finally:
            with self._cond:
                self._claiming -= 1
                if self._claiming == 0:
                    self._cond.notify_all()

    def hold(self, claim: Claim | None) -> None:
        if claim is not None:
            with self._cond:
                self._counts[claim.job.job_id or 0] += 1

    def release(self, claim: Claim) -> None:
        with self._cond:
            job_id = claim.job.job_id or 0
            self._counts[job_id] -= 1
            if self._counts[job_id] <= 0:
                del self._counts[job_id]

    def orphans(self, mine: Callable[[], list[Claim]], *, held_too: bool) -> list[Claim]:
        """This worker's RUNNING claims as `mine` reads them, less the held ones unless
        `held_too`; [] when the claims in flight did not end within GATE_SECONDS (the
        next sweep looks again)."""
        with self._cond:
            self._sweeping = True
            settled = self._cond.wait_for(lambda: self._claiming == 0, timeout=GATE_SECONDS)
        try:
            if not settled:
                return []
            claims = mine()
            with self._cond:
                return [c for c in claims if held_too or (c.job.job_id or 0) not in self._counts]
        finally:
            with self._cond:
                self._sweeping = False
                self._cond.notify_all()
