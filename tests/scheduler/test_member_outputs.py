"""A group member uses an earlier member's outputs: `name` on the producer, a reference
``{"$outputs": "<name>"}`` in a later member's params, resolved when that member starts
(scheduler_core/references.py). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scheduler_core import (
    InvalidJobError,
    InvalidParamsError,
    JobGroupStatus,
    JobRunStatus,
    JobStatus,
    SchedulerService,
)
from tests.conftest import wait_for
from tests.scheduler.handlers import E2EJobHandler
from tests.scheduler.rules_support import (
    count_rows,
    drain,
    kill,
    run_of,
    start_module,
    status_of,
    wait_status,
)


class Recorder:
    """Job type "step": records the params each call received; returns
    ``[<name>-<attempt>.md, <name>-<attempt>.json]``, or fails the first `fail` attempts
    of its name (-1: always)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []

    def __call__(self, params: dict[str, Any]) -> list[str]:
        with self.lock:
            self.calls.append(params)
            attempt = sum(c["name"] == params["name"] for c in self.calls)
        fail = int(params.get("fail", 0))
        if fail < 0 or attempt <= fail:
            raise RuntimeError(f"injected failure of {params['name']} on attempt {attempt}")
        return [f"out/{params['name']}-{attempt}.md", f"out/{params['name']}-{attempt}.json"]

    def received(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["name"] == name]


@pytest.fixture
def recorder(svc: SchedulerService) -> Recorder:
    recorder = Recorder()
    svc.register("step", recorder, resource="external")
    return recorder


def step(name: str, label: str | None = None, **params: Any) -> dict[str, Any]:
    extra = {k: params.pop(k) for k in ("max_retries",) if k in params}
    member = {"job_type": "step", "params": {"name": name, **params}, **extra}
    return member if label is None else {**member, "name": label}


def outputs(label: str) -> dict[str, str]:
    return {"$outputs": label}


def test_later_members_receive_an_earlier_members_outputs_when_they_start(
    svc: SchedulerService, recorder: Recorder
) -> None:
    group, members = svc.create_job_group(
        [
            step("research", "card"),
            step("story-1", "first", cards=outputs("card")),
            step("story-2", cards=outputs("card"), after={"drafts": [outputs("first")]}),
        ]
    )
    # Stored as given, with the index of the member each reference names.
    assert members[1].params["cards"] == {"$outputs": "card", "member": 0}
    assert svc.get_job(members[2].job_id).params["after"] == {
        "drafts": [{"$outputs": "first", "member": 1}]
    }
    svc.start(concurrency=2)  # the worker loop: the next claim shares the end's transaction
    try:
        wait_for(
            lambda: svc.get_job_group(group.group_id).status.is_terminal,
            what="the group to end",
        )
    finally:
        assert svc.stop(timeout=10)
    card = ["out/research-1.md", "out/research-1.json"]
    first = ["out/story-1-1.md", "out/story-1-1.json"]
    assert recorder.received("story-1") == [{"name": "story-1", "cards": card}]
    assert recorder.received("story-2") == [
        {"name": "story-2", "cards": card, "after": {"drafts": [first]}}
    ]
    assert run_of(svc, members[1]).params_snapshot == {"name": "story-1", "cards": card}
    assert run_of(svc, members[2]).params_snapshot["after"] == {"drafts": [first]}
    assert svc.get_job(members[1].job_id).params["cards"] == {"$outputs": "card", "member": 0}
    assert svc.get_job_group(group.group_id).status == JobGroupStatus.COMPLETED


