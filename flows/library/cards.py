"""The card library: research cards found by id, topic or tags, and picked for a story.

Lookup (`find_cards`) is exact: named ids, then the same topic (case and spacing ignored),
then cards sharing tags. Picking (`pick_cards`) is a simple, deterministic score: the
number of words a card's topic, title, tags and key points share with what the story
wants (its theme, genre or structure words, concepts and tags).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from flows.library import store
from flows.library.errors import InvalidQueryError, OutputNotFoundError
from flows.library.registry import (
    ITEMS,
    TAGS,
    check_limit,
    clean_list,
    item_from_row,
    normalise,
)
from flows.library.tables import OutputItem

DEFAULT_POOL = 500
"""How many of the newest cards `pick_cards` scores (plus every card sharing a tag)."""

_WORD = re.compile(r"[^\W_]+")
_STOPWORD_TEXT = (
    "a an and are as at be but by for from has have how in into is it its of on or that the "
    "their this to was were what when where which who why with without about after before "
    "over under than then there these those through"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def words(texts: Iterable[str]) -> set[str]:
    """Content words, lower-cased, a plural `s` dropped: what a score compares."""
    found: set[str] = set()
    for text in texts:
        for word in _WORD.findall(str(text).casefold()):
            if len(word) < 3 or word in STOPWORDS:
                continue
            if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
                word = word[:-1]
            found.add(word)
    return found


def find_cards(
    topic: str | None = None,
    *,
    tags: Sequence[str] = (),
    ids: Sequence[int] = (),
    limit: int = 20,
    db: str | None = None,
) -> list[OutputItem]:
    """Research cards: those named by `ids` (in that order, all of them; an unknown id or
    a story is an error), then those on exactly `topic`, newest first, then those sharing
    most of `tags`, newest first among equals; each card once, at most `limit` beyond
    the named ones."""
    check_limit(limit)
    named = _named_cards(ids, db=db)
    found: dict[int, OutputItem] = {card.id or 0: card for card in named}
    wanted = limit + len(found)
    key = normalise(topic) if topic else ""
    if key:
        query = (
            sa.select(ITEMS)
            .where(ITEMS.c.kind == "research", ITEMS.c.topic_key == key)
            .order_by(ITEMS.c.created_at.desc(), ITEMS.c.id.desc())
            .limit(wanted)
        )
        for row in store.read(lambda conn: conn.execute(query).all(), db):
            found.setdefault(row.id, item_from_row(row))
    for card in _by_tags(tags, limit=wanted, db=db):
        if len(found) >= wanted:
            break
        found.setdefault(card.id or 0, card)
    return list(found.values())[:wanted]


def _named_cards(ids: Sequence[int], *, db: str | None) -> list[OutputItem]:
    wanted = list(dict.fromkeys(store.checked_id(i, name="card id", db=db) for i in ids))
    if not wanted:
        return []
    rows = store.read(
        lambda conn: conn.execute(sa.select(ITEMS).where(ITEMS.c.id.in_(wanted))).all(), db
    )
    by_id = {row.id: item_from_row(row) for row in rows}
    cards = []
    for card_id in wanted:
        card = by_id.get(card_id)
        if card is None:
            raise OutputNotFoundError(
                f"no research card with id {card_id}; list cards with `llmsched outputs "
                "--kind research`"
            )
        if card.kind != "research":
            raise InvalidQueryError(f"output {card_id} is a {card.kind}, not a research card")
        cards.append(card)
    return cards


def _by_tags(tags: Sequence[str], *, limit: int, db: str | None) -> list[OutputItem]:
    keys = list(dict.fromkeys(normalise(tag) for tag in clean_list(tags, name="tags")))
    if not keys:
        return []
    shared = sa.func.count().label("shared")
    newest = sa.func.max(ITEMS.c.created_at).label("newest")
    query = (
        sa.select(ITEMS.c.id, shared, newest)
        .join(TAGS, TAGS.c.output_id == ITEMS.c.id)
        .where(ITEMS.c.kind == "research", TAGS.c.tag.in_(keys))
        .group_by(ITEMS.c.id)
        .order_by(shared.desc(), newest.desc(), ITEMS.c.id.desc())
        .limit(limit)
    )

    def load(conn: sa.Connection) -> list[OutputItem]:
        order = [row.id for row in conn.execute(query)]
        rows = conn.execute(sa.select(ITEMS).where(ITEMS.c.id.in_(order))).all() if order else []
        by_id = {row.id: item_from_row(row) for row in rows}
        return [by_id[i] for i in order]

    return store.read(load, db)


def pick_cards(
    *,
    theme: str = "",
    concepts: Sequence[str] = (),
    tags: Sequence[str] = (),
    n: int = 3,
    exclude: Sequence[int] = (),
    pool: int = DEFAULT_POOL,
    db: str | None = None,
) -> list[OutputItem]:
    """The `n` cards that best match a story: scored by the content words they share
    with `theme` (pass theme, genre and structure words here), `concepts` and `tags`;
    a shared tag counts double. Ties go to the newer card; cards scoring 0 and those in
    `exclude` are never picked. Candidates: the newest `pool` cards and any sharing a tag."""
    check_limit(n)
    check_limit(pool)
    wanted_tags = {normalise(tag) for tag in clean_list(tags, name="tags")}
    wanted = words([theme, *clean_list(concepts, name="concepts"), *wanted_tags])
    if not wanted:
        return []
    newest = (
        sa.select(ITEMS)
        .where(ITEMS.c.kind == "research")
        .order_by(ITEMS.c.created_at.desc(), ITEMS.c.id.desc())
        .limit(pool)
    )
    rows = store.read(lambda conn: conn.execute(newest).all(), db)
    candidates = {row.id: item_from_row(row) for row in rows}
    for card in _by_tags(sorted(wanted_tags), limit=pool, db=db):
        candidates.setdefault(card.id or 0, card)
    skipped = set(exclude)
    scored = []
    for card in candidates.values():
        if card.id in skipped:
            continue
        card_words = words([card.topic, card.title, *card.tags, *card.key_concepts])
        shared_tags = wanted_tags & {normalise(tag) for tag in card.tags}
        score = len(wanted & card_words) + len(shared_tags)
        if score > 0:
            scored.append((score, card.created_at, card.id or 0, card))
    scored.sort(key=lambda entry: entry[:3], reverse=True)
    return [entry[3] for entry in scored[:n]]
