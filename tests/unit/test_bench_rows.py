"""The peers benchmark's hand-off figures (bench/peers.py): the rows carry the longest single
gap beside the median, ours' and the best peer's, and no gap holds a worker's start-up."""

from __future__ import annotations

import pytest

from bench.peers import SIZES, Drain, Tally, hand_offs_ms, rows


def tally(handoff: list[float], worst: dict[str, float], cross: tuple[float, ...] = ()) -> Tally:
    t = Tally()
    t.figures["handoff"] = handoff
    t.figures["cross"] = list(cross)
    t.worst_gap_ms = worst
    return t


def test_hand_off_rows_name_the_worst_gap_of_ours_and_of_the_best_peer() -> None:
    tallies = {
        "ours": tally([1.0, 2.0, 1.5], {"handoff": 120.5, "cross": 7.5}, cross=[3.0, 3.5, 3.0]),
        "slow": tally([9.0, 9.5, 9.0], {"handoff": 400.0}),
        "fast": tally([1.2, 1.1, 1.3], {"handoff": 30.0}),  # the best peer: lowest median
    }
    labels = {"ours": "ours", "slow": "slow 1.0", "fast": "fast 2.0"}
    by_row = {r.row: r for r in rows("sqlite", SIZES["smoke"], tallies, labels)}
    handoff = next(r for name, r in by_row.items() if "exclusive hand-off" in name)
    assert handoff.note == (
        "peers: fast 2.0 1.2, slow 1.0 9.0; "
        "worst gap over the rounds: ours 120.5 ms, fast 2.0 30.0 ms"
    )
    cross = next(r for name, r in by_row.items() if "another worker process" in name)
    assert cross.note == "worst gap over the rounds: ours 7.5 ms"  # no peer runs it


def test_a_hand_off_row_without_any_finished_drain_names_no_worst_gap() -> None:
    tallies = {"ours": tally([], {}), "fast": tally([1.2], {})}
    labels = {"ours": "ours", "fast": "fast 2.0"}
    handoff = next(
        r for r in rows("sqlite", SIZES["smoke"], tallies, labels) if "exclusive hand-off" in r.row
    )
    assert "worst gap" not in handoff.note


def test_hand_offs_leave_out_the_gap_into_each_process_first_job() -> None:
    # (job, start, end, pid): process 2 starts late (its start-up), then they alternate;
    # process 1 runs two jobs in a row once.
    records = [
        (1, 0.000, 0.005, 1),
        (2, 0.105, 0.110, 2),  # 100 ms: process 2's start-up, not a hand-off
        (3, 0.112, 0.117, 1),  # 2 ms, across
        (4, 0.118, 0.123, 1),  # 1 ms, same process
        (5, 0.126, 0.131, 2),  # 3 ms, across
    ]
    assert hand_offs_ms(records) == pytest.approx([2.0, 1.0, 3.0])
    assert hand_offs_ms(records, cross_only=True) == pytest.approx([2.0, 3.0])
    assert hand_offs_ms(records[:1]) == []


def test_a_tally_keeps_the_worst_gap_over_its_rounds_and_none_from_an_unfinished_drain() -> None:
    t = Tally()
    t.add("handoff", Drain(expected={1: 0}, gap_ms=1.0, worst_gap_ms=12.0))
    t.add("handoff", Drain(expected={2: 0}, gap_ms=2.0, worst_gap_ms=40.0))
    t.add("handoff", Drain(expected={3: 0}, gap_ms=1.5, worst_gap_ms=20.0))
    t.add("handoff", Drain(expected={4: 0}, worst_gap_ms=900.0, error="a worker exited early"))
    t.add("cross", Drain(expected={5: 0}, cross_gap_ms=3.0, worst_cross_gap_ms=8.0))
    assert t.figures["handoff"] == [1.0, 2.0, 1.5]
    assert t.worst_gap_ms == {"handoff": 40.0, "cross": 8.0}
    assert t.errors == ["handoff: a worker exited early"]
    assert t.jobs == 5
