"""INV-004 dispatch order: priority desc, position asc, job_id asc; fresh positions."""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass
from operator import attrgetter

import pytest

from scheduler_core.rules import ordering
from scheduler_core.rules.ordering import DISPATCH_ORDER, PositionClock, dispatch_key
from scheduler_core.values import Job
from tests.unit.conftest import MakeJob


@dataclass(frozen=True)
class Row:
    """A row with the ordering fields only: dispatch_key sorts anything shaped like a job."""

    priority: int
    position: int
    job_id: int | None


def ids(jobs: list[Job] | list[Row]) -> list[int | None]:
    return [j.job_id for j in jobs]


# --- dispatch_key -----------------------------------------------------------------------


def test_a_higher_priority_is_dispatched_first(make_job: MakeJob) -> None:
    jobs = [make_job(job_id=i, priority=p, position=0) for i, p in enumerate([0, -5, 7, 3], 1)]
    assert ids(sorted(jobs, key=dispatch_key)) == [3, 4, 1, 2]


def test_inside_a_priority_a_lower_position_is_dispatched_first(make_job: MakeJob) -> None:
    jobs = [make_job(job_id=i, priority=1, position=p) for i, p in enumerate([30, 10, 20], 1)]
    assert ids(sorted(jobs, key=dispatch_key)) == [2, 3, 1]


def test_at_equal_priority_and_position_the_older_job_id_is_dispatched_first(
    make_job: MakeJob,
) -> None:
    jobs = [make_job(job_id=i, priority=1, position=7) for i in (4, 2, 9, 1)]
    assert ids(sorted(jobs, key=dispatch_key)) == [1, 2, 4, 9]


def test_priority_outranks_position_and_position_outranks_job_id(make_job: MakeJob) -> None:
    early_low = make_job(job_id=1, priority=0, position=1)
    late_high = make_job(job_id=2, priority=1, position=999)
    assert dispatch_key(late_high) < dispatch_key(early_low)
    old_late = make_job(job_id=1, priority=0, position=50)
    new_early = make_job(job_id=2, priority=0, position=10)
    assert dispatch_key(new_early) < dispatch_key(old_late)


def test_the_key_is_negated_priority_position_and_job_id(make_job: MakeJob) -> None:
    assert dispatch_key(make_job(job_id=12, priority=3, position=456)) == (-3, 456, 12)


def test_a_job_without_an_id_yet_sorts_as_job_id_zero(make_job: MakeJob) -> None:
    assert dispatch_key(make_job(job_id=None, priority=2, position=5)) == (-2, 5, 0)
    assert dispatch_key(Row(priority=2, position=5, job_id=None)) == (-2, 5, 0)


def test_rows_with_the_same_fields_sort_like_jobs(make_job: MakeJob) -> None:
    fields = [(0, 5, 1), (2, 9, 2), (2, 3, 3), (0, 5, 0)]
    rows = [Row(priority=p, position=pos, job_id=i) for p, pos, i in fields]
    jobs = [make_job(priority=p, position=pos, job_id=i) for p, pos, i in fields]
    assert (
        ids(sorted(rows, key=dispatch_key)) == ids(sorted(jobs, key=dispatch_key)) == [3, 2, 0, 1]
    )


# --- DISPATCH_ORDER ---------------------------------------------------------------------


def test_the_dispatch_order_is_priority_desc_then_position_then_job_id() -> None:
    assert DISPATCH_ORDER == (("priority", True), ("position", False), ("job_id", False))


def test_every_dispatch_order_field_is_a_job_field() -> None:
    assert {name for name, _ in DISPATCH_ORDER} <= set(Job.model_fields)


def sort_by_dispatch_order(rows: list[Row]) -> list[Row]:
    """Sorts as an ORDER BY built from DISPATCH_ORDER does: stable sorts, least significant
    field first."""
    result = list(rows)
    for name, descending in reversed(DISPATCH_ORDER):
        result.sort(key=attrgetter(name), reverse=descending)
    return result


