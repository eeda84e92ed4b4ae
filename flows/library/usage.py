"""Token usage and cost: one row per model call, summed per model, UTC day and group
(`llmsched usage`) and counted against the spending caps (caps.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import sqlalchemy as sa

from flows.library import store
from flows.library.context import RunContext, current_run_context
from flows.library.errors import InvalidQueryError
from flows.library.prices import cost_usd, is_hosted
from flows.library.registry import end_of, start_of
from flows.library.tables import UsageRecord
from flows.llm import Completion, resolve_model
from scheduler_core.values import utcnow

USAGE = UsageRecord.__table__

SummaryKey = Literal["model", "day", "group"]
SUMMARY_KEYS: tuple[SummaryKey, ...] = ("model", "day", "group")
_COLUMNS = {"model": USAGE.c.model, "day": USAGE.c.day, "group": USAGE.c.group_id}


def record_usage(
    model: str,
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    context: RunContext | None = None,
    created_at: datetime | None = None,
    db: str | None = None,
) -> UsageRecord:
    """Store one call's tokens and cost (from the model's price; None when unknown),
    linked to `context`, else to the current flow run's job, group and flow run."""
    provider = resolve_model(model).provider
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidQueryError(f"{name} must be a whole number, got {value!r}")
        if value is not None and value < 0:
            raise InvalidQueryError(f"{name} must be at least 0, got {value}")
    ctx = context if context is not None else current_run_context()
    when = start_of(created_at) if created_at is not None else utcnow()
    record = UsageRecord(
        model=model,
        provider=provider,
        input_tokens=input_tokens or 0,
        output_tokens=output_tokens or 0,
        cost_usd=cost_usd(model, input_tokens, output_tokens),
        hosted=is_hosted(model),
        job_id=ctx.job_id,
        group_id=ctx.group_id,
        flow_run_id=ctx.flow_run_id,
        day=when.astimezone(UTC).date(),
        created_at=when,
    )
    values = record.model_dump(exclude={"id"})
    record.id = store.write(
        lambda conn: int(conn.execute(sa.insert(USAGE).values(**values)).inserted_primary_key[0]),
        db,
    )
    return record


def record_completion(
    completion: Completion, *, context: RunContext | None = None, db: str | None = None
) -> UsageRecord:
    """`record_usage` for a finished call, with the tokens its provider reported."""
    return record_usage(
        completion.model,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        context=context,
        db=db,
    )


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of a usage summary; a key not summed by is None."""

    model: str | None
    day: date | None
    group_id: int | None
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    """The sum of the known costs."""
    unpriced_calls: int
    """Calls to a hosted model whose price was unknown: `cost_usd` leaves them out."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["day"] = self.day.isoformat() if self.day else None
        return data


def usage_summary(
    by: Sequence[str] = SUMMARY_KEYS,
    *,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    group_id: int | None = None,
    flow_run_id: str | None = None,
    db: str | None = None,
) -> list[UsageRow]:
    """Tokens, calls and cost summed per combination of `by` ("model", "day", "group"),
    ordered by those keys; `by=()` gives one total row (none when nothing was used).
    `flow_run_id`: only one run's calls (what an output's sidecar reports)."""
    keys = list(dict.fromkeys(by))
    unknown = [key for key in keys if key not in _COLUMNS]
    if unknown or isinstance(by, str):
        raise InvalidQueryError(
            f"usage can be summed by {', '.join(SUMMARY_KEYS)}; got {list(by)!r}"
        )
    store.checked_optional_id(group_id, name="group id", db=db)
    columns = [_COLUMNS[key].label(key) for key in keys]
    unpriced = sa.func.sum(sa.case((USAGE.c.cost_usd.is_(None) & USAGE.c.hosted, 1), else_=0))
    query = sa.select(
        *columns,
        sa.func.count().label("calls"),
        sa.func.coalesce(sa.func.sum(USAGE.c.input_tokens), 0).label("input_tokens"),
        sa.func.coalesce(sa.func.sum(USAGE.c.output_tokens), 0).label("output_tokens"),
        sa.func.coalesce(sa.func.sum(USAGE.c.cost_usd), 0.0).label("cost_usd"),
        sa.func.coalesce(unpriced, 0).label("unpriced_calls"),
    )
    if since is not None:
        query = query.where(USAGE.c.created_at >= start_of(since))
    if until is not None:
        query = query.where(USAGE.c.created_at < end_of(until))
    if group_id is not None:
        query = query.where(USAGE.c.group_id == group_id)
    if flow_run_id is not None:
        query = query.where(USAGE.c.flow_run_id == flow_run_id)
    if columns:
        query = query.group_by(*columns).order_by(*(c.asc().nulls_first() for c in columns))
    rows = store.read(lambda conn: conn.execute(query).all(), db)
    return [
        UsageRow(
            model=getattr(row, "model", None),
            day=getattr(row, "day", None),
            group_id=getattr(row, "group", None),
            calls=int(row.calls),
            input_tokens=int(row.input_tokens),
            output_tokens=int(row.output_tokens),
            cost_usd=float(row.cost_usd),
            unpriced_calls=int(row.unpriced_calls),
        )
        for row in rows
        if row.calls
    ]


def hosted_spent(
    *, day: date | None = None, group_id: int | None = None, db: str | None = None
) -> float:
    """USD spent on hosted APIs on `day` (UTC) and/or by group `group_id`."""
    query = sa.select(sa.func.coalesce(sa.func.sum(USAGE.c.cost_usd), 0.0)).where(USAGE.c.hosted)
    if day is not None:
        query = query.where(USAGE.c.day == day)
    if group_id is not None:
        query = query.where(USAGE.c.group_id == group_id)
    return float(store.read(lambda conn: conn.execute(query).scalar_one(), db))
