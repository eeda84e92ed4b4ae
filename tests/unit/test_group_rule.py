"""DEC-012 / INV-006 group rule: members one at a time, stop on failure, one outcome."""

from __future__ import annotations

import pytest

from scheduler_core.rules.groups import (
    GroupStep,
    after_member_cancelled,
    after_member_end,
    held_on_insert,
    outcome,
    skip_error,
)
from scheduler_core.statuses import JobGroupStatus, JobStatus
from tests.unit.conftest import MakeGroup, MakeJob

C, F, X, S = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED
Q, R = JobStatus.QUEUED, JobStatus.RUNNING

TERMINAL_GROUP_STATUSES = [s for s in JobGroupStatus if s.is_terminal]
OPEN_GROUP_STATUSES = [JobGroupStatus.QUEUED, JobGroupStatus.RUNNING]

# --- held_on_insert ---------------------------------------------------------------------


def test_the_first_member_is_not_held() -> None:
    assert held_on_insert(0) is False


@pytest.mark.parametrize("sequence", [1, 2, 99])
def test_every_later_member_is_held_until_its_predecessor_ends(sequence: int) -> None:
    assert held_on_insert(sequence) is True


# --- after_member_end -------------------------------------------------------------------


@pytest.mark.parametrize("member_status", [C, F, X])
@pytest.mark.parametrize("cancel_requested", [False, True])
@pytest.mark.parametrize("group_status", list(JobGroupStatus))
def test_the_group_waits_while_a_retry_of_the_member_is_pending(
    member_status: JobStatus,
    cancel_requested: bool,
    group_status: JobGroupStatus,
    make_job: MakeJob,
    make_group: MakeGroup,
) -> None:
    member = make_job(status=member_status, group_id=1, sequence=0)
    group = make_group(status=group_status, cancel_requested=cancel_requested)
    assert after_member_end(member, group=group, retry_created=True) is GroupStep.WAIT


@pytest.mark.parametrize("member_status", [C, F, X])
@pytest.mark.parametrize("cancel_requested", [False, True])
@pytest.mark.parametrize("group_status", TERMINAL_GROUP_STATUSES)
def test_a_group_that_already_ended_does_nothing_more_when_a_member_ends(
    member_status: JobStatus,
    cancel_requested: bool,
    group_status: JobGroupStatus,
    make_job: MakeJob,
    make_group: MakeGroup,
) -> None:
    member = make_job(status=member_status, group_id=1, sequence=0)
    group = make_group(status=group_status, cancel_requested=cancel_requested)
    assert after_member_end(member, group=group, retry_created=False) is GroupStep.WAIT


@pytest.mark.parametrize("member_status", [C, F, X])
@pytest.mark.parametrize("group_status", OPEN_GROUP_STATUSES)
def test_a_cancel_requested_group_finalizes_whatever_the_member_outcome(
    member_status: JobStatus,
    group_status: JobGroupStatus,
    make_job: MakeJob,
    make_group: MakeGroup,
) -> None:
    member = make_job(status=member_status, group_id=1, sequence=0)
    group = make_group(status=group_status, cancel_requested=True)
    assert after_member_end(member, group=group, retry_created=False) is GroupStep.FINALIZE


@pytest.mark.parametrize("group_status", OPEN_GROUP_STATUSES)
def test_a_member_that_failed_without_a_retry_skips_the_rest(
    group_status: JobGroupStatus, make_job: MakeJob, make_group: MakeGroup
) -> None:
    member = make_job(status=F, group_id=1, sequence=1, attempt=4, max_retries=3)
    group = make_group(status=group_status)
    assert after_member_end(member, group=group, retry_created=False) is GroupStep.SKIP_REST


@pytest.mark.parametrize("member_status", [C, X])
@pytest.mark.parametrize("group_status", OPEN_GROUP_STATUSES)
def test_a_member_that_completed_or_was_cancelled_while_next_releases_the_next(
    member_status: JobStatus,
    group_status: JobGroupStatus,
    make_job: MakeJob,
    make_group: MakeGroup,
) -> None:
    member = make_job(status=member_status, group_id=1, sequence=0)
    group = make_group(status=group_status)
    assert after_member_end(member, group=group, retry_created=False) is GroupStep.RELEASE_NEXT


