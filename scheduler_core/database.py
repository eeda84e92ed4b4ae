"""Engines, schema creation and write transactions that survive a locked or flaky database."""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from scheduler_core.columns import json_dumps
from scheduler_core.errors import ConfigurationError, DatabaseUnavailableError
from scheduler_core.files import FILE_MODE_ENV, create_private, other_access, private_dir
from scheduler_core.migrations import migrate
from scheduler_core.redaction import redact

log = logging.getLogger(__name__)
T = TypeVar("T")

_IMMEDIATE = "scheduler_immediate"
_JSON_TEXT: dict[str, Any] = {"json_serializer": json_dumps}
CLOSE_WAIT_SECONDS = 5.0  # how long closing waits for an enqueue still on the kept connection


def normalise_url(url: str) -> str:
    """Accept the URLs users write (`postgresql://`, `postgres://`) and pick our drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not (url.startswith("sqlite") or url.startswith("postgresql+")):
        raise ConfigurationError(
            f"unsupported database URL {redact(url)!r}: use sqlite:///path/to/jobs.db "
            "or postgresql://user@host/dbname"
        )
    return url


def create_engine(url: str) -> Engine:
    """SQLite in WAL mode with write transactions taken up front; PostgreSQL via psycopg 3.

    No ping before each PostgreSQL checkout (a round trip per transaction): a connection
    that died with a server restart fails its first statement with a transient error,
    SQLAlchemy then drops every pooled connection of that age, and `Database` reruns the
    transaction on a new one.

    The pool hands out the connection returned last (LIFO): a slot's transactions then
    run on one connection and one server backend, not in turn on every pooled one, and
    connections beyond what the load needs stay idle. A one-slot drain: 8 % more jobs/s
    and 9 % less client CPU per job (docs/benchmarks.md)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_use_lifo=True, **_JSON_TEXT)


def _sqlite_engine(url: str) -> Engine:
    parsed = sa.engine.make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    if not in_memory and parsed.database and parsed.database.startswith("~"):
        parsed = parsed.set(database=str(Path(parsed.database).expanduser()))
        url = parsed.render_as_string(hide_password=False)
    if in_memory:
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=StaticPool, **_JSON_TEXT
        )
    else:
        _create_database_file(Path(parsed.database or "").expanduser().resolve())
        # Transactions always end in commit or rollback, so the pool's reset is redundant.
        # Each thread keeps its connection between transactions (see Database), so the
        # pool must not cap how many threads there are.
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=10,
            max_overflow=-1,
            pool_reset_on_return=None,
            **_JSON_TEXT,
        )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Driver-level autocommit, so the "begin" hook below decides how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # First, so the pragmas below wait too. Short: our own retry loop (db_retry_seconds)
        # decides how long a locked database is waited out.
        cur.execute("PRAGMA busy_timeout=2000")
        if not in_memory and cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write transaction takes the lock up front: no deadlock on lock upgrade,
        # and every read inside it sees the state it will write against.
        dbapi = conn.connection.dbapi_connection
        if dbapi.in_transaction:  # type: ignore[union-attr]
            return  # begun by Database on the driver (see Database._transaction)
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        dbapi.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")  # type: ignore[union-attr]

    return engine


def _create_database_file(path: Path) -> None:
    """Create a missing database file (and its directory) private before SQLite opens it:
    SQLite gives the -wal and -shm files the main file's mode. An existing file keeps its
    mode; one other users may read is reported, since it holds webhook secrets."""
    try:
        private_dir(path.parent)
        if create_private(path):
            return
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the database file {path}: {exc.strerror or exc}; give a writable "
            "path in LLMSCHED_DATABASE_URL (or LLMSCHED_HOME)"
        ) from exc
    wider = other_access(path)
    if wider:
        log.warning(
            "action=database_file_readable path=%s extra_mode=%o fix='chmod go-rwx %s "
            "(or set %s=group to share it with the group)'",
            path,
            wider,
            path,
            FILE_MODE_ENV,
        )


def create_schema(engine: Engine) -> None:
    """Create missing tables, then migrate an older schema in place (migrations.py);
    safe to call on every open."""
    SQLModel.metadata.create_all(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            migrate(conn)


# PostgreSQL conditions that pass: every connection exception (class 08), the server
# shutting down, crashed or starting up (57P01-57P03), a read-only server after a
# failover (25006), too many connections (53300), serialization failures and deadlocks.
_PG_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "25006", "53300", "40001", "40P01"})
GENERATED_FUNCTION_PREFIX = "llmsched_cycle_"
"""The names of the functions the store creates when first needed (store/cycle.py): one
found missing (dropped, or a schema restored without it) is made again by the rerun."""
_UNDEFINED_FUNCTION = "42883"
_TRANSIENT_TEXT = (
    "database is locked",
    "database table is locked",
    "busy",
    "disk i/o error",
    "could not serialize",
    "deadlock detected",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "connection is closed",
    "connection is lost",
    "the database system is",  # ... shutting down / starting up / in recovery mode
    "could not connect",
    "connection timeout expired",
    "no connection to the server",
    "ssl syscall error",
    "read-only transaction",  # a failover's old primary
)


