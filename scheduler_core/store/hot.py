"""The statements on the dispatch path, built once: building SQL per call costs more
than running it on SQLite. They run through `prepared` (compiled once per dialect, on
the driver's cursor).

Each statement keeps a rule of rules/ in SQL form: the dispatch order
(rules/ordering.py), "room in a resource class" (rules/resources.py `has_room`), a
direct reservation pausing the queue, and a held group member never being dispatched
(rules/groups.py). Tests hold each to its Python statement.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from scheduler_core.rules.ordering import DISPATCH_ORDER
from scheduler_core.statuses import (
    JobGroupStatus,
    JobRunStatus,
    JobStatus,
    ReservationStatus,
)
from scheduler_core.tables import GROUPS as G
from scheduler_core.tables import JOBS as J
from scheduler_core.tables import RESERVATIONS as RES
from scheduler_core.tables import RESOURCES as RC
from scheduler_core.tables import RUNS as R
from scheduler_core.values import Job, JobRun

_P = sa.bindparam
QUEUED, RUNNING = JobStatus.QUEUED.value, JobStatus.RUNNING.value
NOT_HELD = J.c.held == sa.false()

JOB_INSERT_KEYS = (
    "job_type",
    "params",
    "priority",
    "position",
    "status",
    "resource",
    "held",
    "group_id",
    "sequence",
    "attempt",
    "max_retries",
    "not_before",
    "origin",
    "created_at",
    "queued_at",
    "timeout_seconds",
    "cancel_requested",
    "external_id",
    "key",
)
RUN_INSERT_KEYS = (
    "job_id",
    "status",
    "started_at",
    "worker_id",
    "params_snapshot",
    "artifacts",
    "log_path",
)
# The columns a new row leaves empty (besides its id), so that a value can be built
# from what was inserted instead of reading the row back.
UNSET_JOB = dict.fromkeys(set(Job.model_fields) - {"job_id", *JOB_INSERT_KEYS})
UNSET_RUN = dict.fromkeys(set(JobRun.model_fields) - {"run_id", *RUN_INSERT_KEYS})

# PostgreSQL advisory lock: claims hold it shared, reservations and direct starts
# exclusively, so a reservation never races a claim that has not committed yet.
DISPATCH_LOCK_KEY = 0x5C4ED


def dispatch_order(table: Any = J) -> list[Any]:
    """ORDER BY of rules/ordering.py's DISPATCH_ORDER on `table` (or an alias of it)."""
    columns = table.c
    return [columns[name].desc() if desc else columns[name] for name, desc in DISPATCH_ORDER]


def status_in(statuses: Iterable[str], jobs: Any = J) -> Any:
    """SQL: a job's status is one of `statuses`, written as literals, not bound values:
    SQLite uses a partial index (ix_job_dispatch, ix_job_running_slot) only for a
    literal condition, and so does a PostgreSQL plan prepared for any value."""
    values: list[Any] = [sa.literal_column(f"'{JobStatus(s).value}'") for s in statuses]
    return jobs.c.status == values[0] if len(values) == 1 else jobs.c.status.in_(values)


IS_QUEUED = status_in([QUEUED])


def running(slot: Any, jobs: Any = J) -> sa.Select[Any]:
    """How many RUNNING jobs occupy `slot` (a name, or a correlated column): a search of
    the index ix_job_running_slot. `jobs`: an alias of the job table, for a count inside
    a statement on the table itself."""
    return sa.select(sa.func.count()).where(status_in([RUNNING], jobs), jobs.c.slot == slot)


Bindings = tuple[tuple[str, str], ...]
"""A worker's (resource class, instance) pairs (Registry.bind), sorted: a cache key."""


def slot_of(resource: Any, bindings: Bindings) -> Any:
    """SQL: the slot a job of class `resource` occupies when this worker runs it: the
    instance the worker binds the class to, else the class itself."""
    if not bindings:
        return resource
    return sa.case(dict(bindings), value=resource, else_=resource)


