"""The research pipeline: a card that validates, or a run that fails saying which field and model
are at fault."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from flows.cards import CardValidationError, ResearchCard, parse_card
from flows.llm import LLMResponseError
from flows.research import research_pipeline
from tests.flows.support import read_markdown
from tests.llm_server.process import LLMServerProcess


@pytest.mark.parametrize("model", ["offline/research-analyst", "ollama/qwen3:30b"])
def test_research_card_validates(fake_llm: LLMServerProcess, out_dir: Path, model: str) -> None:
    topic = f"Tidal energy via {model.partition('/')[0]}"
    [path] = asyncio.run(
        research_pipeline(
            topic=topic,
            tags=["energy", " ocean ", "", "energy"],
            model=model,
            output_dir=str(out_dir),
        )
    )

    slug = re.sub(r"[^a-z]+", "-", topic.lower())
    assert re.fullmatch(rf"research-{slug}-[0-9a-f]{{8}}\.json", Path(path).name)
    card = ResearchCard.model_validate_json(Path(path).read_text())
    assert (card.topic, card.tags, card.model) == (topic, ["energy", "ocean"], model)
    assert card.title.lower() in topic.lower() and len(card.key_points) >= 3
    if model.startswith("ollama/"):
        [request] = fake_llm.stats()["requests"]
        assert (request["protocol"], request["json"]) == ("ollama", True)
    [summary] = [m for m in asyncio.run(read_markdown(f"research-{slug}")) if path in m]
    assert f"# {card.title}" in summary and card.key_points[0] in summary


def test_broken_json_fails_the_run_naming_the_model(
    fake_llm: LLMServerProcess, out_dir: Path
) -> None:
    with pytest.raises(CardValidationError, match="from ollama/broken-json is not valid JSON"):
        asyncio.run(
            research_pipeline(topic="tides", model="ollama/broken-json", output_dir=str(out_dir))
        )

    assert not out_dir.exists()  # no card: nothing written, not even its directory


def test_empty_topic_fails_before_the_model_is_called(
    fake_llm: LLMServerProcess, out_dir: Path
) -> None:
    with pytest.raises(ValueError, match="topic must not be empty: pass a topic such as"):
        asyncio.run(research_pipeline(topic="", model="ollama/qwen3:30b", output_dir=str(out_dir)))

    assert fake_llm.stats()["requests"] == []
    assert not out_dir.exists()


GOOD: dict[str, Any] = {
    "title": "Tides",
    "summary": "Tides move water.",
    "key_points": ["one", "two", "three"],
    "open_questions": [],
    "sources": [],
}


@pytest.mark.parametrize(
    ("reply", "fields"),
    [
        ({k: v for k, v in GOOD.items() if k != "summary"}, ("summary",)),
        ({**GOOD, "key_points": ["only one"]}, ("key_points",)),
        ({**GOOD, "key_points": ["one", "", "three"]}, ("key_points.1",)),
        ({**GOOD, "sources": "none", "title": 7}, ("title", "sources")),
        (["not", "an", "object"], ()),
    ],
)
def test_an_invalid_card_names_the_field_and_the_model(reply: Any, fields: tuple[str, ...]) -> None:
    with pytest.raises(CardValidationError) as raised:
        parse_card(reply, topic="tides", tags=[], model="openai/gpt-4o-mini")

    error = raised.value
    assert (error.fields, error.model) == (fields, "openai/gpt-4o-mini")
    assert str(error).startswith("research card from openai/gpt-4o-mini")
    assert all(field in str(error) for field in fields)
    assert isinstance(error, LLMResponseError) and error.retryable


def test_extra_keys_from_the_model_are_ignored_and_the_run_owns_topic_and_tags() -> None:
    reply = {**GOOD, "topic": "something else", "tags": ["model-made"], "confidence": 0.9}

    card = parse_card(reply, topic="tides", tags=["sea"], model="offline/x")

    assert (card.topic, card.tags) == ("tides", ["sea"])
