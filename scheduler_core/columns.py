"""Column types the values need on every backend: aware UTC timestamps and JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops tzinfo otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # SQLite keeps timestamps as text. Writing and parsing that text with the datetime
    # module's own ISO functions gives the same text SQLAlchemy's DATETIME writes
    # ("2026-01-31 12:00:00.000000") in one C call each way: a job reads and writes
    # about a dozen timestamps.

    def bind_processor(self, dialect: sa.Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is not None and value.tzinfo is UTC:  # the scheduler's own clock
                return value.isoformat(" ", "microseconds")[:-6]  # less its "+00:00"
            naive = self.process_bind_param(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parse = datetime.fromisoformat

        def process(value: str | None) -> datetime | None:
            return None if value is None else parse(value).replace(tzinfo=UTC)

        return process


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


# The engines' JSON text (database.py). A job writes its params and its artifacts twice:
# orjson writes each in a tenth of the json module's time. What orjson refuses and the
# json module takes (integers beyond 64 bits, lone surrogates, keys that are not strings)
# goes to the json module. Reading stays with the json module: orjson reads integers
# beyond 64 bits as floats.


def json_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value)


class Seconds(sa.TypeDecorator[float]):
    """A duration in seconds, a float as both drivers return it. Its own type because the
    prepared statements (prepared.py) ask for result processors without a column type
    code, which PostgreSQL's Float processor cannot answer; none is needed."""

    impl = sa.Float()
    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        return None
