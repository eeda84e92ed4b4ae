"""Fixtures of the novelty tests: indexes on the test's own database (SQLite, and PostgreSQL
when SCHEDULER_TEST_POSTGRES_URL is set), closed at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from flows.novelty import NoveltyIndex, check, close_novelty_indexes

STORY = (
    "The lighthouse keeper climbed the spiral stairs every night to light the great lamp. "
    "One stormy night he found a stranger waiting at the top, soaked and shivering, who "
    "claimed to know his brother, lost at sea twenty years before. The keeper listened "
    "until dawn, and when the stranger left, a ship's bell rang out in the fog."
)
NEAR_STORY = (
    STORY.replace("stranger waiting", "woman waiting")
    .replace("great lamp", "old lamp")
    .replace("twenty years", "thirty years")
)
OTHER_STORY = (
    "Quarterly revenue rose by twelve percent as the company expanded its cloud software "
    "business into three new markets, while operating costs fell thanks to automation of "
    "its billing systems and a smaller office footprint in the capital."
)


@pytest.fixture(autouse=True)
def no_recent_embeddings() -> None:
    """Each test counts its own model calls: none served from an earlier test's vectors."""
    check._recent.clear()


@pytest.fixture
def open_index(db_url: str) -> Iterator[Callable[[], NoveltyIndex]]:
    """Factory: a new index (its own engine) on this test's database per call."""
    opened: list[NoveltyIndex] = []

    def factory() -> NoveltyIndex:
        index = NoveltyIndex.open(db_url)
        opened.append(index)
        return index

    yield factory
    for index in opened:
        index.close()
    close_novelty_indexes()


@pytest.fixture
def index(open_index: Callable[[], NoveltyIndex]) -> NoveltyIndex:
    return open_index()
