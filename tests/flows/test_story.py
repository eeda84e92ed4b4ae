"""The story pipeline end to end on every provider, and the checks around the model call."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from prefect.logging import disable_run_logger

from flows.llm import LLMResponseError, synthesis
from flows.story import StoryRequest, build_story_prompt, story_pipeline, validate_story
from tests.flows.support import read_markdown
from tests.llm_server.process import LLMServerProcess

STORY_TASKS = {
    "build-story-prompt",
    "call-model",
    "validate-story",
    "save-story",
    "publish-artifact",
}


def expected_text(*, theme: str, genre: str = "general", length: int = 400) -> str:
    """Offline and fake-server replies are the same pure function of the prompt."""
    request = build_story_prompt.fn(theme=theme, genre=genre, length=length)
    return synthesis.reply(request.messages, as_json=False)


@pytest.mark.parametrize(
    ("model", "protocol"),
    [
        ("offline/story-writer", None),
        ("openai/gpt-4o-mini", "openai"),
        ("anthropic/claude-sonnet-4-5", "anthropic"),
        ("ollama/qwen3:30b", "ollama"),
    ],
)
def test_story_is_written_by_the_model(
    fake_llm: LLMServerProcess,
    out_dir: Path,
    task_logs: list[logging.LogRecord],
    model: str,
    protocol: str | None,
) -> None:
    theme = f"Harbour lights ({model.partition('/')[0]})"
    paths = asyncio.run(
        story_pipeline(theme=theme, genre="drama", length=300, model=model, output_dir=str(out_dir))
    )

    path = Path(paths[0])
    slug = re.sub(r"[^a-z]+", "-", theme.lower()).strip("-")
    assert path.parent == out_dir and re.fullmatch(rf"story-{slug}-[0-9a-f]{{8}}\.md", path.name)
    text = path.read_text()
    assert text.startswith(f'---\ntitle: "{theme}"\ntheme: "{theme}"\ngenre: "drama"\n')
    assert f'model: "{model}"' in text
    assert f"# {theme}\n\n{expected_text(theme=theme, genre='drama', length=300)}\n" in text
    requests = fake_llm.stats()["requests"]
    assert [(r["protocol"], r["model"]) for r in requests] == (
        [(protocol, model.partition("/")[2])] if protocol else []
    )
    [summary] = [m for m in asyncio.run(read_markdown(f"story-{slug}")) if str(path) in m]
    assert f"# {theme}" in summary
    assert {getattr(r, "task_name", None) for r in task_logs} >= STORY_TASKS


def test_output_goes_to_llmsched_home_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSCHED_HOME", str(tmp_path / "home"))

    [path] = asyncio.run(story_pipeline(theme="a quiet default", length=100))

    assert Path(path).parent == tmp_path / "home" / "artifacts"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"theme": "  "}, "theme must not be empty"),
        ({"theme": "tides", "length": 10}, "length must be between 50 and 5000 words, got 10"),
        ({"theme": "tides", "genre": ""}, "genre must not be empty"),
    ],
)
def test_bad_parameters_fail_before_the_model_is_called(
    fake_llm: LLMServerProcess, out_dir: Path, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        asyncio.run(story_pipeline(**params, model="ollama/qwen3:30b", output_dir=str(out_dir)))

    assert fake_llm.stats()["requests"] == []
    assert not out_dir.exists()


REQUEST = StoryRequest(theme="the tide clock", genre="general", length=400, messages=[])
BODY = " ".join(["The tide came in and the keeper wound the clock."] * 5)


@pytest.mark.parametrize(
    "reply",
    [
        f"<think>\nPlan: a keeper, a clock.\n</think>\n\n# The Tide Clock\n\n{BODY}",
        f"Plan: a keeper, a clock.</think>\n# The Tide Clock\n\n{BODY}",
        f"<THINKING>plan</THINKING># The Tide Clock\n{BODY}",
        f"# **The Tide Clock**\n\n{BODY}\n",
    ],
)
def test_reasoning_is_dropped_and_the_title_kept(reply: str) -> None:
    with disable_run_logger():
        story = validate_story.fn(reply, request=REQUEST, model="ollama/qwen3:30b")

    assert (story.title, story.body) == ("The Tide Clock", BODY)


def test_a_story_without_a_heading_takes_the_theme_as_title() -> None:
    with disable_run_logger():
        story = validate_story.fn(BODY, request=REQUEST, model="offline/x")

    assert (story.title, story.body) == ("The tide clock", BODY)


@pytest.mark.parametrize(
    "reply", ["<think>all reasoning, cut off before the story", "I cannot write that.", "  "]
)
def test_a_reply_too_short_to_be_a_story_fails(reply: str) -> None:
    with disable_run_logger(), pytest.raises(LLMResponseError, match="ollama/qwen3:30b returned"):
        validate_story.fn(reply, request=REQUEST, model="ollama/qwen3:30b")
