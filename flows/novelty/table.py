"""The similarity index's table, beside the jobs in the worker's database, in its own
`MetaData` so that the scheduler core neither creates nor knows it."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from scheduler_core.columns import UTCDateTime
from scheduler_core.values import utcnow

ITEM_ID_LENGTH = 200
METHOD_LENGTH = 200


class NoveltyModel(SQLModel, registry=registry()):
    """Base of the novelty tables: its own registry, hence its own MetaData."""


NOVELTY_METADATA = NoveltyModel.metadata


# One stored signature: an item (an output's id) as one method saw it.
class NoveltySignature(NoveltyModel, table=True):
    __tablename__ = "novelty_signature"
    __table_args__ = (
        # One signature per item and method: remembering an item again changes nothing.
        sa.UniqueConstraint("kind", "method", "item_id", name="uq_novelty_signature_item"),
        # The cache's refresh: one kind's and method's rows past the last id it holds.
        sa.Index("ix_novelty_signature_scan", "kind", "method", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    item_id: str = Field(sa_type=sa.String(ITEM_ID_LENGTH), nullable=False)
    kind: str = Field(sa_type=sa.String(32), nullable=False)
    method: str = Field(sa_type=sa.String(METHOD_LENGTH), nullable=False)
    dimension: int = Field(nullable=False)
    signature: bytes = Field(sa_type=sa.LargeBinary, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


SIGNATURES = NoveltySignature.__table__  # type: ignore[attr-defined]