@pytest.mark.parametrize("seed", range(5))
def test_dispatch_key_sorts_exactly_as_dispatch_order_states(seed: int) -> None:
    rows = [
        Row(priority=p, position=pos, job_id=i)
        for i, (p, pos) in enumerate(itertools.product([-3, 0, 0, 4], [10, 20, 10]), 1)
    ]
    # Ties on (priority, position) are broken by job_id only.
    random.Random(seed).shuffle(rows)
    by_key = sorted(rows, key=dispatch_key)
    assert by_key == sort_by_dispatch_order(rows)
    assert [dispatch_key(r) for r in by_key] == sorted(dispatch_key(r) for r in rows)


# --- PositionClock ----------------------------------------------------------------------


class FakeTime:
    """Stands in for the `time` module PositionClock reads; moves only when told to."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def time_ns(self) -> int:
        return self.ns


def frozen_clock(monkeypatch: pytest.MonkeyPatch, ns: int) -> FakeTime:
    """Replaces the clock PositionClock reads with one that stands still at `ns`."""
    fake = FakeTime(ns)
    monkeypatch.setattr(ordering, "time", fake)
    return fake


def test_positions_are_strictly_increasing() -> None:
    clock = PositionClock()
    taken = [clock.take() for _ in range(2000)]
    assert all(a < b for a, b in itertools.pairwise(taken))


def test_positions_follow_the_wall_clock_in_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = frozen_clock(monkeypatch, 1_700_000_000_123_456_789)
    clock = PositionClock()
    assert clock.take() == 1_700_000_000_123_456
    fake.ns += 5_000_000  # five milliseconds later
    assert clock.take() == 1_700_000_000_128_456


def test_positions_keep_increasing_while_the_clock_stands_still(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen_clock(monkeypatch, 1_000_000_000)
    clock = PositionClock()
    assert [clock.take() for _ in range(4)] == [1_000_000, 1_000_001, 1_000_002, 1_000_003]


def test_positions_keep_increasing_when_the_clock_goes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = frozen_clock(monkeypatch, 2_000_000_000)
    clock = PositionClock()
    first = clock.take()
    fake.ns = 1_000_000_000  # the wall clock was set back a second
    assert clock.take() == first + 1


def test_a_batch_reserves_n_consecutive_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen_clock(monkeypatch, 1_000_000_000)
    clock = PositionClock()
    first = clock.take(5)
    assert first == 1_000_000
    # The batch owns first .. first + 4; the next take starts after it.
    assert clock.take() == first + 5
    assert clock.take(3) == first + 6
    assert clock.take() == first + 9


def test_batches_never_overlap_on_the_real_clock() -> None:
    clock = PositionClock()
    sizes = [1, 7, 1, 50, 3, 1, 1000, 2]
    ranges = [(first, first + n - 1) for n in sizes for first in [clock.take(n)]]
    assert all(a_end < b_first for (_, a_end), (b_first, _) in itertools.pairwise(ranges))


def test_separate_clocks_are_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen_clock(monkeypatch, 1_000_000_000)
    a, b = PositionClock(), PositionClock()
    assert a.take(10) == b.take() == 1_000_000


@pytest.mark.parametrize("frozen", [False, True], ids=["real-clock", "frozen-clock"])
def test_positions_taken_across_threads_are_unique_and_never_overlap(
    frozen: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if frozen:
        frozen_clock(monkeypatch, 1_000_000_000)
    clock = PositionClock()
    threads, per_thread = 8, 300
    start = threading.Barrier(threads)
    taken: list[list[tuple[int, int]]] = [[] for _ in range(threads)]

    def work(index: int) -> None:
        start.wait()
        for i in range(per_thread):
            n = 1 + (i + index) % 4
            first = clock.take(n)
            taken[index].append((first, first + n - 1))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()

    for ranges in taken:  # each thread sees strictly increasing batches
        assert all(a_end < b_first for (_, a_end), (b_first, _) in itertools.pairwise(ranges))
    every = sorted(itertools.chain.from_iterable(taken))
    assert len(every) == threads * per_thread
    assert all(a_end < b_first for (_, a_end), (b_first, _) in itertools.pairwise(every))
    if frozen:  # with the clock standing still the batches tile one gap-free range
        total = sum(end - first + 1 for first, end in every)
        assert every[0][0] == 1_000_000 and every[-1][1] == 1_000_000 + total - 1
