"""Combined writes (scheduler_core/combining.py): every item written exactly once, in a
batch or alone, and a failed batch never fails an item that would succeed alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from scheduler_core.combining import Combiner

THREADS = 8
ITEMS_EACH = 200


def _hammer(combiner: Combiner[int, int]) -> dict[int, int]:
    results: dict[int, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        start.wait(timeout=10)
        for i in range(ITEMS_EACH):
            item = t * ITEMS_EACH + i
            value = combiner.submit(item)
            with lock:
                results[item] = value

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    return results


def test_every_item_is_written_once_and_gets_its_own_result() -> None:
    written: list[int] = []
    batches: list[int] = []
    guard = threading.Lock()

    def batch(items: Sequence[int]) -> list[int]:
        assert guard.acquire(blocking=False), "two batches at once"
        try:
            batches.append(len(items))
            written.extend(items)
            return [i * 10 for i in items]
        finally:
            guard.release()

    results = _hammer(Combiner(batch, lambda i: pytest.fail("no batch failed")))
    total = THREADS * ITEMS_EACH
    assert results == {i: i * 10 for i in range(total)}
    assert sorted(written) == list(range(total))
    assert max(batches) <= THREADS


def test_a_failed_batch_writes_each_item_alone_by_its_own_thread() -> None:
    alone: list[tuple[int, int]] = []

    def batch(items: Sequence[int]) -> list[int]:
        if any(i % 7 == 0 for i in items):
            raise RuntimeError("one bad item spoils the batch")
        return [i + 1 for i in items]

    def single(item: int) -> int:
        alone.append((item, threading.get_ident()))
        if item % 7 == 0:
            raise ValueError(item)
        return item + 1

    combiner: Combiner[int, int] = Combiner(batch, single)
    errors: list[int] = []

    def submit(item: int) -> None:
        try:
            assert combiner.submit(item) == item + 1
        except ValueError as exc:
            errors.append(exc.args[0])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert sorted(errors) == [i for i in range(50) if i % 7 == 0]
    assert {i for i, _ in alone} >= set(errors)


def test_an_interrupt_of_the_writing_thread_reaches_it_and_frees_the_others() -> None:
    entered = threading.Event()
    release = threading.Event()

    def batch(items: Sequence[int]) -> list[int]:
        if 0 in items:
            entered.set()
            release.wait(timeout=10)
            raise KeyboardInterrupt
        return list(items)

    combiner: Combiner[int, int] = Combiner(batch, lambda i: -i)
    outcome: dict[int, object] = {}

    def submit(item: int) -> None:
        try:
            outcome[item] = combiner.submit(item)
        except KeyboardInterrupt:
            outcome[item] = "interrupted"

    leader = threading.Thread(target=submit, args=(0,))
    leader.start()
    assert entered.wait(timeout=10)
    follower = threading.Thread(target=submit, args=(5,))
    follower.start()
    release.set()
    for thread in (leader, follower):
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert outcome[0] == "interrupted"
    assert outcome[5] == 5  # written by the next batch, which it led itself
