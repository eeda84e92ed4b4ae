"""Dispatch pauses on a dependency's fault and resumes when its probe answers; one that
fails again right after resuming is held back longer instead of retried in a hot loop."""

from __future__ import annotations

import threading

from scheduler_core.availability import Availability


def test_a_fault_pauses_until_the_probe_answers() -> None:
    answers = [False, True]
    availability = Availability(
        {"database": lambda: answers.pop(0)}, default=lambda: True, worker_id="w"
    )
    assert not availability.paused
    availability.fault("database", "refused")
    assert availability.paused and availability.resumed_within("database", 0)
    assert availability.wait_until_available(threading.Event())
    assert not availability.paused and answers == []
    assert availability.resumed_within("database", 60)


def test_a_dependency_failing_again_at_once_is_held_back() -> None:
    availability = Availability({}, default=lambda: True, worker_id="w")
    stopped = threading.Event()
    stopped.set()  # a hold-back is then cut short: wait_until_available says False
    availability.fault("prefect-api", "503")
    assert availability.wait_until_available(stopped)  # the first time: probed at once
    availability.fault("prefect-api", "503 again")
    assert not availability.wait_until_available(stopped)  # held back before probing
    assert availability.paused


def test_a_failing_probe_counts_as_no_answer() -> None:
    def broken() -> bool:
        raise OSError("unreachable")

    availability = Availability({"database": broken}, default=lambda: True, worker_id="w")
    availability.fault("database", "down")
    stopped = threading.Event()
    stopped.set()
    assert not availability.wait_until_available(stopped)
    assert availability.paused