def slot_name(resource: str, bindings: Bindings) -> str:
    """`slot_of` for a job of class `resource`, in Python."""
    for name, instance in bindings:
        if name == resource:
            return instance
    return resource


def has_room(bindings: Bindings) -> Any:
    """SQL of rules/resources.has_room for the resource class row RC: uncapped, or its
    slot (for this worker's `bindings`) runs fewer jobs than the cap."""
    busy = running(slot_of(RC.c.name, bindings)).correlate(RC).scalar_subquery()
    return sa.or_(RC.c.limit.is_(None), busy < RC.c.limit)


# A direct reservation that pauses the queue (the claim's `now` bound as "now").
RESERVED = sa.exists(
    sa.select(RES.c.reservation_id).where(
        RES.c.status == ReservationStatus.ACTIVE.value, RES.c.expires_at > _P("now")
    )
)


def group_start(group_id: Any) -> sa.Update:
    """A group starts with the start of its first member (`b_now`): QUEUED -> RUNNING."""
    return (
        sa.update(G)
        .where(G.c.group_id == group_id, G.c.status == JobGroupStatus.QUEUED.value)
        .values(status=JobGroupStatus.RUNNING.value, started_at=_P("b_now"))
    )


def start_with_run(start: sa.Update) -> sa.Select[Any]:
    """PostgreSQL: a job's `start` (an update returning its row), its run and its
    group's start in one round trip (data-modifying WITHs; the group's is run though
    nothing refers to it). It returns the job's id and its run's, or no row when the
    start updated none: the claim has the rest of the job's row from its heads, read
    with the row locked (store/claims.py), and a start changes only what it was given:
    the columns are not sent twice."""
    started = start.cte("started")
    return sa.select(
        started.c.job_id,
        sa.insert(R)
        .from_select(
            list(RUN_INSERT_KEYS),
            sa.select(
                started.c.job_id,
                sa.literal(JobRunStatus.RUNNING.value),
                *(_P(f"v_{k}", type_=R.c[k].type) for k in RUN_INSERT_KEYS[2:]),
            ),
        )
        .returning(R.c.run_id)
        .cte("run")
        .c.run_id,
    ).add_cte(
        group_start(sa.select(started.c.group_id).scalar_subquery())
        .returning(G.c.group_id)
        .cte("group_started")
    )


# A run's end: built by functions, so that an end can return the plugins' reads as well
# (plugins.py `reads_with_end`, `ending` below): each is given as extra labelled columns.
def run_end(*extra: Any) -> Any:
    """Close a RUNNING run. It returns the only column of a RUNNING run that changes
    after its start (store/leases.py `set_flow_run_id`); the rest is known
    (store/finish.py)."""
    return (
        sa.update(R)
        .where(R.c.run_id == _P("b_run_id"), R.c.status == JobRunStatus.RUNNING.value)
        .values(
            status=_P("b_status"),
            finished_at=_P("b_now"),
            exit_code=_P("b_exit_code"),
            error=_P("b_error"),
            artifacts=_P("b_artifacts", type_=R.c.artifacts.type),
        )
        .returning(R.c.flow_run_id, *extra)
    )


def job_end() -> Any:
    return (
        sa.update(J)
        .where(J.c.job_id == _P("b_job_id"), J.c.status == RUNNING)
        .values(status=_P("b_status"), finished_at=_P("b_now"))
    )


def run_and_job_end(*extra: Any) -> Any:
    """PostgreSQL: both ends in one round trip; the run is closed only if its job was.
    The end takes the shared dispatch lock too (DISPATCH_LOCK_KEY): the slot's next
    claim follows in the same transaction and needs it, and would spend a round trip of
    its own on it (store/claims.py `claim_many(after_end=True)`)."""
    lock = sa.func.pg_advisory_xact_lock_shared(DISPATCH_LOCK_KEY).label("dispatch_locked")
    ended = job_end().returning(J.c.job_id).cte("ended")
    return run_end(lock, *extra).where(sa.exists(sa.select(sa.literal(1)).select_from(ended)))


