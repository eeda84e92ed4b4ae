"""A database created by an earlier release is migrated in place when it is opened."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from scheduler_core import JobStatus, SchedulerService
from scheduler_core.errors import DuplicateExternalIdError
from scheduler_core.tables import SCHEMA_VERSION
from tests.conftest import TEST_SETTINGS


def _set_version(conn: sa.Connection, version: int) -> None:
    """Record the database as one an earlier release left at `version`."""
    conn.execute(sa.text("DELETE FROM schema_version"))
    conn.execute(
        sa.text("INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)"),
        {"v": version, "t": "2026-01-01 00:00:00+00:00"},
    )


def _definitions(conn: sa.Connection, *names: str) -> list[str]:
    """The CREATE INDEX statements of the indexes `names`, as the database keeps them."""
    if conn.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE name IN :names"
    else:
        query = (
            "SELECT indexdef FROM pg_indexes "
            "WHERE indexname IN :names AND schemaname = current_schema()"
        )
    statement = sa.text(query).bindparams(sa.bindparam("names", expanding=True))
    return [str(d) for (d,) in conn.execute(statement, {"names": list(names)})]


def test_a_version_1_database_gains_the_later_job_columns_and_keeps_its_jobs(
    db_url: str,
) -> None:
    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:
        svc.register("job", lambda params: None)
        job = svc.enqueue_job("job", {"kept": True})
        running = svc.enqueue_job("job", {"running": True}, priority=1)
        claim = svc.claim_next()
        assert claim is not None and claim.job.job_id == running.job_id

        def downgrade(conn: sa.Connection) -> None:  # the schema as release 1 wrote it
            for index in (
                "ix_job_external_id",
                "ix_job_key",
                "ix_job_group_key",
                "ix_job_running_slot",
            ):
                conn.execute(sa.text(f"DROP INDEX {index}"))
            for column in ("timeout_seconds", "cancel_requested", "external_id", "key", "slot"):
                conn.execute(sa.text(f"ALTER TABLE job DROP COLUMN {column}"))
            conn.execute(sa.text("ALTER TABLE job_group DROP COLUMN key"))
            _set_version(conn, 1)

        svc.db.write(downgrade)
    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:
        svc.register("job", lambda params: None)
        versions = svc.db.read(
            lambda c: [v for (v,) in c.execute(sa.text("SELECT version FROM schema_version"))]
        )
        assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))
        assert svc.get_job(job.job_id or 0).params == {"kept": True}
        kept = svc.get_job(job.job_id or 0)
        assert kept.timeout_seconds is None and kept.external_id is None
        assert kept.cancel_requested is False and kept.key is None and kept.slot is None
        # A job running across the upgrade still occupies its class's slot.
        assert svc.get_job(running.job_id or 0).slot == "default"
        svc.enqueue_job("job", timeout_seconds=5, key="after the upgrade")
        assert svc.enqueue_job("job", key="after the upgrade").job_id == running.job_id + 1  # type: ignore[operator]
        assert [j.status for j in svc.list_jobs()] == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.QUEUED,
        ]
    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:  # opening again: no-op
        assert (
            svc.db.read(
                lambda c: c.execute(sa.text("SELECT COUNT(*) FROM schema_version")).scalar_one()
            )
            == SCHEMA_VERSION
        )


def test_a_version_6_database_gets_partial_id_indexes_that_still_refuse_duplicates(
    db_url: str,
) -> None:
    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:
        svc.register("job", lambda params: None)
        first = svc.enqueue_job("job", external_id="flow-run-1", key="k1")

        def to_version_6(conn: sa.Connection) -> None:  # unique over every row, NULLs too
            for column in ("external_id", "key"):
                conn.execute(sa.text(f"DROP INDEX ix_job_{column}"))
                conn.execute(sa.text(f"CREATE UNIQUE INDEX ix_job_{column} ON job ({column})"))
            _set_version(conn, 6)

        svc.db.write(to_version_6)
    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:
        svc.register("job", lambda params: None)

        found = svc.db.read(lambda c: _definitions(c, "ix_job_external_id", "ix_job_key"))
        assert len(found) == 2 and all("IS NOT NULL" in d for d in found), found
        assert svc.enqueue_job("job", key="k1").job_id == first.job_id  # still one per key
        with pytest.raises(DuplicateExternalIdError):
            svc.enqueue_job("job", external_id="flow-run-1")
        svc.enqueue_job("job")  # jobs without either: any number
        svc.enqueue_job("job")
        assert len(svc.list_jobs()) == 3


def test_a_version_8_database_gets_a_dispatch_index_of_queued_jobs_and_claims_in_order(
    db_url: str,
) -> None:
    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:
        svc.register("job", lambda params: None)
        done = svc.enqueue_job("job", priority=9)
        ran = svc.dispatch_one()
        assert ran is not None and ran[0].job_id == done.job_id
        queued = [svc.enqueue_job("job", {"n": n}, priority=p) for n, p in enumerate([1, 5, 3])]

        def to_version_8(conn: sa.Connection) -> None:  # every job in it, by status first
            conn.execute(sa.text("DROP INDEX ix_job_dispatch"))
            conn.execute(
                sa.text(
                    "CREATE INDEX ix_job_dispatch ON job "
                    "(status, held, resource, priority DESC, position, job_id)"
                )
            )
            _set_version(conn, 8)

        svc.db.write(to_version_8)
    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:
        svc.register("job", lambda params: None)
        (found,) = svc.db.read(lambda c: _definitions(c, "ix_job_dispatch"))
        assert "WHERE" in found and "'QUEUED'" in found and "(held," in found, found
        assert svc.get_job(done.job_id or 0).status == JobStatus.COMPLETED
        order = []
        while (ran := svc.dispatch_one()) is not None:
            order.append(ran[0].job_id)
        assert order == [queued[i].job_id for i in (1, 2, 0)]
        assert svc.list_jobs(JobStatus.QUEUED) == []
        assert len(svc.list_jobs(JobStatus.COMPLETED)) == 4
