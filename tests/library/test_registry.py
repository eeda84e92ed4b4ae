"""The output registry and the card library, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from flows.library import (
    LIBRARY_METADATA,
    InvalidQueryError,
    OutputItem,
    OutputNotFoundError,
    RunContext,
    find_cards,
    get_output,
    list_outputs,
    pick_cards,
    recent_structures,
    set_nearest,
)
from flows.library.store import close_library, write
from scheduler_core import SchedulerService
from scheduler_core.errors import InvalidIdError

AddOutput = Callable[..., OutputItem]


def _age(lib: str, output_id: int, created_at: datetime) -> None:
    """Move an output's creation time (the test's own database)."""
    table = OutputItem.__table__
    write(
        lambda conn: conn.execute(
            sa.update(table).where(table.c.id == output_id).values(created_at=created_at)
        ),
        lib,
    )


def test_outputs_are_recorded_with_their_run_and_read_back_whole(
    lib: str, add_output: AddOutput
) -> None:
    card = add_output(
        path="/out/research-tides.json",
        title="Tides  and\nturbines",
        topic="  Tidal   Energy ",
        tags=["Ocean", " energy ", "ocean", ""],
        key_concepts=["tidal range", "turbines"],
        model="openai/gpt-4o-mini",
        input_tokens=1000,
        output_tokens=500,
        duration_seconds=1.5,
        context=RunContext(job_id=7, group_id=3, flow_run_id="f-1"),
    )
    story = add_output(
        kind="story",
        path="/out/story-sea.md",
        topic="the sea",
        structure="hero's journey",
        structure_kind="quest",
        cards_used=[card.id, card.id],
        model="ollama/qwen3:30b",
        input_tokens=10,
        output_tokens=20,
        nearest_id=card.id,
        similarity=0.42,
    )
    got = get_output(card.id or 0, db=lib)
    assert got.model_dump() == card.model_dump()
    assert (got.title, got.topic, got.tags) == (
        "Tides and turbines",
        "Tidal Energy",
        ["Ocean", "energy", "ocean"],
    )
    assert (got.job_id, got.group_id, got.flow_run_id) == (7, 3, "f-1")
    assert got.provider == "openai" and got.cost_usd == pytest.approx(0.00045)
    assert got.created_at.tzinfo is UTC
    again = get_output(story.id or 0, db=lib)
    assert again.cards_used == [card.id] and again.cost_usd == 0.0  # local: free
    assert (again.structure, again.structure_kind, again.nearest_id) == (
        "hero's journey",
        "quest",
        card.id,
    )
    assert (again.job_id, again.group_id, again.flow_run_id) == (None, None, None)
    updated = set_nearest(card.id or 0, nearest_id=story.id, similarity=0.9, db=lib)
    assert (updated.nearest_id, updated.similarity) == (story.id, 0.9)


def test_unknown_ids_and_bad_values_are_refused_and_write_nothing(
    lib: str, add_output: AddOutput
) -> None:
    story = add_output(kind="story", topic="x")
    with pytest.raises(OutputNotFoundError, match="no output with id 999"):
        get_output(999, db=lib)
    with pytest.raises(InvalidIdError, match="output id must be an integer"):
        get_output(0, db=lib)
    with pytest.raises(OutputNotFoundError, match="cards_used names output 999"):
        add_output(kind="story", cards_used=[999])
    with pytest.raises(InvalidQueryError, match="a story, not a research card"):
        add_output(kind="story", cards_used=[story.id])
    with pytest.raises(InvalidQueryError, match="kind must be one of story, research"):
        add_output(kind="poem")
    with pytest.raises(InvalidQueryError, match="not one string"):
        add_output(tags="ocean")
    with pytest.raises(OutputNotFoundError):
        set_nearest(999, nearest_id=None, similarity=None, db=lib)
    assert [o.id for o in list_outputs(db=lib)] == [story.id]


def test_listing_filters_by_kind_topic_tag_dates_and_group(lib: str, add_output: AddOutput) -> None:
    in_group = RunContext(job_id=1, group_id=5)
    a = add_output(topic="Tidal energy", tags=["ocean", "Energy"], context=in_group)
    b = add_output(kind="story", topic="A night at sea", tags=["ocean"], context=in_group)
    c = add_output(topic="Solar 100% power", tags=["sun"])
    now = datetime.now(UTC)
    _age(lib, a.id or 0, now - timedelta(days=3))
    _age(lib, b.id or 0, now - timedelta(days=1))

    def ids(**filters: object) -> list[int | None]:
        return [o.id for o in list_outputs(db=lib, **filters)]  # type: ignore[arg-type]

    assert ids() == [a.id, b.id, c.id]  # oldest first
    assert ids(limit=2) == [b.id, c.id]  # the newest two
    assert ids(kind="research") == [a.id, c.id]
    assert ids(kind="story") == [b.id]
    assert ids(topic="TIDAL") == [a.id] and ids(topic="  night   at ") == [b.id]
    assert ids(topic="100%") == [c.id] and ids(topic="_") == []  # LIKE characters are text
    assert ids(tag="OCEAN") == [a.id, b.id] and ids(tag="energy") == [a.id]
    assert ids(tag="none") == []
    assert ids(group_id=5) == [a.id, b.id]
    assert ids(since=(now - timedelta(days=2)).date()) == [b.id, c.id]
    assert ids(until=(now - timedelta(days=2)).date()) == [a.id]
    assert ids(since=now - timedelta(hours=1)) == [c.id]
    assert ids(since=now.date(), until=now.date()) == [c.id]  # a whole day, inclusive
    with pytest.raises(InvalidQueryError, match="limit must be an integer"):
        list_outputs(limit=0, db=lib)
    with pytest.raises(InvalidQueryError, match="naive"):
        list_outputs(since=datetime(2026, 1, 1), db=lib)


def test_recent_structures_lists_the_latest_stories_most_recent_last(
    lib: str, add_output: AddOutput
) -> None:
    for name in ["hero", "tragedy", "quest", "rebirth"]:
        add_output(kind="story", structure=name)
    add_output(kind="story")  # no structure
    add_output(kind="research", structure="not a story")
    assert recent_structures(db=lib) == ["hero", "tragedy", "quest", "rebirth"]
    assert recent_structures(2, db=lib) == ["quest", "rebirth"]


def test_cards_are_found_by_ids_then_exact_topic_then_shared_tags(
    lib: str, add_output: AddOutput
) -> None:
    old = add_output(topic="Tidal Energy", tags=["ocean"])
    new = add_output(topic="tidal   ENERGY", tags=["ocean", "power"])
    near = add_output(topic="tidal energy storage", tags=["ocean", "power"])
    one_tag = add_output(topic="wind", tags=["power"])
    add_output(topic="baking", tags=["bread"])
    story = add_output(kind="story", topic="tidal energy", tags=["ocean", "power"])

    def ids(*args: object, **kwargs: object) -> list[int | None]:
        return [c.id for c in find_cards(*args, db=lib, **kwargs)]  # type: ignore[arg-type]

    assert ids("  Tidal energy ") == [new.id, old.id]  # exact topic only, newest first
    assert ids("tidal energy", tags=["power", "ocean"]) == [new.id, old.id, near.id, one_tag.id]
    assert ids(tags=["POWER", "ocean"]) == [near.id, new.id, one_tag.id, old.id]
    assert ids(ids=[one_tag.id, old.id], tags=["ocean"], limit=1) == [one_tag.id, old.id, near.id]
    assert ids("unknown topic") == []
    with pytest.raises(OutputNotFoundError, match="no research card with id 999"):
        find_cards(ids=[999], db=lib)
    with pytest.raises(InvalidQueryError, match="a story, not a research card"):
        find_cards(ids=[story.id or 0], db=lib)


def test_pick_cards_prefers_the_most_shared_words_and_is_deterministic(
    lib: str, add_output: AddOutput
) -> None:
    lighthouse = add_output(
        topic="lighthouses", tags=["sea"], key_concepts=["Fresnel lenses focus the lamp"]
    )
    storms = add_output(topic="storms at sea", tags=["weather"], key_concepts=["gale winds"])
    add_output(topic="sourdough bread", tags=["baking"], key_concepts=["wild yeast"])
    picked = pick_cards(theme="a lighthouse keeper and his lamp at sea", n=3, db=lib)
    assert [c.id for c in picked] == [lighthouse.id, storms.id]  # bread shares nothing
    assert [c.id for c in pick_cards(theme="sea", tags=["weather"], n=1, db=lib)] == [storms.id]
    assert [c.id for c in pick_cards(theme="sea", n=2, db=lib)] == [storms.id, lighthouse.id]
    assert pick_cards(theme="sea", exclude=[storms.id or 0, lighthouse.id or 0], db=lib) == []
    assert pick_cards(theme="the of and", db=lib) == []  # no content words
    runs = {tuple(c.id for c in pick_cards(theme="sea storm lamp", n=3, db=lib)) for _ in range(5)}
    assert len(runs) == 1


def test_tables_are_the_librarys_own_and_sit_beside_the_schedulers(lib: str) -> None:
    assert set(LIBRARY_METADATA.tables) == {"output_item", "output_tag", "usage"}
    assert not set(LIBRARY_METADATA.tables) & set(SQLModel.metadata.tables)
    with SchedulerService.open(lib) as svc:  # the scheduler first, then the library
        svc.register("noop", lambda params: None)
        job = svc.enqueue_job("noop", {})
    assert list_outputs(db=lib) == []  # created on first use
    close_library(lib)
    assert list_outputs(db=lib) == []  # and found again by a new engine
    engine = sa.create_engine(lib.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"job", "output_item", "output_tag", "usage"} <= names
    with SchedulerService.open(lib) as svc:
        assert svc.get_job(job.job_id or 0).job_id == job.job_id


def test_dates_in_listings_use_utc_days(lib: str, add_output: AddOutput) -> None:
    item = add_output()
    _age(lib, item.id or 0, datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    assert [o.id for o in list_outputs(since=date(2026, 3, 1), until=date(2026, 3, 1), db=lib)] == [
        item.id
    ]
    assert list_outputs(since=date(2026, 3, 2), db=lib) == []
