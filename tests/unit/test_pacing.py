"""Slot pacing (scheduler_core/pacing.py): on SQLite a free slot is filled only while no
running slot advances by itself, and of slots whose short jobs end together one goes
on; on PostgreSQL every free slot is filled at once."""

from __future__ import annotations

import pytest

from scheduler_core import pacing
from scheduler_core.pacing import (
    FILL_LOOK_MAX_SECONDS,
    HAND_OVER_SECONDS,
    SHORT_JOB_SECONDS,
    Pacing,
    Slot,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(pacing.time, "monotonic", made)
    return made


def writing(slots: Pacing) -> Slot:
    """A new slot of `slots` whose job just ended: its end is being written."""
    slot = slots.slot()
    slot.running()
    slot.writing()
    return slot


def test_without_slots_a_free_slot_is_filled(clock: Clock) -> None:
    assert Pacing(serial_writes=True).wait_to_fill() == 0


def test_a_slot_running_a_job_that_just_began_defers_filling_until_it_runs_long(
    clock: Clock,
) -> None:
    slots = Pacing(serial_writes=True)
    slot = slots.slot()
    slot.running()
    assert slots.advancing()
    assert 0 < slots.wait_to_fill() <= SHORT_JOB_SECONDS
    clock.now += SHORT_JOB_SECONDS
    assert not slots.advancing()
    assert slots.wait_to_fill() == 0  # its job is long: another slot adds throughput


def test_a_slot_writing_its_end_defers_filling_however_long_it_writes(clock: Clock) -> None:
    slots = Pacing(serial_writes=True)
    slot = writing(slots)
    clock.now += 60
    assert slots.advancing()  # its next claim follows in the same transaction
    assert slots.wait_to_fill() > 0
    slot.idle()
    assert slots.wait_to_fill() == 0


def test_the_dispatcher_looks_less_often_while_slots_advance_and_at_once_after(
    clock: Clock,
) -> None:
    slots = Pacing(serial_writes=True)
    slot = writing(slots)
    waits = [slots.wait_to_fill() for _ in range(8)]
    assert waits[0] == SHORT_JOB_SECONDS
    assert waits == sorted(waits)
    assert waits[-1] == FILL_LOOK_MAX_SECONDS
    slots.drop(slot)
    assert slots.wait_to_fill() == 0
    writing(slots)
    assert slots.wait_to_fill() == SHORT_JOB_SECONDS  # the pause starts short again


def test_a_slot_whose_short_job_ended_leaves_the_next_one_to_an_advancing_slot(
    clock: Clock,
) -> None:
    slots = Pacing(serial_writes=True)
    first, second = writing(slots), writing(slots)
    assert slots.may_chain(first) is False  # the second takes the next job
    assert not first.advances(clock.now)
    assert slots.may_chain(second) is True  # so of the two, one always goes on


def test_a_slot_whose_job_ran_long_claims_its_next_one_itself(clock: Clock) -> None:
    slots = Pacing(serial_writes=True)
    long, short = slots.slot(), slots.slot()
    long.running()
    clock.now += SHORT_JOB_SECONDS
    short.running()
    long.writing()
    assert slots.may_chain(long) is True  # its thread waited: the next job keeps it busy


def test_a_slot_alone_always_claims_its_next_job(clock: Clock) -> None:
    slots = Pacing(serial_writes=True)
    slot = writing(slots)
    assert slots.may_chain(slot) is True


def test_without_serial_writes_every_free_slot_is_filled(clock: Clock) -> None:
    slots = Pacing(serial_writes=False)
    first, second = writing(slots), writing(slots)
    assert not slots.advancing()
    assert slots.wait_to_fill() == 0
    assert slots.may_chain(first) is True
    assert slots.may_chain(second) is True


def test_a_job_handed_to_a_starting_thread_is_not_taken_for_a_long_one(clock: Clock) -> None:
    """A new slot thread takes a while to start (its connection, its first statements):
    until it picks its job up, it advances, up to HAND_OVER_SECONDS."""
    slots = Pacing(serial_writes=True)
    slot = slots.slot()
    slot.handed()
    clock.now += 10 * SHORT_JOB_SECONDS
    assert slots.advancing() and slots.wait_to_fill() > 0
    slot.running()  # picked up: its own job's time counts from here
    assert slots.advancing()
    clock.now += 2 * SHORT_JOB_SECONDS
    assert slots.wait_to_fill() == 0


def test_a_hand_over_that_never_completes_stops_deferring_fills(clock: Clock) -> None:
    slots = Pacing(serial_writes=True)
    slots.slot().handed()
    clock.now += HAND_OVER_SECONDS
    assert not slots.advancing()
    assert slots.wait_to_fill() == 0
