"""Holdings (scheduler_core/holdings.py): a sweep for orphaned claims never takes a claim
that is committed but not yet held, and takes a claim nobody holds."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from scheduler_core.holdings import Holdings


def claim(job_id: int) -> Any:
    return SimpleNamespace(job=SimpleNamespace(job_id=job_id))


def test_a_claim_in_flight_is_never_taken_for_an_orphan() -> None:
    holdings = Holdings()
    database: list[Any] = []  # what a sweep reads: the RUNNING claims of this worker
    committed, held = threading.Event(), threading.Event()

    def claimer() -> None:
        with holdings.claiming():
            database.append(claim(7))  # the claim's transaction committed ...
            committed.set()
            held.wait(timeout=10)  # ... and the sweep starts before it is held
            holdings.hold(database[-1])

    thread = threading.Thread(target=claimer)
    thread.start()
    assert committed.wait(timeout=10)
    reads: list[int] = []

    def mine() -> list[Any]:
        reads.append(len(database))
        return list(database)

    sweep: list[list[Any]] = []
    sweeper = threading.Thread(target=lambda: sweep.append(holdings.orphans(mine, held_too=False)))
    sweeper.start()
    sweeper.join(timeout=0.2)
    assert sweeper.is_alive() and reads == []  # it waits for the claim in flight
    held.set()
    for t in (thread, sweeper):
        t.join(timeout=10)
        assert not t.is_alive()
    assert reads == [1] and sweep == [[]]  # read after the claim was held: no orphan


def test_an_unheld_claim_is_an_orphan_and_a_released_one_becomes_one() -> None:
    holdings = Holdings()
    held, lost = claim(1), claim(2)
    holdings.hold(held)
    found = holdings.orphans(lambda: [held, lost], held_too=False)
    assert [c.job.job_id for c in found] == [2]
    assert holdings.orphans(lambda: [held, lost], held_too=True) == [held, lost]
    holdings.hold(held)  # held twice (handed back and claimed again): counted
    holdings.release(held)
    assert holdings.orphans(lambda: [held], held_too=False) == []
    holdings.release(held)
    assert holdings.orphans(lambda: [held], held_too=False) == [held]


def test_claims_wait_while_a_sweep_reads() -> None:
    holdings = Holdings()
    reading, done = threading.Event(), threading.Event()

    def mine() -> list[Any]:
        reading.set()
        done.wait(timeout=10)
        return []

    sweeper = threading.Thread(target=lambda: holdings.orphans(mine, held_too=False))
    sweeper.start()
    assert reading.wait(timeout=10)
    entered = threading.Event()

    def claimer() -> None:
        with holdings.claiming():
            entered.set()

    thread = threading.Thread(target=claimer)
    thread.start()
    assert not entered.wait(timeout=0.2)  # held back while the sweep reads
    done.set()
    assert entered.wait(timeout=10)
    for t in (thread, sweeper):
        t.join(timeout=10)
        assert not t.is_alive()
