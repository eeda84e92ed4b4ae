"""The library's one way into the database: the worker's own (LLMSCHED_DATABASE_URL, else
the SQLite file in LLMSCHED_HOME), opened once per process and URL, its tables created
on first use. Transactions go through `scheduler_core.database.Database`, which reruns
them on a locked, busy or restarting database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.app_database import app_database_url
from flows.library.tables import LIBRARY_METADATA
from scheduler_core.database import Database, create_engine
from scheduler_core.settings import SchedulerSettings
from scheduler_core.validation import check_id, check_optional_id, max_id

T = TypeVar("T")

_CREATE_LOCK_KEY = 0x11B4A7
"""PostgreSQL advisory lock taken while the tables are created, so that processes opening
a new database at once create them once."""

_opened: dict[str, Database] = {}
_lock = threading.Lock()


def database_url(db: str | None = None) -> str:
    """`db`, else the worker's database (flows/app_database.py)."""
    return app_database_url(db)


def library_db(db: str | None = None) -> Database:
    """The process's `Database` for `db` (see database_url), its tables created once."""
    url = database_url(db)
    with _lock:
        found = _opened.get(url)
        if found is not None:
            return found
        settings = SchedulerSettings()
        database = Database(create_engine(url), retry_seconds=settings.db_retry_seconds)
        try:
            database.write(_create_tables)
        except BaseException:
            database.dispose()
            raise
        _opened[url] = database
        return database


def _create_tables(conn: Connection) -> None:
    """Missing tables and indexes only: existing ones are left as they are."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CREATE_LOCK_KEY)))
    LIBRARY_METADATA.create_all(conn)


def close_library(db: str | None = None) -> None:
    """Dispose of the engine for `db`, or of every engine this process opened."""
    with _lock:
        urls = list(_opened) if db is None else [database_url(db)]
        for url in urls:
            database = _opened.pop(url, None)
            if database is not None:
                database.dispose()


def read(fn: Callable[[Connection], T], db: str | None = None) -> T:
    return library_db(db).read(fn)


def write(fn: Callable[[Connection], T], db: str | None = None) -> T:
    return library_db(db).write(fn)


def checked_id(value: object, *, name: str, db: str | None = None) -> int:
    """An id the backend's columns hold (InvalidIdError otherwise)."""
    return check_id(value, name=name, high=max_id(library_db(db).engine.dialect.name))


def checked_optional_id(value: object, *, name: str, db: str | None = None) -> int | None:
    return check_optional_id(value, name=name, high=max_id(library_db(db).engine.dialect.name))