def is_transient(exc: BaseException) -> bool:
    """Locked, busy, dropped or restarting: worth running the whole transaction again."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig: BaseException = exc.orig or exc
    else:  # raised by the driver directly (our BEGIN goes straight to it)
        orig = exc
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and (state.startswith("08") or state in _PG_TRANSIENT_STATES):
        return True
    if state == _UNDEFINED_FUNCTION and GENERATED_FUNCTION_PREFIX in str(orig):
        return True
    operational = isinstance(exc, sa.exc.OperationalError | sqlite3.OperationalError) or (
        type(orig).__name__ == "OperationalError"
    )
    text = str(orig).lower()
    return operational and any(t in text for t in _TRANSIENT_TEXT)


class _Kept:
    """A thread's connection, returned to the pool when the thread ends."""

    __slots__ = ("__weakref__", "busy", "conn")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.busy = False  # inside a transaction

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    def __del__(self) -> None:
        self.close()


_PG_IDLE = 0  # libpq's PQTRANS_IDLE: no transaction begun on the server


@contextmanager
def outside_transaction(conn: Connection) -> Iterator[bool]:
    """PostgreSQL: inside, each statement on `conn` commits by itself, if `conn`'s
    transaction has not begun on the server yet (True); else (False) nothing changes.
    After, `conn` is back to transactions; one that cannot be (lost meanwhile) is
    discarded, never returned to the pool in autocommit."""
    dbapi: Any = conn.connection.dbapi_connection
    if dbapi.info.transaction_status != _PG_IDLE:
        yield False
        return
    dbapi.autocommit = True
    try:
        yield True
    finally:
        try:
            dbapi.autocommit = False
        except Exception:
            conn.invalidate()


def autocommit_connection(engine: Engine) -> Connection:
    """A pooled PostgreSQL connection whose every statement is its own transaction."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


class _Standalone:
    """PostgreSQL: one autocommit connection kept for the writes of a single statement
    (`Database.write_standalone`: an enqueue). Taking a connection from the pool,
    switching it to autocommit and back, and returning it cost 40-100 µs of client CPU
    per enqueue, near the INSERT's own 100 µs in psycopg (docs/benchmarks.md). The pool
    keeps an idle connection open anyway, so this one costs the server no extra
    connection. One thread uses it at a time; a writer that finds it taken uses a
    pooled connection, as before."""

    __slots__ = ("_conn", "_engine", "_lock")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def take(self) -> Connection | None:
        """The kept connection (opened if there is none), this thread's until
        `give_back`; None while another thread has it."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn = self._conn
            if conn is None or conn.closed or conn.invalidated:
                conn = self._conn = autocommit_connection(self._engine)
        except BaseException:
            self._lock.release()
            raise
        return conn

    def give_back(self, failure: BaseException | None) -> None:
        """A connection whose statement failed is not kept: it goes back to the pool,
        whose reset leaves it clean, or discards it if the database dropped it."""
        try:
            if failure is not None and self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()
        finally:
            self._lock.release()

    def close(self, timeout: float) -> None:
        """Return the connection to the pool once no thread is using it; one still in
        use after `timeout` seconds is left to its thread (`dispose` then closes the
        pool's other connections)."""
        if not self._lock.acquire(timeout=timeout):
            return
        try:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()
        finally:
            self._lock.release()


