"""The research cards a story draws on, from the card library (flows/library): named (by
id, or by the paths a research member of the group returned: `{"$outputs": name}`), on a
research topic (the newest card on it, or a new one researched first), or picked by how
well they match the story's theme and genre. Their key points go into the prompt and
their ids into the story's metadata."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger, tags
from prefect.runtime import flow_run

from flows.library import OutputItem, find_cards, get_output, output_at, pick_cards
from flows.library.context import CONTEXT_TAGS
from flows.llm import LLMResponseError
from flows.tasks import require_text

MAX_CARDS = 8
"""Cards per story: each adds its key points to the prompt."""
MAX_CARD_REF = 4096
"""A card reference's length: an id, or a path a run returned."""


class CardNotFoundError(LLMResponseError):
    """A card the job names is not in the card library. Not retryable: another attempt
    finds the same library, unless a research run registers the card meanwhile."""

    retryable = False


def check_card_params(
    *, cards: Sequence[str] | None, research_topic: str | None, match_cards: int
) -> None:
    """The card parameters' shape, at enqueue and in the run."""
    refs = list(cards or [])
    if len(refs) > MAX_CARDS:
        raise ValueError(f"cards names {len(refs)} cards; a story may use at most {MAX_CARDS}")
    for ref in refs:
        if not ref.strip() or len(ref) > MAX_CARD_REF or "\x00" in ref:
            raise ValueError(
                f"cards: {ref[:80]!r} is not a card: pass card ids from "
                "`llmsched outputs --kind research`, or a research member's outputs"
            )
    if research_topic is not None:
        require_text(research_topic, name="research_topic", example="tidal energy")
    if not 0 <= match_cards <= MAX_CARDS:
        raise ValueError(
            f"match_cards must be between 0 and {MAX_CARDS}, got {match_cards}: pass e.g. "
            "match_cards=2 to let the pipeline pick two matching cards"
        )


async def cards_for_story(
    *,
    cards: Sequence[str] | None,
    research_topic: str | None,
    match_cards: int,
    theme: str,
    genre: str,
    model: str,
    ollama_host: str | None,
    output_dir: str | None,
) -> list[OutputItem]:
    """The story's cards, each once: the named ones, the topic's, then matching ones."""
    found: dict[int, OutputItem] = {}
    for ref in cards or []:
        card = await asyncio.to_thread(_named, ref.strip())
        found.setdefault(card.id or 0, card)
    if research_topic is not None and research_topic.strip():
        topic = research_topic.strip()
        card = await _on_topic(topic, model=model, ollama_host=ollama_host, output_dir=output_dir)
        if card is not None:
            found.setdefault(card.id or 0, card)
    if match_cards:
        picked = await asyncio.to_thread(
            pick_cards, theme=f"{theme} {genre}", n=match_cards, exclude=list(found)
        )
        for card in picked:
            found.setdefault(card.id or 0, card)
    chosen = list(found.values())
    if chosen:
        get_run_logger().info(
            "cards: %s", ", ".join(f"{card.id} ({card.topic})" for card in chosen)
        )
    return chosen


def concepts_of(cards: Sequence[OutputItem]) -> list[str]:
    """What of each card goes into the story's prompt: its key points."""
    return [concept for card in cards for concept in card.key_concepts]


def _named(ref: str) -> OutputItem:
    """A card by id, or by the path of its file (a research member's output)."""
    card = get_output(int(ref)) if ref.isdigit() else output_at(ref)
    if card is None or card.kind != "research":
        what = "is a story, not a research card" if card else "is not in the card library"
        raise CardNotFoundError(
            f"card {ref!r} {what}: pass card ids from `llmsched outputs --kind research`, "
            "or the outputs of a research member of the group"
        )
    return card


async def _on_topic(
    topic: str, *, model: str, ollama_host: str | None, output_dir: str | None
) -> OutputItem | None:
    """The newest card on `topic`; none yet: research it first, as a child flow run."""
    known = await asyncio.to_thread(find_cards, topic, limit=1)
    if known:
        return known[0]
    from flows.research import research_pipeline

    get_run_logger().info("no card on %r yet: researching it first", topic)
    with tags(*_run_tags()):  # the child's outputs and usage count for this job and group
        paths: Any = await research_pipeline(
            topic=topic, model=model, output_dir=output_dir, ollama_host=ollama_host
        )
    card = await asyncio.to_thread(output_at, paths[0]) if paths else None
    if card is None:  # skipped as a near-duplicate: an earlier card covers the topic
        cards = await asyncio.to_thread(pick_cards, theme=topic, n=1)
        card = cards[0] if cards else None
    if card is None:
        get_run_logger().warning("no card on %r could be made; writing without one", topic)
    return card


def _run_tags() -> list[str]:
    kept = ("llmsched", *CONTEXT_TAGS)
    return [tag for tag in flow_run.tags if tag.split(":", 1)[0] in kept]
