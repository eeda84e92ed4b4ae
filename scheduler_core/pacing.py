"""When another slot adds throughput: on SQLite, a free slot is filled only once the
running slots' jobs run long enough to leave room for it.

SQLite has one writer, and CPython runs one thread's Python at a time. Slots whose jobs
end within a millisecond can only take turns: every job handed between their threads
costs an interpreter-lock hand-over, and four slots of no-op jobs drained fewer jobs per
second than one (docs/benchmarks.md, "Four slots"). So on SQLite a running slot is
*advancing* while it runs a job that began less than `SHORT_JOB_SECONDS` ago or writes
its end (its next claim follows in the same transaction), and:

- the dispatcher fills a free slot only while no running slot advances; it looks again
  within `FILL_LOOK_MAX_SECONDS`, so a slot whose job turns out long (a model call, a
  flow) is joined by the next one within milliseconds;
- a slot whose job ended within `SHORT_JOB_SECONDS` does not claim its next one while
  another slot advances: the other takes it.

Jobs that run longer than that (every model call) fill every slot, as before. On
PostgreSQL each slot waits on its own round trips, which the server runs side by side,
so every free slot is filled at once (`serial_writes=False`).
"""

from __future__ import annotations

import threading
import time

SHORT_JOB_SECONDS = 0.00025
"""A job that ran this long leaves its slot's thread waiting, for another slot to use."""
HAND_OVER_SECONDS = 0.05
"""A job handed to a slot's thread counts as advancing until the thread picks it up, for
this long at most: a thread that is still starting (a new one opens its connection) has
not shown that its job is long. Without it, a new thread's start filled another slot."""
FILL_LOOK_MAX_SECONDS = 0.02
"""While slots advance, the dispatcher looks again after SHORT_JOB_SECONDS, doubling up
to this: a busy chain of short jobs wakes it at most 50 times a second."""

_IDLE, _HANDED, _RUNNING, _WRITING = 0, 1, 2, 3


class Slot:
    """One slot's phase: written by its thread (first by the dispatcher, which marks it
    handed over), read by the others."""

    __slots__ = ("_phase", "_ran", "_since")

    def __init__(self) -> None:
        self._phase = _IDLE
        self._since = 0.0  # when its current job began
        self._ran = 0.0  # how long its last job ran

    def handed(self) -> None:
        """The dispatcher handed a job to this slot's thread."""
        self._since = time.monotonic()
        self._phase = _HANDED

    def running(self) -> None:
        """A job starts in this slot."""
        self._since = time.monotonic()
        self._phase = _RUNNING

    def writing(self) -> None:
        """Its job ended; its end (and maybe its next claim) is being written."""
        self._ran = time.monotonic() - self._since
        self._phase = _WRITING

    def idle(self) -> None:
        self._phase = _IDLE

    @property
    def ran_short(self) -> bool:
        """Did its last job end within SHORT_JOB_SECONDS?"""
        return self._ran < SHORT_JOB_SECONDS

    def advances(self, now: float) -> bool:
        """Will it take the next job soon by itself?"""
        phase = self._phase
        if phase == _RUNNING:
            return now - self._since < SHORT_JOB_SECONDS
        return phase == _WRITING or (phase == _HANDED and now - self._since < HAND_OVER_SECONDS)


class Pacing:
    """The slots of one worker loop, and the two decisions above."""

    def __init__(self, *, serial_writes: bool) -> None:
        self.serial_writes = serial_writes
        self._slots: list[Slot] = []
        self._lock = threading.Lock()
        self._look = SHORT_JOB_SECONDS

    def slot(self) -> Slot:
        made = Slot()
        with self._lock:
            self._slots = [*self._slots, made]  # readers iterate a list never changed
        return made

    def drop(self, slot: Slot) -> None:
        with self._lock:
            self._slots = [s for s in self._slots if s is not slot]

    def advancing(self, *, besides: Slot | None = None) -> bool:
        """Does a running slot (other than `besides`) advance by itself?"""
        if not self.serial_writes:
            return False
        now = time.monotonic()
        return any(s is not besides and s.advances(now) for s in self._slots)

    def wait_to_fill(self) -> float:
        """0 if a free slot may be filled now, else the seconds after which to look again."""
        if not self.advancing():
            self._look = SHORT_JOB_SECONDS
            return 0.0
        wait = self._look  # never shorter than a running job needs to count as long
        self._look = min(wait * 2, FILL_LOOK_MAX_SECONDS)
        return wait

    def may_chain(self, slot: Slot) -> bool:
        """May `slot`, whose job just ended, claim its next job itself? A slot that does
        not stops advancing at once, so that of two slots ending together one goes on."""
        if not self.serial_writes or not slot.ran_short:
            return True
        with self._lock:
            if self.advancing(besides=slot):
                slot.idle()
                return False
        return True