class Database:
    """The one place that opens transactions; retries transient failures, never half-writes.

    On a SQLite file each thread keeps its connection between transactions: taking
    one from the pool and giving it back costs more than a dispatch statement. On
    PostgreSQL connections are pooled per transaction (a server's connections are
    scarce; a local file's are not), except the one kept for single statements
    (`_Standalone`).
    """

    def __init__(self, engine: Engine, *, retry_seconds: float = 30.0) -> None:
        self.engine = engine
        self.retry_seconds = retry_seconds
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.in_memory = self.is_sqlite and engine.url.database in (None, "", ":memory:")
        # Called with the connection after every write transaction, committed or not
        # (the service's plugins: plugins.py `after_write`).
        self.on_write_end: Callable[[Connection, bool], None] | None = None
        self._keep = self.is_sqlite and not self.in_memory
        # SQLite has one writer: this process's writers take turns here rather than in
        # the driver's busy handler, which sleeps 1-100 ms between tries.
        self._write_turn = threading.RLock() if self.is_sqlite else None
        self._local = threading.local()
        self._kept: weakref.WeakSet[_Kept] = weakref.WeakSet()
        self._standalone = _Standalone(engine)

    def _kept_connection(self) -> _Kept | None:
        """This thread's kept connection, unless it is inside a transaction already."""
        if not self._keep:
            return None
        kept: _Kept | None = getattr(self._local, "kept", None)
        if kept is None or kept.conn.closed or kept.conn.invalidated:
            kept = self._local.kept = _Kept(self.engine.connect())
            self._kept.add(kept)
        return None if kept.busy else kept

    @contextmanager
    def _transaction(self, *, write: bool, standalone: bool = False) -> Iterator[Connection]:
        turn = self._write_turn if write else None
        if turn is not None and not turn.acquire(timeout=self.retry_seconds):
            raise sqlite3.OperationalError("database is locked (waited for this process's turn)")
        try:
            with self._transaction_in_turn(write=write, standalone=standalone) as conn:
                yield conn
        finally:
            if turn is not None:
                turn.release()

    @contextmanager
    def _transaction_in_turn(
        self, *, write: bool, standalone: bool = False
    ) -> Iterator[Connection]:
        if standalone and not self.is_sqlite:
            with self._autocommit() as conn:
                yield conn
            return
        kept = self._kept_connection()
        release = kept is None  # not kept, or a transaction inside another one
        conn = self.engine.connect() if kept is None else kept.conn
        committed = False
        try:
            if kept is None:
                if self.is_sqlite:
                    conn.execution_options(**{_IMMEDIATE: write})
                with conn.begin():
                    yield conn
            else:
                kept.busy = True
                try:
                    with self._driver_transaction(conn, write=write):
                        yield conn
                finally:
                    kept.busy = False
            committed = True
        except BaseException:
            # A failed transaction may leave the connection in any state: never reuse
            # a kept one (the driver's transaction may still be open), start afresh.
            if not release:
                conn.invalidate()
            release = True
            raise
        finally:
            if write and self.on_write_end is not None:
                self.on_write_end(conn, committed)
            if release:
                conn.close()

    @contextmanager
    def _autocommit(self) -> Iterator[Connection]:
        """PostgreSQL: a connection whose every statement is its own transaction."""
        kept = self._standalone.take()
        conn = kept or autocommit_connection(self.engine)
        try:
            yield conn
        except BaseException as exc:
            self._autocommit_end(conn, kept, exc)
            raise
        self._autocommit_end(conn, kept, None)

    def _autocommit_end(
        self, conn: Connection, kept: Connection | None, failure: BaseException | None
    ) -> None:
        try:
            if self.on_write_end is not None:
                self.on_write_end(conn, failure is None)
        finally:
            if kept is not None:
                self._standalone.give_back(failure)
            else:
                conn.close()  # the pool restores the isolation level

    @staticmethod
    @contextmanager
    def _driver_transaction(conn: Connection, *, write: bool) -> Iterator[None]:
        """A kept SQLite connection's transaction, begun and ended on the driver: about
        half the cost of SQLAlchemy's, paid three times per job. A statement run through
        SQLAlchemy inside it makes SQLAlchemy begin too (the `begin` hook sees the open
        transaction and adds nothing); SQLAlchemy then ends it."""
        dbapi: Any = conn.connection.dbapi_connection
        dbapi.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield
        except BaseException:
            if conn.in_transaction():
                conn.rollback()
            else:
                dbapi.rollback()
            raise
        if conn.in_transaction():
            conn.commit()
        else:
            dbapi.commit()

    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run fn in one write transaction; a transient error reruns it whole."""
        return self._run(fn, write=True)

    def write_standalone(self, fn: Callable[[Connection], T]) -> T:
        """`write` for an `fn` whose statements each stand alone: each is atomic, and
        none needs another undone if a later one fails (one INSERT). On PostgreSQL they
        run without BEGIN and COMMIT, one round trip each instead of three in all."""
        return self._run(fn, write=True, standalone=True)

    def read(self, fn: Callable[[Connection], T]) -> T:
        return self._run(fn, write=False)

    def _run(self, fn: Callable[[Connection], T], *, write: bool, standalone: bool = False) -> T:
        try:  # the common case, without the cost of setting up the retry machinery
            with self._transaction(write=write, standalone=standalone) as conn:
                return fn(conn)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("action=db_retry reason=%s", exc)
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_delay(self.retry_seconds),
            wait=wait_exponential_jitter(initial=0.01, max=1.0),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt, self._transaction(write=write, standalone=standalone) as conn:
                    return fn(conn)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise DatabaseUnavailableError(
                f"database unavailable after retrying for {self.retry_seconds:.0f}s: {cause}; "
                "check that the database is reachable and not locked by another program"
            ) from cause
        raise AssertionError("unreachable")  # pragma: no cover

    def ping(self) -> bool:
        """Does the database take a write transaction now (on SQLite: the write lock)?
        One statement, no retries."""
        try:
            with self._transaction(write=True) as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        for kept in list(self._kept):
            kept.close()
        self._standalone.close(timeout=CLOSE_WAIT_SECONDS)
        self.engine.dispose()
