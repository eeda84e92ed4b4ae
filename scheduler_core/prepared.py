"""Hot statements compiled once per dialect and run on the driver's own cursor.

SQLAlchemy's per-call work around a statement (cache key, execution context, result
wrapping) costs about 35 µs here, several times what SQLite needs to run a dispatch
statement, and a job takes about eight of them. A prebuilt Core statement is still
the one definition of its SQL: it is compiled by SQLAlchemy, and its parameters and
results go through the same type processors SQLAlchemy would apply. Driver errors
are raised as SQLAlchemy's exceptions, as `Connection.execute` would raise them.

A statement's parameters, and each row it returns, are built by a function generated
for it (as `collections.namedtuple` generates its class's methods): one expression per
value, with no loop, zip or per-value test at run time. A job runs six of these
statements, and generic loops over their values cost more than SQLite's own work.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


class Prepared:
    """One statement, compiled for one dialect: its `sql`, the driver's arguments for a
    mapping of bind values (`arguments`) and a returned row's converted value (`convert`),
    also for code that runs it on a driver connection of its own."""

    __slots__ = ("_dialect", "_keep_cursor", "_row", "arguments", "convert", "sql", "statement")

    def __init__(self, statement: sa.ClauseElement, dialect: sa.Dialect) -> None:
        compiled: Any = statement.compile(dialect=dialect)  # a SQLCompiler
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a prepared statement cannot hold expanding (IN) parameters")
        self.statement = statement
        self.sql = compiled.string
        self._dialect = dialect
        self._keep_cursor = dialect.name == "postgresql"
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        names = list((compiled.positiontup or ()) if compiled.positional else by_name)
        # Per parameter, an expression of the caller's mapping `p`: its value, converted
        # when its type says so, or a constant of the statement (converted here, once).
        env: dict[str, Any] = {}
        values: list[str] = []
        for i, name in enumerate(names):
            bind = by_name[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                value = f"p[{name!r}]"
                if processor is not None:
                    env[f"c{i}"] = processor
                    value = f"c{i}({value})"
            else:
                constant = bind.effective_value
                env[f"f{i}"] = constant if processor is None else processor(constant)
                value = f"f{i}"
            values.append(value)
        if compiled.positional:
            built = "(" + "".join(f"{v}, " for v in values) + ")"
        else:
            built = "{" + "".join(f"{n!r}: {v}, " for n, v in zip(names, values, strict=True)) + "}"
        self.arguments: Callable[[Mapping[str, Any]], Any] = _generated(f"lambda p: {built}", env)
        # Per column, the driver's value, converted where its type needs it (timestamps,
        # JSON, booleans on SQLite).
        columns = list(getattr(statement, "exported_columns", ()))
        self._row: Any = (
            namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
        )
        env = {"new": tuple.__new__, "Row": self._row}
        fields: list[str] = []
        for i, col in enumerate(columns):
            processor = col.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                env[f"c{i}"] = processor
            fields.append(f"r[{i}]" if processor is None else f"c{i}(r[{i}])")
        self.convert: Callable[[Any], Any] = (
            _generated("lambda r: new(Row, (" + "".join(f"{f}, " for f in fields) + "))", env)
            if columns
            else _no_rows
        )

    def run(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """Execute in `conn`'s transaction; returns the driver's cursor, whose result
        lasts until the connection's next statement (read it before that; never close
        it: on PostgreSQL the connection keeps it)."""
        fairy = conn.connection
        dbapi = fairy.dbapi_connection
        assert dbapi is not None, "the connection is closed"
        args = self.arguments(params or {})
        cursor = fairy.info.get(_CURSOR) if self._keep_cursor else None
        if cursor is None:
            cursor = dbapi.cursor()
            if self._keep_cursor:
                fairy.info[_CURSOR] = cursor
        try:
            cursor.execute(self.sql, args)
        except self._dialect.loaded_dbapi.Error as exc:
            fairy.info.pop(_CURSOR, None)
            cursor.close()
            raise sa.exc.DBAPIError.instance(
                self.sql, args, exc, self._dialect.loaded_dbapi.Error, dialect=self._dialect
            ) from exc
        return cursor

    def all(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        cursor = self.run(conn, params)
        try:
            return [self.convert(raw) for raw in cursor.fetchall()]
        finally:
            self._done(cursor)

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any | None:
        """The first row (named fields, `_asdict()`), or None; the rest are discarded."""
        cursor = self.run(conn, params)
        try:
            raw = cursor.fetchone()
            return None if raw is None else self.convert(raw)
        finally:
            self._done(cursor)

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def rowcount(self, conn: Connection, params: Mapping[str, Any] | None = None) -> int:
        cursor = self.run(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            self._done(cursor)

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> None:
        """Run for its effect (a lock, a write); any rows are discarded."""
        self._done(self.run(conn, params))

    def _done(self, cursor: Any) -> None:
        """A result read: SQLite's cursor is closed (its statement reset), PostgreSQL's
        is kept by its connection for the next statement. psycopg builds a cursor's
        adapters anew for each one: about 15 µs of a statement's 60 here."""
        if not self._keep_cursor:
            cursor.close()


_CURSOR = "scheduler_core.prepared.cursor"  # in the pool's record of a connection


def _generated(source: str, env: dict[str, Any]) -> Any:
    """The function of generated `source`, whose only names are those of `env` (the
    constants and converters it uses)."""
    return eval(source, {"__builtins__": {}, **env})


def _no_rows(raw: Any) -> Any:
    raise TypeError("the statement returns no rows")


_compiled: weakref.WeakKeyDictionary[sa.Dialect, dict[int, Prepared]] = weakref.WeakKeyDictionary()
_last: tuple[sa.Dialect | None, dict[int, Prepared]] = (None, {})  # a process has one, mostly


def prepared(conn: Connection, statement: sa.ClauseElement) -> Prepared:
    """`statement` compiled for `conn`'s dialect, once.

    Only for statements that live as long as the process (module or class constants):
    the cache is keyed by the statement's identity.
    """
    global _last
    dialect, by_id = _last
    if dialect is not conn.dialect:
        dialect = conn.dialect
        by_id = _compiled.get(dialect) or _compiled.setdefault(dialect, {})
        _last = (dialect, by_id)
    entry = by_id.get(id(statement))
    if entry is None or entry.statement is not statement:
        entry = by_id[id(statement)] = Prepared(statement, dialect)
    return entry
