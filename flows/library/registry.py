"""The output registry: every story and research card a pipeline wrote, with what made it
(model, tokens, cost, structure, cards used) and the run it came from."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.library import store
from flows.library.context import RunContext, current_run_context
from flows.library.errors import InvalidQueryError, OutputNotFoundError
from flows.library.prices import cost_usd
from flows.library.tables import OUTPUT_KINDS, OutputItem, OutputTag
from flows.llm import resolve_model
from scheduler_core.representation import iso
from scheduler_core.values import utcnow

ITEMS = OutputItem.__table__
TAGS = OutputTag.__table__
MAX_LIMIT = 10_000
"""The most rows one listing returns."""
MAX_LIST_ITEMS = 1000
"""The most tags, key concepts or cards one output may list."""


def normalise(text: str) -> str:
    """Case-folded, whitespace collapsed: how topics and tags are compared."""
    return " ".join(str(text).split()).casefold()


def clean_list(values: Iterable[str] | None, *, name: str) -> list[str]:
    """Stripped, non-blank, first occurrence of each; a bare string is refused (it would
    otherwise become a list of its characters)."""
    if values is None:
        return []
    if isinstance(values, str | bytes):
        raise InvalidQueryError(f"{name} must be a list of strings, not one string: [{values!r}]")
    items = [" ".join(str(v).split()) for v in values]
    kept = list(dict.fromkeys(item for item in items if item))
    if len(kept) > MAX_LIST_ITEMS:
        raise InvalidQueryError(f"{name} has {len(kept)} entries; at most {MAX_LIST_ITEMS}")
    return kept


def record_output(
    *,
    kind: str,
    path: str | Path,
    title: str = "",
    topic: str = "",
    tags: Sequence[str] = (),
    key_concepts: Sequence[str] = (),
    structure: str | None = None,
    structure_kind: str | None = None,
    cards_used: Sequence[int] = (),
    model: str = "",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    duration_seconds: float | None = None,
    nearest_id: int | None = None,
    similarity: float | None = None,
    context: RunContext | None = None,
    db: str | None = None,
) -> OutputItem:
    """Register an output file; returns it with its id. The cost comes from the model's
    price (prices.py); the job, group and flow run from `context`, else from the current
    flow run. Every card in `cards_used` must be a registered research card."""
    if kind not in OUTPUT_KINDS:
        raise InvalidQueryError(f"kind must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
    if not str(path).strip():
        raise InvalidQueryError("path must name the output file")
    ctx = context if context is not None else current_run_context()
    cards = [store.checked_id(c, name="cards_used entry", db=db) for c in cards_used]
    if nearest_id is not None:
        store.checked_id(nearest_id, name="nearest_id", db=db)
    if similarity is not None and not math.isfinite(similarity):
        raise InvalidQueryError(f"similarity must be a finite number, got {similarity!r}")
    item = OutputItem(
        kind=kind,
        path=str(path),
        title=" ".join(title.split()),
        topic=" ".join(topic.split()),
        topic_key=normalise(topic),
        tags=clean_list(tags, name="tags"),
        key_concepts=clean_list(key_concepts, name="key_concepts"),
        structure=structure,
        structure_kind=structure_kind,
        cards_used=list(dict.fromkeys(cards)),
        model=model,
        provider=resolve_model(model).provider if model else "",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        duration_seconds=duration_seconds,
        cost_usd=cost_usd(model, input_tokens, output_tokens) if model else None,
        job_id=ctx.job_id,
        group_id=ctx.group_id,
        flow_run_id=ctx.flow_run_id,
        nearest_id=nearest_id,
        similarity=similarity,
        created_at=utcnow(),
    )
    values = item.model_dump(exclude={"id"})

    def insert(conn: Connection) -> int:
        _check_cards(conn, item.cards_used)
        new_id = int(conn.execute(sa.insert(ITEMS).values(**values)).inserted_primary_key[0])
        keys = dict.fromkeys(normalise(tag) for tag in item.tags)
        if keys:
            conn.execute(sa.insert(TAGS), [{"tag": k, "output_id": new_id} for k in keys])
        return new_id

    item.id = store.write(insert, db)
    return item


def _check_cards(conn: Connection, ids: list[int]) -> None:
    if not ids:
        return
    rows = conn.execute(sa.select(ITEMS.c.id, ITEMS.c.kind).where(ITEMS.c.id.in_(ids))).all()
    kinds = {row.id: row.kind for row in rows}
    for card in ids:
        if card not in kinds:
            raise OutputNotFoundError(f"cards_used names output {card}, which does not exist")
        if kinds[card] != "research":
            raise InvalidQueryError(
                f"cards_used names output {card}, a {kinds[card]}, not a research card"
            )


def set_nearest(
    output_id: int, *, nearest_id: int | None, similarity: float | None, db: str | None = None
) -> OutputItem:
    """Record the nearest earlier output and its similarity (the novelty check's result)."""
    store.checked_id(output_id, name="output_id", db=db)
    store.checked_optional_id(nearest_id, name="nearest_id", db=db)

    def update(conn: Connection) -> None:
        changed = conn.execute(
            sa.update(ITEMS)
            .where(ITEMS.c.id == output_id)
            .values(nearest_id=nearest_id, similarity=similarity)
        ).rowcount
        if changed != 1:
            raise OutputNotFoundError(f"no output with id {output_id}")

    store.write(update, db)
    return get_output(output_id, db=db)


def get_output(output_id: int, *, db: str | None = None) -> OutputItem:
    """One output; OutputNotFoundError if there is none with this id."""
    store.checked_id(output_id, name="output id", db=db)
    found = store.read(
        lambda conn: conn.execute(sa.select(ITEMS).where(ITEMS.c.id == output_id)).first(), db
    )
    if found is None:
        raise OutputNotFoundError(
            f"no output with id {output_id}; list them with `llmsched outputs`"
        )
    return item_from_row(found)


def get_outputs(ids: Sequence[int], *, db: str | None = None) -> dict[int, OutputItem]:
    """The outputs with these ids that exist, by id."""
    wanted = [store.checked_id(i, name="output id", db=db) for i in ids]
    if not wanted:
        return {}
    rows = store.read(
        lambda conn: conn.execute(sa.select(ITEMS).where(ITEMS.c.id.in_(wanted))).all(), db
    )
    return {row.id: item_from_row(row) for row in rows}


def list_outputs(
    *,
    kind: str | None = None,
    topic: str | None = None,
    tag: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    group_id: int | None = None,
    limit: int = 50,
    db: str | None = None,
) -> list[OutputItem]:
    """The newest `limit` outputs that pass every filter given, oldest first.

    `topic`: the topic or theme contains this text (case and spacing ignored); `tag`: one
    of its tags is this one (same comparison); `since`/`until`: created at or after /
    before (a date: from the start of that UTC day / to the end of it, inclusive)."""
    if kind is not None and kind not in OUTPUT_KINDS:
        raise InvalidQueryError(f"kind must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
    check_limit(limit)
    store.checked_optional_id(group_id, name="group id", db=db)
    query = sa.select(ITEMS)
    if kind is not None:
        query = query.where(ITEMS.c.kind == kind)
    if topic is not None and normalise(topic):
        query = query.where(ITEMS.c.topic_key.contains(normalise(topic), autoescape=True))
    if tag is not None:
        query = query.where(
            sa.exists().where(TAGS.c.output_id == ITEMS.c.id, TAGS.c.tag == normalise(tag))
        )
    if since is not None:
        query = query.where(ITEMS.c.created_at >= start_of(since))
    if until is not None:
        query = query.where(ITEMS.c.created_at < end_of(until))
    if group_id is not None:
        query = query.where(ITEMS.c.group_id == group_id)
    query = query.order_by(ITEMS.c.created_at.desc(), ITEMS.c.id.desc()).limit(limit)
    rows = store.read(lambda conn: conn.execute(query).all(), db)
    return [item_from_row(row) for row in reversed(rows)]


def output_at(path: str | Path, *, db: str | None = None) -> OutputItem | None:
    """The output registered for the file at `path` (as a run returned it), if any."""
    query = sa.select(ITEMS).where(ITEMS.c.path == str(path)).order_by(ITEMS.c.id).limit(1)
    row = store.read(lambda conn: conn.execute(query).first(), db)
    return None if row is None else item_from_row(row)


def recent_structures(limit: int = 20, *, db: str | None = None) -> list[str]:
    """The structure names of the latest `limit` stories that have one, most recent last."""
    check_limit(limit)
    query = (
        sa.select(ITEMS.c.structure)
        .where(ITEMS.c.kind == "story", ITEMS.c.structure.is_not(None))
        .order_by(ITEMS.c.created_at.desc(), ITEMS.c.id.desc())
        .limit(limit)
    )
    names = store.read(lambda conn: list(conn.execute(query).scalars()), db)
    return list(reversed(names))


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def start_of(value: date | datetime) -> datetime:
    """A datetime as it is (it must be aware); a date as the start of its UTC day."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidQueryError(f"{value!r} is naive: pass a timezone-aware datetime")
        return value
    return datetime.combine(value, time(0), tzinfo=UTC)


def end_of(value: date | datetime) -> datetime:
    """A datetime as it is; a date as the start of the next UTC day (so it is inclusive)."""
    if isinstance(value, datetime):
        return start_of(value)
    return start_of(value + timedelta(days=1))


def item_from_row(row: Any) -> OutputItem:
    return OutputItem(**row._mapping)


def output_to_dict(item: OutputItem) -> dict[str, Any]:
    """An output as `--json` and the Python API's clients see it."""
    return {
        "id": item.id,
        "kind": item.kind,
        "path": item.path,
        "title": item.title,
        "topic": item.topic,
        "tags": list(item.tags),
        "key_concepts": list(item.key_concepts),
        "structure": item.structure,
        "structure_kind": item.structure_kind,
        "cards_used": list(item.cards_used),
        "model": item.model,
        "provider": item.provider,
        "input_tokens": item.input_tokens,
        "output_tokens": item.output_tokens,
        "duration_seconds": item.duration_seconds,
        "cost_usd": item.cost_usd,
        "job_id": item.job_id,
        "group_id": item.group_id,
        "flow_run_id": item.flow_run_id,
        "nearest_id": item.nearest_id,
        "similarity": item.similarity,
        "created_at": iso(item.created_at),
    }