def member_end(*extra: Any) -> Any:
    """The same for a group member, with its group's row (`b_group_id`) read in that
    round trip too: the member's end applies the group's rules next (store/finish.py)."""
    closed = run_and_job_end().cte("closed")
    return sa.select(closed.c.flow_run_id, closed.c.dispatch_locked, *G.c, *extra).select_from(
        closed.outerjoin(G, G.c.group_id == _P("b_group_id"))
    )


_ENDINGS: dict[tuple[Any, tuple[tuple[str, Any], ...]], Any] = {}


def ending(build: Any, reads: tuple[tuple[str, Any], ...]) -> Any:
    """The end statement `build` makes (`run_end`, `run_and_job_end` or `member_end`)
    with the plugins' reads, each labelled as its name; built once per set of reads."""
    key = (build, reads)
    made = _ENDINGS.get(key)
    if made is None:
        made = _ENDINGS[key] = build(*(expr.label(label) for label, expr in reads))
    return made


class Hot:
    """The prebuilt statements."""

    limits = sa.select(RC.c.name, RC.c.limit)
    running_of = running(_P("resource"))
    lock_resource = sa.select(RC.c.name).where(RC.c.name == _P("resource")).with_for_update()
    dispatch_lock_shared = sa.select(sa.func.pg_advisory_xact_lock_shared(_P("key")))
    dispatch_lock_exclusive = sa.select(sa.func.pg_advisory_xact_lock(_P("key")))
    start_job = (
        sa.update(J)
        .where(J.c.job_id == _P("b_job_id"), J.c.status == QUEUED)
        .values(
            status=RUNNING, started_at=_P("b_now"), worker_id=_P("b_worker_id"), slot=_P("b_slot")
        )
        .returning(*J.c)
    )
    insert_run = (
        sa.insert(R).values({k: _P(f"v_{k}") for k in RUN_INSERT_KEYS}).returning(R.c.run_id)
    )
    start_job_with_run = start_with_run(start_job)
    # The same for a job of a capped class, started only if its slot (`b_slot`, locked
    # by the claim: store/claims.py) has room under the cap `b_limit`, counted in this
    # statement: one round trip less than a count of its own.
    start_capped_job_with_run = start_with_run(
        start_job.where(
            running(_P("b_slot"), J.alias("running_job")).scalar_subquery() < _P("b_limit")
        )
    )
    insert_job = sa.insert(J).returning(J.c.job_id, sort_by_parameter_order=True)
    insert_one_job = (
        sa.insert(J).values({k: _P(f"v_{k}") for k in JOB_INSERT_KEYS}).returning(J.c.job_id)
    )
    get_group = sa.select(G).where(G.c.group_id == _P("b_group_id"))
    # A member ended: its group's next queued member released, in one statement.
    _next = J.alias("next_member")
    release_next = (
        sa.update(J)
        .where(
            J.c.job_id
            == sa.select(_next.c.job_id)
            .where(
                _next.c.group_id == _P("b_group_id"),
                _next.c.status == QUEUED,
                _next.c.sequence > _P("b_sequence"),
            )
            .order_by(_next.c.sequence, _next.c.job_id)
            .limit(1)
            .scalar_subquery()
        )
        .values(held=False)
        .returning(J.c.job_id)
    )
    start_group = group_start(_P("b_group_id"))
    finish_job = job_end()


# The bind values of the statements above, named once.


def start_binds(job_id: int, *, now: Any, worker_id: str, slot: str) -> dict[str, Any]:
    """Hot.start_job's (and the PostgreSQL starts' `b_` values)."""
    return {"b_job_id": job_id, "b_now": now, "b_worker_id": worker_id, "b_slot": slot}


def run_values(
    job_id: int, *, now: Any, worker_id: str, params: Any, log_path: str | None
) -> dict[str, Any]:
    """A new RUNNING run's columns (RUN_INSERT_KEYS)."""
    return {
        "job_id": job_id,
        "status": JobRunStatus.RUNNING.value,
        "started_at": now,
        "worker_id": worker_id,
        "params_snapshot": params,
        "artifacts": [],
        "log_path": log_path,
    }


