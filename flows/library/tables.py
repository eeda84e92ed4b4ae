"""The output library's tables: every story and research card written, every model call's
usage. They live beside the scheduler's tables in the same database but in their own
`MetaData` (LIBRARY_METADATA), so the scheduler core neither creates nor knows them.

Tags are kept twice: as written, in `output_item.tags` (what users see), and normalised,
one row per tag in `output_tag` (what the card lookup and the `--tag` filter search, by
index, on both backends alike).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from scheduler_core.columns import JSONType, UTCDateTime
from scheduler_core.values import utcnow

OUTPUT_KINDS = ("story", "research")
"""`kind` values: a story, or a research card."""


class LibraryModel(SQLModel, registry=registry()):
    """Base of the library's tables: its own registry, hence its own MetaData."""


LIBRARY_METADATA = LibraryModel.metadata


def _json(factory: type) -> Any:
    return Field(default_factory=factory, sa_type=JSONType, nullable=False)


def _text(*, required: bool = False) -> Any:
    if required:
        return Field(sa_type=sa.Text, nullable=False)
    return Field(default=None, sa_type=sa.Text)


# One output file, registered when its pipeline wrote it.
class OutputItem(LibraryModel, table=True):
    __tablename__ = "output_item"
    __table_args__ = (
        sa.Index("ix_output_item_kind_created", "kind", "created_at"),
        sa.Index("ix_output_item_created", "created_at"),
        sa.Index("ix_output_item_topic_key", "topic_key"),
        sa.Index("ix_output_item_path", "path"),  # a run's outputs name cards by path
        sa.Index(
            "ix_output_item_group",
            "group_id",
            sqlite_where=sa.text("group_id IS NOT NULL"),
            postgresql_where=sa.text("group_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_type=sa.String(16), nullable=False)
    path: str = _text(required=True)
    title: str = Field(default="", sa_type=sa.Text, nullable=False)
    topic: str = Field(default="", sa_type=sa.Text, nullable=False)
    """A card's topic, a story's theme."""
    topic_key: str = Field(default="", sa_type=sa.Text, nullable=False)
    """`topic` lower-cased with its whitespace collapsed: what an exact topic match compares."""
    tags: list[str] = _json(list)
    key_concepts: list[str] = _json(list)
    """A card's key points; a story's main concepts, if its pipeline names them."""
    structure: str | None = _text()
    structure_kind: str | None = _text()
    cards_used: list[int] = _json(list)
    model: str = Field(default="", sa_type=sa.Text, nullable=False)
    """`provider/name`, as the job named it."""
    provider: str = Field(default="", sa_type=sa.String(32), nullable=False)
    input_tokens: int | None = None
    output_tokens: int | None = None
    duration_seconds: float | None = None
    cost_usd: float | None = None
    """0 for local providers, None when a hosted model's price is unknown."""
    job_id: int | None = None
    group_id: int | None = None
    flow_run_id: str | None = Field(default=None, sa_type=sa.String(64))
    nearest_id: int | None = None
    similarity: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# A normalised tag of an output (see the module docstring).
class OutputTag(LibraryModel, table=True):
    __tablename__ = "output_tag"

    tag: str = Field(sa_type=sa.Text, primary_key=True)
    output_id: int = Field(primary_key=True, foreign_key="output_item.id")


# One model call's tokens and cost, linked to its job, group and flow run.
class UsageRecord(LibraryModel, table=True):
    __tablename__ = "usage"
    __table_args__ = (
        sa.Index("ix_usage_day", "day"),
        sa.Index(
            "ix_usage_group",
            "group_id",
            sqlite_where=sa.text("group_id IS NOT NULL"),
            postgresql_where=sa.text("group_id IS NOT NULL"),
        ),
        # A saved output sums its own run's calls (flows/accepting.py), once per output.
        sa.Index(
            "ix_usage_flow_run",
            "flow_run_id",
            sqlite_where=sa.text("flow_run_id IS NOT NULL"),
            postgresql_where=sa.text("flow_run_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(sa_type=sa.Text, nullable=False)
    provider: str = Field(sa_type=sa.String(32), nullable=False)
    input_tokens: int = Field(default=0, nullable=False)
    output_tokens: int = Field(default=0, nullable=False)
    cost_usd: float | None = None
    hosted: bool = Field(default=False, nullable=False)
    """A paid API (the spending caps count only these)."""
    job_id: int | None = None
    group_id: int | None = None
    flow_run_id: str | None = Field(default=None, sa_type=sa.String(64))
    day: date = Field(sa_type=sa.Date, nullable=False)
    """The UTC date of `created_at`: what the daily sums and the daily cap group by."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
