"""The research pipeline: a topic in, one validated research card saved as JSON out."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from flows.accepting import accept, check_on_duplicate, compare, end_as_duplicate, rewrites
from flows.cards import DRAFT_TEMPLATE, ResearchCard, invalid_json, parse_card
from flows.llm import Completion, LLMResponseError, Message
from flows.tasks import call_model, output_root, publish_artifact, require_text, write_output


@dataclass(frozen=True)
class ResearchRequest:
    topic: str
    tags: list[str]
    messages: list[Message]


def check_research_params(params: Mapping[str, Any]) -> None:
    """Enqueue-time check of params already cast to research_pipeline's signature: the
    run's own checks (build_research_prompt), so bad params never burn retries."""
    require_text(params["topic"], name="topic", example="tidal energy")
    check_on_duplicate(params.get("on_duplicate", "skip"))


@task(name="build-research-prompt", retries=0, cache_policy=NO_CACHE)
def build_research_prompt(
    *, topic: str, tags: list[str] | None, avoid: str | None = None
) -> ResearchRequest:
    """Check the parameters, then ask for the card's JSON template; the topic and tags are
    stamped on the card by the run, not left to the model. `avoid`: the title of an
    earlier card this one came too close to (a rewrite of a near-duplicate)."""
    topic = require_text(topic, name="topic", example="tidal energy")
    clean_tags = list(dict.fromkeys(tag.strip() for tag in tags or [] if tag.strip()))
    filed_under = f" It will be filed under: {', '.join(clean_tags)}." if clean_tags else ""
    system = (
        "You are a careful research analyst. Write a research card on the topic the user "
        f"gives, as one JSON object with exactly these keys:\n{DRAFT_TEMPLATE}\n"
        "Every list holds plain strings. Never invent sources: leave the list empty instead."
        f"{filed_under}"
    )
    if avoid:
        system += (
            f" An earlier card, {avoid!r}, already covers this topic: take another angle, "
            "with findings and questions it does not have."
        )
    messages: list[Message] = [
        {"role": "system", "content": system},
        {"role": "user", "content": topic},
    ]
    return ResearchRequest(topic=topic, tags=clean_tags, messages=messages)


@task(name="validate-card", retries=0, cache_policy=NO_CACHE)
def validate_card(completion: Completion, *, request: ResearchRequest, model: str) -> ResearchCard:
    """Hold the reply to the card schema; a failure names the field and the model."""
    card = parse_card(completion.json(), topic=request.topic, tags=request.tags, model=model)
    get_run_logger().info("card %r: %d key points", card.title, len(card.key_points))
    return card


@task(name="save-card", retries=0, cache_policy=NO_CACHE)
def save_card(card: ResearchCard, *, directory: Path) -> str:
    text = card.model_dump_json(indent=2) + "\n"
    path = write_output(directory, kind="research", about=card.topic, suffix="json", text=text)
    get_run_logger().info("saved research card to %s", path)
    return str(path)


@flow(
    name="research-pipeline",
    flow_run_name="research: {topic}",
    retries=0,  # the scheduler owns retries
    description="Ask an LLM for a structured research card on a topic and save it as JSON "
    "in the card library, unless it repeats an earlier card.",
)
async def research_pipeline(
    topic: str,
    tags: list[str] | None = None,
    model: str = "offline/research-analyst",
    output_dir: str | None = None,
    ollama_host: str | None = None,
    on_duplicate: str = "skip",
) -> list[str] | State[list[str]]:
    """Write a research card on `topic`; returns the path of the saved JSON file, which is
    registered in the card library (flows/library) for stories to draw on.
    `ollama_host`: the Ollama server of an `ollama/...` model, if not the worker's (one
    the operator allows, see flows/ollama_servers.py). A card too close to an earlier one
    is rewritten from another angle; `on_duplicate` says how the job ends if every draft
    was (accepting.py)."""
    started = time.monotonic()
    logger = get_run_logger()
    check_on_duplicate(on_duplicate)
    tries, avoid = 1 + rewrites(), None
    for attempt in range(1, tries + 1):
        request = build_research_prompt(topic=topic, tags=tags, avoid=avoid)
        card = await _draft(request, model=model, ollama_host=ollama_host)
        novelty = await compare("research", card_text(card), ollama_host=ollama_host)
        if not novelty.duplicate:
            break
        logger.warning("draft %d of %d: %s", attempt, tries, novelty.describe())
        avoid = novelty.nearest.title if novelty.nearest else card.title
    else:
        return end_as_duplicate(novelty, tries=tries, on_duplicate=on_duplicate)
    path = save_card(card, directory=output_root(output_dir))  # created once there is a card
    accepted = await accept(
        "research",
        path,
        card_text(card),
        novelty=novelty,
        model=model,
        started=started,
        ollama_host=ollama_host,
        title=card.title,
        topic=card.topic,
        tags=card.tags,
        key_concepts=card.key_points,
    )
    await publish_artifact(
        kind="research",
        about=card.topic,
        markdown=_summary(card, path=path) + accepted.table,
        description=f"research card on {card.topic!r}",
    )
    logger.info("research pipeline wrote %s (card %s)", path, accepted.item.id)
    return [path]


async def _draft(request: ResearchRequest, *, model: str, ollama_host: str | None) -> ResearchCard:
    try:
        completion = await call_model(
            model, request.messages, json_mode=True, ollama_host=ollama_host
        )
    except LLMResponseError as exc:
        # The LLM layer chains the decode error when a JSON-mode reply does not parse.
        if isinstance(exc.__cause__, json.JSONDecodeError):
            raise invalid_json(exc, model=model) from exc
        raise
    return validate_card(completion, request=request, model=model)


def card_text(card: ResearchCard) -> str:
    """What two cards are compared on: their title, summary and key points."""
    return "\n".join([card.title, card.summary, *card.key_points])


def _summary(card: ResearchCard, *, path: str) -> str:
    def bullets(items: list[str]) -> str:
        return "\n".join(f"- {item}" for item in items) or "_none given_"

    tags = ", ".join(card.tags) or "none"
    return (
        f"# {card.title}\n\n**Topic:** {card.topic} · **Tags:** {tags} · **Model:** "
        f"`{card.model}`\n\n{card.summary}\n\n## Key points\n\n{bullets(card.key_points)}\n\n"
        f"## Open questions\n\n{bullets(card.open_questions)}\n\n"
        f"## Sources\n\n{bullets(card.sources)}\n\nFile: `{path}`\n"
    )