def value_binds(values: dict[str, Any]) -> dict[str, Any]:
    """Column values as an insert's `v_` bind values (Hot.insert_run, Hot.insert_one_job)."""
    return {f"v_{k}": v for k, v in values.items()}


def end_binds(
    run_id: int, job_id: int, *, status: str, now: Any, exit_code: Any, error: Any, artifacts: Any
) -> dict[str, Any]:
    """A run's end's (run_end, job_end, run_and_job_end, member_end)."""
    return {
        "b_run_id": run_id,
        "b_job_id": job_id,
        "b_status": status,
        "b_now": now,
        "b_exit_code": exit_code,
        "b_error": error,
        "b_artifacts": artifacts,
    }


def type_params(job_types: Any) -> dict[str, Any]:
    """The bind values of `eligible(len(job_types))`'s job type list."""
    return {f"t{i}": name for i, name in enumerate(job_types)}


@functools.cache
def eligible(n_types: int) -> sa.Select[Any]:
    """QUEUED, released, due jobs of n registered types, in dispatch order."""
    return (
        sa.select(J)
        .where(
            IS_QUEUED,
            NOT_HELD,
            J.c.job_type.in_([_P(f"t{i}") for i in range(n_types)]),
            sa.or_(J.c.not_before.is_(None), J.c.not_before <= _P("now")),
        )
        .order_by(*dispatch_order())
        .limit(1)
    )


@functools.cache
def heads_skip_locked(n_types: int, bindings: Bindings = ()) -> sa.Select[Any]:
    """PostgreSQL, in one round trip: each resource class (`class_name`, `class_limit`)
    with the first `n` jobs of its queue that no other claim has locked, locked, if the
    class's slot has room and no direct reservation pauses the queue (else a row with
    no job); `reserved` says whether one does, `passed_over` whether the class had a
    claimable job that other transactions held, all of them (read only for a class
    that got no job)."""
    claimable = sa.and_(J.c.resource == RC.c.name, has_room(bindings), ~RESERVED)
    head = (
        eligible(n_types)
        .where(claimable)
        .limit(_P("n"))
        .with_for_update(skip_locked=True)
        .lateral("head")
    )
    # The first claimable job's id, not EXISTS: PostgreSQL drops an EXISTS subquery's
    # ORDER BY and LIMIT and may then plan it as a scan of the table, which reads every
    # row for a class with no queued job, on every claim; kept, they make it a seek of
    # ix_job_dispatch.
    first_claimable = eligible(n_types).where(claimable).with_only_columns(J.c.job_id)
    passed_over = sa.case(
        (head.c.job_id.is_(None), first_claimable.scalar_subquery().is_not(None)),
        else_=sa.false(),
    )
    return (
        sa.select(
            RC.c.name.label("class_name"),
            RC.c.limit.label("class_limit"),
            RESERVED.label("reserved"),
            passed_over.label("passed_over"),
            *head.c,
        )
        .select_from(RC.outerjoin(head, sa.true()))
        .order_by(RC.c.name)
    )


@functools.cache
def first_head(n_types: int, bindings: Bindings = ()) -> sa.Select[Any]:
    """SQLite (under the write lock the transaction took): the first job, in dispatch
    order, among the heads of every resource class whose slot (for this worker's
    `bindings`) has room, unless a direct reservation pauses the queue; its id and
    resource. Each head is an index seek, so the cost does not grow with the queue.

    A select and an update by id (Hot.start_job) cost about half of one UPDATE with
    this select as its subquery, as SQLite runs it.
    """
    head_id = (
        eligible(n_types)
        .with_only_columns(J.c.job_id)
        .where(J.c.resource == RC.c.name)
        .correlate(RC)
        .scalar_subquery()
    )
    head = J.alias("head")
    return (
        sa.select(head.c.job_id, head.c.resource)
        .select_from(RC.join(head, head.c.job_id == head_id))
        .where(has_room(bindings), ~RESERVED)
        .order_by(*dispatch_order(head))
        .limit(1)
    )
