"""Hot statements compiled once per dialect and run on the driver's own cursor.

SQLAlchemy's per-call work around a statement (cache key, execution context, result
wrapping) costs about 35 µs here, several times what SQLite needs to run a dispatch
statement, and a job takes about eight of them. A prebuilt Core statement is still
the one definition of its SQL: it is compiled by SQLAlchemy, and its parameters and
results go through the same type processors SQLAlchemy would apply. Driver errors
are raised as SQLAlchemy's exceptions, as `Connection.execute` would raise them.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement, compiled for one dialect."""

    __slots__ = ("_binds", "_dialect", "_positional", "_results", "_row", "sql", "statement")

    def __init__(self, statement: sa.Executable, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a prepared statement cannot hold expanding (IN) parameters")
        self.statement = statement
        self.sql = compiled.string
        self._dialect = dialect
        self._positional = compiled.positional
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        names = compiled.positiontup if compiled.positional else list(by_name)
        # (name, fixed value or a marker that the caller supplies it, bind processor)
        self._binds: list[tuple[str, bool, Any, _Processor]] = []
        for name in names or ():
            bind = by_name[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self._binds.append((name, bind.required, bind.effective_value, processor))
        columns = list(getattr(statement, "exported_columns", ()))
        processors = [
            col.type.dialect_impl(dialect).result_processor(dialect, None) for col in columns
        ]
        # Only the columns that need converting (timestamps, JSON, booleans on SQLite).
        self._results: list[tuple[int, Callable[[Any], Any]]] = [
            (i, p) for i, p in enumerate(processors) if p is not None
        ]
        self._row = (
            namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
            if columns
            else None
        )

    def _parameters(self, params: Mapping[str, Any]) -> Any:
        values = [
            (name, params[name] if required else fixed, processor)
            for name, required, fixed, processor in self._binds
        ]
        if self._positional:
            return tuple(v if p is None else p(v) for _, v, p in values)
        return {name: v if p is None else p(v) for name, v, p in values}

    def run(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """Execute in `conn`'s transaction; returns the driver's cursor."""
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None, "the connection is closed"
        args = self._parameters(params or {})
        cursor = dbapi.cursor()
        try:
            cursor.execute(self.sql, args)
        except self._dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise sa.exc.DBAPIError.instance(
                self.sql, args, exc, self._dialect.loaded_dbapi.Error, dialect=self._dialect
            ) from exc
        return cursor

    def _convert(self, raw: Any) -> Any:
        assert self._row is not None, "the statement returns no rows"
        values = list(raw)
        for i, processor in self._results:
            values[i] = processor(values[i])
        return self._row._make(values)

    def all(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        cursor = self.run(conn, params)
        try:
            return [self._convert(raw) for raw in cursor.fetchall()]
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any | None:
        """The first row (named fields, `_asdict()`), or None; the rest are discarded."""
        cursor = self.run(conn, params)
        try:
            raw = cursor.fetchone()
            return None if raw is None else self._convert(raw)
        finally:
            cursor.close()

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def rowcount(self, conn: Connection, params: Mapping[str, Any] | None = None) -> int:
        cursor = self.run(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


_compiled: weakref.WeakKeyDictionary[sa.Dialect, dict[int, Prepared]] = weakref.WeakKeyDictionary()


def prepared(conn: Connection, statement: sa.Executable) -> Prepared:
    """`statement` compiled for `conn`'s dialect, once.

    Only for statements that live as long as the process (module or class constants):
    the cache is keyed by the statement's identity.
    """
    by_id = _compiled.get(conn.dialect)
    if by_id is None:
        by_id = _compiled[conn.dialect] = {}
    entry = by_id.get(id(statement))
    if entry is None or entry.statement is not statement:
        entry = by_id[id(statement)] = Prepared(statement, conn.dialect)
    return entry
