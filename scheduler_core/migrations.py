"""In-place schema migrations, keyed on `schema_version`.

`create_schema` creates missing tables at the current version; a database at an older
version gets each pending step, in order, inside one transaction that also records the
new version, under a lock (PostgreSQL advisory lock, SQLite write lock) so that
processes opening it at once migrate it exactly once. The DDL goes through Alembic's
operations, which speak both dialects.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.engine import Connection

from scheduler_core import tables
from scheduler_core.errors import ConfigurationError
from scheduler_core.values import utcnow
from scheduler_core.wakeups import install_trigger

_MIGRATE_LOCK_KEY = 0x5C4EE


def _job_timeout(ops: Operations) -> None:
    """v2: a per-job execution deadline (NULL: the job type's, else the setting)."""
    ops.add_column("job", sa.Column("timeout_seconds", sa.Float(), nullable=True))


def _job_control(ops: Operations) -> None:
    """v3: a cancel request for a running job, and the job's external (Prefect) id."""
    ops.add_column(
        "job",
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    ops.add_column("job", sa.Column("external_id", sa.String(64), nullable=True))
    ops.create_index("ix_job_external_id", "job", ["external_id"], unique=True)


def _keys(ops: Operations) -> None:
    """v4: idempotency keys of jobs and groups (one row per key)."""
    for table in ("job", "job_group"):
        ops.add_column(table, sa.Column("key", sa.String(256), nullable=True))
        ops.create_index(f"ix_{table}_key", table, ["key"], unique=True)


def _slots(ops: Operations) -> None:
    """v5: the slot a running job occupies (a resource class, or a worker's instance of it)."""
    ops.add_column("job", sa.Column("slot", sa.String(64), nullable=True))
    ops.execute("UPDATE job SET slot = resource WHERE status = 'RUNNING'")
    running = tables.only_where("status = 'RUNNING'")
    ops.create_index("ix_job_running_slot", "job", ["slot", "status"], **running)


def _wakeups(ops: Operations) -> None:
    """v6: PostgreSQL notifies workers of changed jobs (wakeups.py)."""
    install_trigger(ops.get_bind())


def _partial_ids(ops: Operations) -> None:
    """v7: the unique indexes of jobs' external ids and keys hold only the jobs that have
    one (an enqueue without them writes no entry)."""
    for column in ("external_id", "key"):
        ops.drop_index(f"ix_job_{column}", table_name="job")
        where = tables.only_where(f"{column} IS NOT NULL")
        ops.create_index(f"ix_job_{column}", "job", [column], unique=True, **where)


def _narrower_wakeups(ops: Operations) -> None:
    """v8: PostgreSQL notifies workers only of changes another worker could claim for."""
    install_trigger(ops.get_bind())


def _queued_dispatch_index(ops: Operations) -> None:
    """v9: the dispatch index holds only QUEUED jobs (tables.py `ix_job_dispatch`)."""
    ops.drop_index("ix_job_dispatch", table_name="job")
    ops.create_index(
        "ix_job_dispatch",
        "job",
        list(tables.DISPATCH_INDEX_COLUMNS),
        **tables.DISPATCH_INDEX_ONLY,
    )


STEPS: dict[int, Callable[[Operations], None]] = {
    2: _job_timeout,
    3: _job_control,
    4: _keys,
    5: _slots,
    6: _wakeups,
    7: _partial_ids,
    8: _narrower_wakeups,
    9: _queued_dispatch_index,
}
"""The step that brings a database to each version."""


def migrate(conn: Connection) -> int:
    """Bring `conn`'s database to tables.SCHEMA_VERSION; the version it was at.

    Runs in the caller's transaction (begun IMMEDIATE on SQLite).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATE_LOCK_KEY)))
    current = conn.execute(sa.select(sa.func.max(tables.SchemaVersion.version))).scalar()
    if current is None:  # a new database: its tables were created at this version
        install_trigger(conn)
        _record(conn, tables.SCHEMA_VERSION)
        return tables.SCHEMA_VERSION
    if current > tables.SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {current} is newer than this release supports "
            f"({tables.SCHEMA_VERSION}); upgrade prefect-llm-scheduler"
        )
    ops = Operations(MigrationContext.configure(conn))
    for version in range(current + 1, tables.SCHEMA_VERSION + 1):
        STEPS[version](ops)
        _record(conn, version)
    return int(current)


def _record(conn: Connection, version: int) -> None:
    conn.execute(sa.insert(tables.SchemaVersion).values(version=version, applied_at=utcnow()))