def test_a_validator_sees_a_placeholder_at_enqueue_and_the_outputs_at_start(
    svc: SchedulerService, recorder: Recorder
) -> None:
    seen: list[Any] = []

    def validate(params: dict[str, Any]) -> None:
        cards = params.get("cards", [])
        seen.append(cards)
        if not isinstance(cards, list) or not all(isinstance(c, str) for c in cards):
            raise TypeError("cards must be a list of paths")
        if any(c.endswith(".json") for c in cards) and params.get("no_json"):
            raise ValueError("cards must not be JSON files")

    svc.register("checked", recorder, resource="external", validate=validate)
    group, members = svc.create_job_group(
        [
            step("research", "card"),
            {"job_type": "checked", "params": {"name": "ok", "cards": outputs("card")}},
            {
                "job_type": "checked",
                "params": {"name": "picky", "cards": outputs("card"), "no_json": True},
                "max_retries": 0,
            },
        ]
    )
    assert seen == [["<outputs of card>"], ["<outputs of card>"]]
    assert drain(svc) == 3
    card = ["out/research-1.md", "out/research-1.json"]
    assert seen[2:] == [card, card]  # again at start, on the resolved params
    assert [c["name"] for c in recorder.calls] == ["research", "ok"]
    picky = run_of(svc, members[2])
    assert picky.status == JobRunStatus.FAILED and picky.params_snapshot["cards"] == card
    assert picky.error == (
        "params with the outputs of earlier members are invalid for job type 'checked': "
        "ValueError: cards must not be JSON files"
    )
    assert svc.get_job_group(group.group_id).status == JobGroupStatus.PARTIAL


