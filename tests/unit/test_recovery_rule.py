"""DEC-008 recovery rule: whose jobs are orphaned, which workers are dead, how runs end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scheduler_core.rules.recovery import crashed, dead_workers, owner_is_dead
from scheduler_core.statuses import JobRunStatus, WorkerStatus
from scheduler_core.values import Outcome, Worker
from tests.unit.conftest import MakeWorker

ME = "me"


class Liveness:
    """An is_alive stand-in: alive exactly for the given worker ids; records every call."""

    def __init__(self, *alive: str) -> None:
        self.alive = set(alive)
        self.asked: list[Worker | None] = []

    def __call__(self, worker: Worker | None) -> bool:
        self.asked.append(worker)
        return worker is not None and worker.worker_id in self.alive


def never_asked(worker: Worker | None) -> bool:
    raise AssertionError(f"is_alive must not be asked, got {worker!r}")


@pytest.fixture
def workers(make_worker: MakeWorker) -> dict[str, Worker]:
    rows = [
        make_worker(worker_id=ME, pid=1),
        make_worker(worker_id="live", pid=2),
        make_worker(worker_id="dead", pid=3),
    ]
    return {w.worker_id: w for w in rows}


# --- owner_is_dead ----------------------------------------------------------------------


@pytest.mark.parametrize("is_alive", [never_asked, Liveness()], ids=["unasked", "says-dead"])
def test_a_job_owned_by_this_process_is_never_orphaned(
    is_alive: Callable[[Worker | None], bool], workers: dict[str, Worker]
) -> None:
    assert owner_is_dead(ME, workers=workers, me=ME, is_alive=is_alive) is False


def test_this_process_counts_as_alive_even_when_not_registered() -> None:
    assert owner_is_dead(ME, workers={}, me=ME, is_alive=never_asked) is False


def test_a_job_of_a_live_registered_worker_is_left_alone(workers: dict[str, Worker]) -> None:
    is_alive = Liveness("live")
    assert owner_is_dead("live", workers=workers, me=ME, is_alive=is_alive) is False
    assert is_alive.asked == [workers["live"]]


def test_a_job_of_a_dead_registered_worker_is_orphaned(workers: dict[str, Worker]) -> None:
    is_alive = Liveness("live")
    assert owner_is_dead("dead", workers=workers, me=ME, is_alive=is_alive) is True
    assert is_alive.asked == [workers["dead"]]


@pytest.mark.parametrize(
    "worker_id",
    [
        pytest.param("never-registered", id="unknown-id"),
        pytest.param(None, id="no-owner"),
        pytest.param("", id="empty-id"),
    ],
)
def test_an_owner_without_a_worker_row_is_judged_on_none(
    worker_id: str | None, workers: dict[str, Worker]
) -> None:
    is_alive = Liveness("live", "never-registered", "")
    assert owner_is_dead(worker_id, workers=workers, me=ME, is_alive=is_alive) is True
    assert is_alive.asked == [None]


def test_is_alive_decides_for_an_unregistered_owner() -> None:
    assert owner_is_dead("ghost", workers={}, me=ME, is_alive=lambda w: w is None) is False


# --- dead_workers -----------------------------------------------------------------------


def test_dead_workers_are_the_running_registered_ones_that_are_not_alive(
    make_worker: MakeWorker,
) -> None:
    rows = [
        make_worker(worker_id="c-dead"),
        make_worker(worker_id="a-dead"),
        make_worker(worker_id="b-live"),
        make_worker(worker_id=ME),
    ]
    found = dead_workers({w.worker_id: w for w in rows}, me=ME, is_alive=Liveness("b-live"))
    assert found == ["a-dead", "c-dead"]  # sorted, never this process


@pytest.mark.parametrize("status", [WorkerStatus.STOPPED, WorkerStatus.DEAD])
def test_workers_no_longer_registered_as_running_are_not_dead_again(
    status: WorkerStatus, make_worker: MakeWorker
) -> None:
    rows = [make_worker(worker_id="gone", status=status), make_worker(worker_id="crashed")]
    found = dead_workers({w.worker_id: w for w in rows}, me=ME, is_alive=Liveness())
    assert found == ["crashed"]


def test_no_dead_workers_when_every_running_one_is_alive(make_worker: MakeWorker) -> None:
    rows = [make_worker(worker_id="a"), make_worker(worker_id="b")]
    assert dead_workers({w.worker_id: w for w in rows}, me=ME, is_alive=Liveness("a", "b")) == []


def test_no_dead_workers_without_workers() -> None:
    assert dead_workers({}, me=ME, is_alive=never_asked) == []


# --- crashed ----------------------------------------------------------------------------


def test_a_crashed_run_fails_naming_the_dead_worker_host_and_pid(
    make_worker: MakeWorker,
) -> None:
    worker = make_worker(worker_id="w7", host="box-3", pid=991)
    assert crashed("w7", worker) == Outcome(
        status=JobRunStatus.FAILED,
        error="recovered after crash: worker w7 (box-3 pid 991) died while the job was RUNNING",
    )


def test_a_crashed_run_of_a_worker_without_a_row_fails_as_unknown() -> None:
    outcome = crashed("w9", None)
    assert outcome.status is JobRunStatus.FAILED
    assert outcome.error == (
        "recovered after crash: worker w9 (unknown) died while the job was RUNNING"
    )
    assert (outcome.exit_code, outcome.artifacts) == (None, [])


def test_a_crashed_run_without_an_owner_still_fails() -> None:
    outcome = crashed(None, None)
    assert outcome.status is JobRunStatus.FAILED
    assert outcome.error == (
        "recovered after crash: worker None (unknown) died while the job was RUNNING"
    )
