"""Prepared statements: the same SQL, values and errors as SQLAlchemy's own execution."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from scheduler_core import Job, JobGroup, JobRun, JobStatus, SchedulerService
from scheduler_core.columns import UTCDateTime
from scheduler_core.prepared import Prepared, prepared
from scheduler_core.store.hot import first_head, heads_skip_locked, type_params
from scheduler_core.store.rows import changed, value_in
from scheduler_core.store.rows import group as _group
from scheduler_core.store.rows import job as _job
from scheduler_core.store.rows import run as _run
from scheduler_core.tables import GROUPS as G
from scheduler_core.tables import JOBS as J
from scheduler_core.tables import RUNS as R
from tests.conftest import POSTGRES_URL, fresh_database


def _fill(svc: SchedulerService) -> None:
    svc.register("noop", lambda p: None)
    svc.register("boom", lambda p: 1 / 0)
    svc.enqueue_job("noop", {"nested": {"a": [1, 2.5, None, "ü"]}}, priority=3)
    svc.enqueue_job("boom", max_retries=1, not_before=datetime(2000, 1, 1, tzinfo=UTC))
    svc.create_job_group([{"job_type": "noop"}, {"job_type": "boom", "max_retries": 0}], name="g")
    while svc.dispatch_one() is not None:
        pass


def test_rows_read_through_the_driver_equal_sqlalchemys(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    _fill(svc)
    for table in (J, R, G):
        stmt = sa.select(table).order_by(*table.primary_key.columns)
        ours = svc.db.read(lambda c, stmt=stmt: prepared(c, stmt).all(c))
        theirs = svc.db.read(lambda c, stmt=stmt: c.execute(stmt).all())
        assert len(ours) == len(theirs) > 0
        assert [tuple(r) for r in ours] == [tuple(r) for r in theirs]
        assert [r._asdict() for r in ours] == [r._asdict() for r in theirs]


def test_public_values_built_from_rows_equal_validated_ones(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    _fill(svc)
    for table, build, model in ((J, _job, Job), (R, _run, JobRun), (G, _group, JobGroup)):
        rows = svc.db.read(lambda c, t=table: c.execute(sa.select(t)).all())
        for row in rows:
            built, validated = build(row), model.model_validate(row._mapping)
            assert built == validated
            assert built.model_dump() == validated.model_dump()
            assert built.model_dump_json() == validated.model_dump_json()
            assert built.model_fields_set == set(model.model_fields)


def test_values_built_from_rows_with_more_columns_equal_validated_ones(
    open_service: Callable[..., SchedulerService],
) -> None:
    """A claim's head (a job with its class) and a member's end (a run's end with its
    group) carry more columns than the value's: only the value's are taken."""
    svc = open_service()
    _fill(svc)
    for table, model in ((J, Job), (G, JobGroup)):
        stmt = sa.select(sa.literal("extra").label("class_name"), table)
        for row in svc.db.read(lambda c, s=stmt: prepared(c, s).all(c)):
            built = value_in(model, row)
            validated = model.model_validate(
                {k: v for k, v in row._asdict().items() if k in model.model_fields}
            )
            assert built == validated
            assert built.model_dump_json() == validated.model_dump_json()


def test_a_value_changed_without_pydantic_equals_its_model_copy(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    _fill(svc)
    now = datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    for job in svc.list_jobs():
        ours = changed(job, status=JobStatus.CANCELLED, finished_at=now)
        theirs = job.model_copy(update={"status": JobStatus.CANCELLED, "finished_at": now})
        assert ours == theirs and ours is not job
        assert ours.model_dump_json() == theirs.model_dump_json()
        assert ours.model_fields_set == theirs.model_fields_set
        assert job.finished_at != now  # the original is left as it was


def test_driver_errors_are_raised_as_sqlalchemy_errors(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    svc.register("noop", lambda p: None)
    job = svc.enqueue_job("noop")
    duplicate = sa.insert(J).values(job_id=sa.bindparam("id"), job_type="noop")
    with pytest.raises(sa.exc.IntegrityError):
        svc.db.write(lambda c: Prepared(duplicate, c.dialect).run(c, {"id": job.job_id}))
    assert [j.job_id for j in svc.list_jobs()] == [job.job_id]


def test_expanding_parameters_are_refused_at_compile_time() -> None:
    stmt = sa.select(J.c.job_id).where(J.c.job_type.in_(sa.bindparam("types", expanding=True)))
    with pytest.raises(ValueError, match="expanding"):
        Prepared(stmt, sa.create_engine("sqlite://").dialect)


def test_sqlite_timestamps_keep_sqlalchemys_text_format() -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    stock = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    for value in (
        datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=2))),
    ):
        assert ours(value) == stock(value.astimezone(UTC).replace(tzinfo=None))
    parse = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert parse("2026-01-31 12:00:00") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse(stock(datetime(2026, 1, 31, 12, 0, 0, 5))) == datetime(
        2026, 1, 31, 12, 0, 0, 5, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        ours(datetime(2026, 1, 31))


def test_values_built_without_reading_back_equal_the_rows(
    open_service: Callable[..., SchedulerService],
) -> None:
    svc = open_service()
    svc.register("noop", lambda p: None)
    svc.register("boom", lambda p: 1 / 0)
    queued = svc.enqueue_job("noop", {"n": [1, {"x": None}]}, priority=2)
    assert queued == svc.get_job(queued.job_id or 0)
    svc.create_job_group([{"job_type": "noop"}, {"job_type": "boom", "max_retries": 0}])
    for _ in range(3):
        claim = svc.claim_next()
        assert claim is not None
        assert claim.job == svc.get_job(claim.job.job_id or 0)
        assert claim.run == svc.get_job_run(claim.run.run_id or 0)
        finish = svc.execute_claim(claim)
        assert finish.job == svc.get_job(claim.job.job_id or 0)
        assert finish.run == svc.get_job_run(claim.run.run_id or 0)


def test_the_sqlite_claim_seeks_the_dispatch_index_whatever_the_queue(tmp_path: Path) -> None:
    with SchedulerService.open(f"sqlite:///{tmp_path / 'jobs.db'}") as svc:
        svc.register("noop", lambda p: None)
        svc.enqueue_jobs([{"job_type": "noop"}] * 2000)

        def plan(conn: sa.Connection) -> list[str]:
            claim = prepared(conn, first_head(1))
            args = claim.arguments({"t0": "noop", "now": datetime.now(UTC)})
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {claim.sql}", tuple(args))
            return [row[3] for row in rows]

        steps = svc.db.read(plan)
    # Each resource's head and its slot's RUNNING count are index searches; no step
    # scans jobs.
    assert sum("USING INDEX ix_job_dispatch" in s for s in steps) == 1, steps
    assert sum("USING COVERING INDEX ix_job_running_slot" in s for s in steps) == 1, steps
    assert not [s for s in steps if s.startswith("SCAN") and "job" in s.split()], steps


@pytest.mark.skipif(not POSTGRES_URL, reason="a PostgreSQL plan")
def test_the_postgresql_heads_read_no_class_by_scanning_the_jobs(tmp_path: Path) -> None:
    """A class with no queued job is asked whether it had one that other claims held:
    that too is a seek of the dispatch index, not a scan of the table (its cost would
    grow with the table, on every claim)."""
    with fresh_database("postgres", tmp_path) as url, SchedulerService.open(url) as svc:
        svc.register("noop", lambda p: None)
        svc.register("idle", lambda p: None, resource="idle")
        svc.set_resource_limit("idle", 1)
        svc.enqueue_jobs([{"job_type": "noop", "priority": n % 10} for n in range(3000)])

        def plan(conn: sa.Connection) -> str:
            conn.exec_driver_sql("ANALYZE job")
            heads = prepared(conn, heads_skip_locked(2))
            args = heads.arguments(
                {**type_params(["noop", "idle"]), "now": datetime.now(UTC), "n": 1}
            )
            rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) {heads.sql}", args)
            return "\n".join(row[0] for row in rows)

        steps = svc.db.write(plan)
    assert "Seq Scan on job" not in steps, steps
    assert steps.count("ix_job_dispatch") == 2, steps  # the noop head, the idle class's look


def test_every_sqlite_query_on_a_status_reads_through_an_index(tmp_path: Path) -> None:
    """Jobs of a status with a partial index (QUEUED, RUNNING) are read through it:
    each query the service runs on a job's status, off the hot path too, is planned
    here with its values, and none may read the whole job table (a list in the primary
    key's order did, before it was told otherwise)."""
    with SchedulerService.open(f"sqlite:///{tmp_path / 'jobs.db'}") as svc:
        svc.register("job", lambda p: None)
        svc.enqueue_jobs([{"job_type": "job"}] * 200)
        ran: list[tuple[str, Any]] = []

        def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if "status" in statement and "FROM job" in statement:
                ran.append((statement, parameters))

        sa.event.listen(svc.db.engine, "before_cursor_execute", record)
        calls: dict[str, Callable[[], Any]] = {
            "list QUEUED": lambda: svc.list_jobs(JobStatus.QUEUED),
            "list RUNNING": lambda: svc.list_jobs("RUNNING"),
            "queued in order": svc.list_queued_jobs,
            "queued without an external id": svc.queued_without_external_id,
            "running at recovery": lambda: svc.db.read(svc.store.running_claims_by_worker),
            "direct start's count": lambda: svc.execute_direct("job", {}, timeout=10),
        }
        seen: dict[str, list[tuple[str, Any]]] = {}
        for name, call in calls.items():
            ran.clear()
            call()
            seen[name] = list(ran)
            assert ran, f"{name}: no query on the job table's status was seen"
        sa.event.remove(svc.db.engine, "before_cursor_execute", record)

        def plan(conn: sa.Connection, statement: str, parameters: Any) -> list[str]:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return [row[3] for row in rows]

        plans = {
            name: [
                step for s, p in queries for step in svc.db.read(lambda c, s=s, p=p: plan(c, s, p))
            ]
            for name, queries in seen.items()
        }
    scans = {name: steps for name, steps in plans.items() if "SCAN job" in steps}
    assert not scans, scans