# --- after_member_cancelled -------------------------------------------------------------


@pytest.mark.parametrize("cancel_requested", [False, True])
@pytest.mark.parametrize("group_status", list(JobGroupStatus))
def test_a_held_member_cancelled_is_merely_out_of_the_line(
    cancel_requested: bool,
    group_status: JobGroupStatus,
    make_job: MakeJob,
    make_group: MakeGroup,
) -> None:
    member = make_job(status=X, held=True, group_id=1, sequence=2)
    group = make_group(status=group_status, cancel_requested=cancel_requested)
    assert after_member_cancelled(member, group=group) is GroupStep.FINALIZE


@pytest.mark.parametrize("group_status", OPEN_GROUP_STATUSES)
def test_the_next_in_line_member_cancelled_releases_the_one_after_it(
    group_status: JobGroupStatus, make_job: MakeJob, make_group: MakeGroup
) -> None:
    member = make_job(status=X, held=False, group_id=1, sequence=1)
    group = make_group(status=group_status)
    assert after_member_cancelled(member, group=group) is GroupStep.RELEASE_NEXT


def test_the_next_in_line_member_cancelled_in_a_cancel_requested_group_finalizes(
    make_job: MakeJob, make_group: MakeGroup
) -> None:
    member = make_job(status=X, held=False, group_id=1, sequence=1)
    group = make_group(status=JobGroupStatus.RUNNING, cancel_requested=True)
    assert after_member_cancelled(member, group=group) is GroupStep.FINALIZE


@pytest.mark.parametrize("group_status", TERMINAL_GROUP_STATUSES)
def test_the_next_in_line_member_cancelled_in_an_ended_group_waits(
    group_status: JobGroupStatus, make_job: MakeJob, make_group: MakeGroup
) -> None:
    member = make_job(status=X, held=False, group_id=1, sequence=1)
    group = make_group(status=group_status)
    assert after_member_cancelled(member, group=group) is GroupStep.WAIT


# --- skip_error -------------------------------------------------------------------------


def test_the_skip_error_names_the_failed_predecessor_and_its_sequence(make_job: MakeJob) -> None:
    failed = make_job(job_id=12, status=F, group_id=1, sequence=3)
    assert skip_error(failed) == (
        "skipped: predecessor job 12 (sequence 3) failed and its retries are exhausted"
    )


# --- outcome ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param([(0, C)], JobGroupStatus.COMPLETED, id="one-completed"),
        pytest.param([(0, C), (1, C), (2, C)], JobGroupStatus.COMPLETED, id="all-completed"),
        pytest.param([(0, C), (1, F), (2, S)], JobGroupStatus.PARTIAL, id="failed-mid-way"),
        pytest.param([(0, F), (1, C)], JobGroupStatus.PARTIAL, id="only-a-later-completed"),
        pytest.param([(0, C), (1, X)], JobGroupStatus.PARTIAL, id="a-cancelled-member-spoils"),
        pytest.param([(0, F), (1, S), (2, S)], JobGroupStatus.FAILED, id="first-failed"),
        pytest.param([(0, F)], JobGroupStatus.FAILED, id="lone-failed"),
        pytest.param([(0, X), (1, F), (2, S)], JobGroupStatus.FAILED, id="cancelled-then-failed"),
        pytest.param([(0, X), (1, S)], JobGroupStatus.FAILED, id="cancelled-and-skipped"),
        pytest.param([(0, X)], JobGroupStatus.CANCELLED, id="lone-cancelled"),
        pytest.param([(0, X), (1, X), (2, X)], JobGroupStatus.CANCELLED, id="every-cancelled"),
    ],
)
def test_the_group_outcome_follows_its_members(
    members: list[tuple[int, JobStatus]], expected: JobGroupStatus, make_group: MakeGroup
) -> None:
    assert outcome(make_group(status=JobGroupStatus.RUNNING), members) is expected