BAD_GROUPS: dict[str, tuple[list[dict[str, Any]], str]] = {
    "unknown name": (
        [step("a", "card"), step("b", cards=outputs("cart"))],
        "job #1: params.cards refers to the outputs of 'cart', but no member of the group "
        "has that name (names: card); give the producing member name: <label>",
    ),
    "a later member": (
        [step("a", cards=outputs("late")), step("b", "late")],
        "job #0: params.cards refers to the outputs of 'late', which does not come before "
        "this member: a member may use only the outputs of members before it (reorder the jobs)",
    ),
    "itself": (
        [step("a"), step("b", "me", cards=[outputs("me")])],
        "job #1: params.cards[0] refers to the outputs of 'me', this member itself: a member "
        "may use only the outputs of members before it",
    ),
    "malformed": (
        [step("a", "card"), step("b", cards={"$outputs": "card", "first": True})],
        "job #1: params.cards is a malformed reference to a member's outputs: write "
        "{\"$outputs\": \"<name of an earlier member>\"}, got {'$outputs': 'card', "
        "'first': True}",
    ),
    "another member's index": (
        [step("a", "card"), step("b", "two"), step("c", cards={"$outputs": "card", "member": 1})],
        "job #2: params.cards refers to the outputs of 'card' with member 1, but 'card' is "
        'job #0: drop \'member\' and write {"$outputs": "<name of an earlier member>"}',
    ),
    "the whole params": (
        [step("a", "card"), {"job_type": "step", "params": outputs("card")}],
        "job #1: params are a reference as a whole; put it under a param's name, e.g. "
        '{"cards": {"$outputs": "<name of an earlier member>"}}',
    ),
    "a name used twice": (
        [step("a", "card"), step("b", "card")],
        "job #1: name 'card' is taken by job #0: give each member its own name",
    ),
    "a name that is not a slug": (
        [step("a", "my card")],
        "job #0: name must be 1-64 letters, digits or _ . -, starting with a letter or digit "
        "(e.g. research), got 'my card'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_GROUPS))
def test_bad_references_are_refused_at_enqueue_and_nothing_is_written(
    svc: SchedulerService, recorder: Recorder, case: str
) -> None:
    jobs, message = BAD_GROUPS[case]
    before = count_rows(svc)
    with pytest.raises(InvalidJobError) as caught:
        svc.create_job_group(jobs)
    assert str(caught.value) == message
    assert caught.value.member == int(message[5])  # type: ignore[attr-defined]
    assert count_rows(svc) == before
    assert recorder.calls == []


def test_only_group_members_may_use_outputs(svc: SchedulerService, recorder: Recorder) -> None:
    before = count_rows(svc)
    alone = "only a member of a job group may use another member's outputs"
    with pytest.raises(InvalidParamsError, match=f"params.cards refers .* 'card', but {alone}"):
        svc.enqueue_job("step", {"name": "x", "cards": outputs("card")})
    with pytest.raises(InvalidParamsError, match=f"job #0: .*{alone}"):
        svc.enqueue_jobs([step("x", cards=outputs("card"))])
    with pytest.raises(InvalidParamsError, match=alone):
        svc.execute_direct("step", {"name": "x", "cards": outputs("card")}, timeout=5)
    with pytest.raises(InvalidJobError, match=r"unknown keys \['name'\]"):
        svc.enqueue_jobs([step("x", "label")])  # names belong to group members
    assert count_rows(svc) == before
    assert recorder.calls == []


def test_a_failed_producer_skips_its_consumers(svc: SchedulerService, recorder: Recorder) -> None:
    group, members = svc.create_job_group(
        [
            step("research", "card", fail=-1, max_retries=1),
            step("story-1", cards=outputs("card")),
            step("story-2", cards=outputs("card")),
        ]
    )
    assert drain(svc) == 2  # the producer and its one retry
    assert [c["name"] for c in recorder.calls] == ["research", "research"]
    for consumer in members[1:]:
        assert status_of(svc, consumer) == JobStatus.SKIPPED
        run = run_of(svc, consumer)
        assert run.status == JobRunStatus.SKIPPED and run.error.startswith("skipped: predecessor")
    assert svc.get_job_group(group.group_id).status == JobGroupStatus.FAILED


def test_a_retried_producer_passes_on_its_completed_attempts_outputs(
    svc: SchedulerService, recorder: Recorder
) -> None:
    _, members = svc.create_job_group(
        [step("research", "card", fail=1), step("story", cards=outputs("card"))]
    )
    assert drain(svc) == 3
    chain = svc.get_retry_chain(members[0].job_id)
    assert [run_of(svc, j).status for j in chain] == [JobRunStatus.FAILED, JobRunStatus.COMPLETED]
    card = ["out/research-2.md", "out/research-2.json"]
    assert recorder.received("story") == [{"name": "story", "cards": card}]
    assert run_of(svc, members[1]).params_snapshot["cards"] == card


def test_a_consumers_retries_get_the_same_outputs(
    svc: SchedulerService, recorder: Recorder
) -> None:
    group, members = svc.create_job_group(
        [step("research", "card"), step("story", cards=outputs("card"), fail=2)]
    )
    assert drain(svc) == 4
    card = ["out/research-1.md", "out/research-1.json"]
    assert [c["cards"] for c in recorder.received("story")] == [card, card, card]
    chain = svc.get_retry_chain(members[1].job_id)
    assert [run_of(svc, j).params_snapshot["cards"] for j in chain] == [card, card, card]
    # Each retry keeps the reference; it is resolved again when the retry starts.
    assert all(j.params["cards"] == {"$outputs": "card", "member": 0} for j in chain)
    assert svc.get_job_group(group.group_id).status == JobGroupStatus.COMPLETED


def test_a_manual_retry_of_a_consumer_outside_its_group_gets_the_outputs(
    svc: SchedulerService, recorder: Recorder
) -> None:
    _, members = svc.create_job_group(
        [step("research", "card"), step("story", cards=outputs("card"), fail=1, max_retries=0)]
    )
    assert drain(svc) == 2
    retry = svc.retry_run(run_of(svc, members[1]).run_id)
    assert retry.group_id is None and retry.params == members[1].params
    assert drain(svc) == 1
    card = ["out/research-1.md", "out/research-1.json"]
    assert status_of(svc, retry) == JobStatus.COMPLETED
    assert recorder.received("story")[-1]["cards"] == card


def test_a_producer_cancelled_alone_fails_its_consumer_with_a_clear_error(
    svc: SchedulerService, recorder: Recorder
) -> None:
    group, members = svc.create_job_group(
        [step("research", "card"), step("story", cards=outputs("card"), max_retries=0)]
    )
    svc.cancel_job(members[0].job_id)  # one member cancelled: the group goes on
    assert drain(svc) == 1
    run = run_of(svc, members[1])
    assert run.status == JobRunStatus.FAILED
    assert run.error == (
        "params.cards refers to the outputs of 'card' (job #0 of its group), which has no "
        "completed run: there is nothing to pass on (was it cancelled?)"
    )
    assert recorder.calls == []
    assert svc.get_job_group(group.group_id).status == JobGroupStatus.FAILED


def test_update_job_params_keeps_references_in_their_stored_form(
    svc: SchedulerService, recorder: Recorder
) -> None:
    _, members = svc.create_job_group(
        [step("research", "card"), step("story", cards=outputs("card"))]
    )
    stored = {"$outputs": "card", "member": 0}
    updated = svc.update_job_params(members[1].job_id, {"name": "story", "cards": stored, "n": 2})
    assert updated.params == {"name": "story", "cards": stored, "n": 2}
    with pytest.raises(InvalidParamsError, match="without its member's index"):
        svc.update_job_params(members[1].job_id, {"name": "story", "cards": outputs("card")})
    with pytest.raises(InvalidParamsError, match="this member itself"):
        svc.update_job_params(
            members[1].job_id, {"name": "story", "cards": {"$outputs": "x", "member": 1}}
        )
    assert svc.get_job(members[1].job_id).params == updated.params
    assert drain(svc) == 2
    assert recorder.received("story")[0]["cards"] == ["out/research-1.md", "out/research-1.json"]


def test_a_group_with_references_is_queued_once_per_key(
    svc: SchedulerService, recorder: Recorder
) -> None:
    jobs = [step("research", "card"), step("story", cards=outputs("card"))]
    group, members = svc.create_job_group(jobs, key="nightly-1")
    again, same = svc.create_job_group(jobs, key="nightly-1")
    assert again.group_id == group.group_id and [m.job_id for m in same] == [
        m.job_id for m in members
    ]


def test_a_direct_execution_between_members_leaves_the_outputs_in_place(
    svc: SchedulerService, recorder: Recorder
) -> None:
    _, members = svc.create_job_group(
        [step("research", "card"), step("story", cards=outputs("card"))]
    )
    first = svc.dispatch_one()
    assert first is not None and first[0].job_id == members[0].job_id
    direct = svc.execute_direct("step", {"name": "direct"}, timeout=10)
    assert direct.status == JobRunStatus.COMPLETED
    assert drain(svc) == 1
    assert recorder.received("story")[0]["cards"] == ["out/research-1.md", "out/research-1.json"]


def test_a_consumer_recovered_after_a_crash_is_retried_with_the_same_outputs(
    open_service: Callable[..., SchedulerService], db_url: str, tmp_path: Path
) -> None:
    record = tmp_path / "worker.jsonl"  # shared: attempts count across processes
    svc = open_service()
    svc.register("e2e", E2EJobHandler(record), resource="external")
    _, members = svc.create_job_group(
        [
            {"job_type": "e2e", "name": "make", "params": {"name": "make"}},
            {"job_type": "e2e", "params": {"name": "use", "block": 1, "in": outputs("make")}},
        ]
    )
    proc = start_module("tests.scheduler.worker_process", db_url, str(record), "--serve")
    try:
        wait_status(svc, members[1], JobStatus.RUNNING, timeout=30)
    finally:
        kill(proc)
    made = ["artifacts/make-1.txt"]
    assert run_of(svc, members[1]).params_snapshot["in"] == made
    report = svc.recover()
    assert report.running_jobs_recovered == 1 and report.retries_created == 1
    assert drain(svc) == 1  # the retry, attempt 2: not blocked
    chain = svc.get_retry_chain(members[1].job_id)
    assert [run_of(svc, j).status for j in chain] == [JobRunStatus.FAILED, JobRunStatus.COMPLETED]
    assert "crash" in (run_of(svc, chain[0]).error or "")
    assert run_of(svc, chain[1]).params_snapshot == {"name": "use", "block": 1, "in": made}
