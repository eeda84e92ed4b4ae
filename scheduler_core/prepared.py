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


class Prepared:
    """One statement, compiled for one dialect."""

    __slots__ = (
        "_converters",
        "_dialect",
        "_fixed",
        "_keys",
        "_names",
        "_positional",
        "_results",
        "_row",
        "sql",
        "statement",
    )

    def __init__(self, statement: sa.ClauseElement, dialect: sa.Dialect) -> None:
        compiled: Any = statement.compile(dialect=dialect)  # a SQLCompiler
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a prepared statement cannot hold expanding (IN) parameters")
        self.statement = statement
        self.sql = compiled.string
        self._dialect = dialect
        self._positional = compiled.positional
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        self._names: list[str] = list((compiled.positiontup or ()) if self._positional else by_name)
        # Per parameter: the caller's key, or None for a constant of the statement (its
        # value converted here, once); the converters of the caller's values by position.
        self._keys: list[str | None] = []
        self._fixed: list[Any] = []
        self._converters: list[tuple[int, Callable[[Any], Any]]] = []
        for i, name in enumerate(self._names):
            bind = by_name[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self._keys.append(name)
                self._fixed.append(None)
                if processor is not None:
                    self._converters.append((i, processor))
            else:
                value = bind.effective_value
                self._keys.append(None)
                self._fixed.append(value if processor is None else processor(value))
        columns = list(getattr(statement, "exported_columns", ()))
        processors = [
            col.type.dialect_impl(dialect).result_processor(dialect, None) for col in columns
        ]
        # Only the columns that need converting (timestamps, JSON, booleans on SQLite).
        self._results: list[tuple[int, Callable[[Any], Any]]] = [
            (i, p) for i, p in enumerate(processors) if p is not None
        ]
        self._row: Any = (
            namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
        )

    def _parameters(self, params: Mapping[str, Any]) -> Any:
        values = [
            fixed if key is None else params[key]
            for key, fixed in zip(self._keys, self._fixed, strict=True)
        ]
        for i, convert in self._converters:
            values[i] = convert(values[i])
        return values if self._positional else dict(zip(self._names, values, strict=True))

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


def prepared(conn: Connection, statement: sa.ClauseElement) -> Prepared:
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