@pytest.mark.parametrize(
    "members",
    [
        pytest.param([(0, C), (1, C)], id="all-completed"),
        pytest.param([(0, C), (1, X)], id="some-completed"),
        pytest.param([(0, F), (1, X)], id="none-completed"),
        pytest.param([(0, X), (1, X)], id="all-cancelled"),
    ],
)
@pytest.mark.parametrize("group_status", OPEN_GROUP_STATUSES)
def test_a_cancel_requested_group_ends_cancelled_whatever_its_members_did(
    members: list[tuple[int, JobStatus]], group_status: JobGroupStatus, make_group: MakeGroup
) -> None:
    group = make_group(status=group_status, cancel_requested=True)
    assert outcome(group, members) is JobGroupStatus.CANCELLED


@pytest.mark.parametrize("pending", [Q, R])
@pytest.mark.parametrize("cancel_requested", [False, True])
@pytest.mark.parametrize("group_status", list(JobGroupStatus))
def test_there_is_no_outcome_while_any_member_is_not_terminal(
    pending: JobStatus,
    cancel_requested: bool,
    group_status: JobGroupStatus,
    make_group: MakeGroup,
) -> None:
    group = make_group(status=group_status, cancel_requested=cancel_requested)
    assert outcome(group, [(0, C), (1, pending), (2, X)]) is None
    assert outcome(group, [(0, C), (1, C), (2, pending)]) is None


def test_there_is_no_outcome_while_a_retry_of_a_member_is_not_terminal(
    make_group: MakeGroup,
) -> None:
    # Sequence 1 failed, its retry (same sequence) is queued behind a backoff.
    assert outcome(make_group(status=JobGroupStatus.RUNNING), [(0, C), (1, F), (1, Q)]) is None


@pytest.mark.parametrize("cancel_requested", [False, True])
@pytest.mark.parametrize("group_status", TERMINAL_GROUP_STATUSES)
def test_a_group_that_already_ended_gets_no_second_outcome(
    cancel_requested: bool, group_status: JobGroupStatus, make_group: MakeGroup
) -> None:
    group = make_group(status=group_status, cancel_requested=cancel_requested)
    assert outcome(group, [(0, C), (1, F), (2, X)]) is None


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param([(0, F), (0, C), (1, C)], JobGroupStatus.COMPLETED, id="retry-completed"),
        pytest.param(
            [(0, F), (0, F), (0, C), (1, C)], JobGroupStatus.COMPLETED, id="second-retry-completed"
        ),
        pytest.param([(0, F), (0, C), (1, F), (1, F)], JobGroupStatus.PARTIAL, id="one-rescued"),
        pytest.param([(0, F), (0, F), (1, S)], JobGroupStatus.FAILED, id="retries-all-failed"),
        pytest.param([(0, F), (0, X)], JobGroupStatus.FAILED, id="retry-cancelled"),
    ],
)
def test_a_sequence_counts_as_completed_when_a_retry_of_it_completed(
    members: list[tuple[int, JobStatus]], expected: JobGroupStatus, make_group: MakeGroup
) -> None:
    assert outcome(make_group(status=JobGroupStatus.RUNNING), members) is expected


def test_the_outcome_does_not_depend_on_the_order_members_are_listed(
    make_group: MakeGroup,
) -> None:
    group = make_group(status=JobGroupStatus.RUNNING)
    members = [(1, C), (0, C), (0, F), (2, S)]
    assert outcome(group, members) is JobGroupStatus.PARTIAL
    assert outcome(group, list(reversed(members))) is JobGroupStatus.PARTIAL


def test_the_outcome_reads_members_from_any_iterable(make_group: MakeGroup) -> None:
    pairs = ((seq, JobStatus(s)) for seq, s in [(0, "COMPLETED"), (1, "COMPLETED")])
    assert outcome(make_group(status=JobGroupStatus.RUNNING), pairs) is JobGroupStatus.COMPLETED
