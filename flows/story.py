"""The story pipeline: a theme in, one Markdown story file out."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.llm import LLMResponseError, Message
from flows.tasks import call_model, output_root, publish_artifact, require_text, write_output

MIN_LENGTH, MAX_LENGTH = 50, 5000
MIN_STORY_WORDS = 40
"""Fewer words than this (or than half the request, for short ones) is a refusal or a cut-off
reply rather than a story; longer or shorter than asked is otherwise accepted, as models vary."""
EXCERPT_WORDS = 60

_REASONING = r"(?:think|thinking|reasoning)"
_CLOSED_THOUGHT = re.compile(rf"<({_REASONING})>.*?(?:</\1>|\Z)", re.DOTALL | re.IGNORECASE)
_OPEN_THOUGHT = re.compile(rf"\A.*?</{_REASONING}>", re.DOTALL | re.IGNORECASE)
"""Some chat templates open the thought block in the prompt, so the reply only closes it."""
_HEADING = re.compile(r"\A#{1,6}\s+(.+?)\s*#*\s*\Z")


@dataclass(frozen=True)
class StoryRequest:
    theme: str
    genre: str
    length: int
    messages: list[Message]


@dataclass(frozen=True)
class Story:
    title: str
    body: str

    @property
    def words(self) -> int:
        return len(self.body.split())


def check_story(*, theme: str, genre: str, length: int) -> tuple[str, str]:
    """The stripped theme and genre, once all three are usable; the same check runs at
    enqueue (check_story_params) and in the run, so bad params never burn retries."""
    theme = require_text(theme, name="theme", example="a lighthouse keeper's last night")
    genre = require_text(genre, name="genre", example="general")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(
            f"length must be between {MIN_LENGTH} and {MAX_LENGTH} words, got {length}: "
            "pass a length such as 400"
        )
    return theme, genre


def check_story_params(params: Mapping[str, Any]) -> None:
    """Enqueue-time check of params already cast to story_pipeline's signature."""
    check_story(theme=params["theme"], genre=params["genre"], length=params["length"])


@task(name="build-story-prompt", retries=0, cache_policy=NO_CACHE)
def build_story_prompt(*, theme: str, genre: str, length: int) -> StoryRequest:
    """Check the parameters before any model time is spent, then write the prompt."""
    theme, genre = check_story(theme=theme, genre=genre, length=length)
    system = (
        f"You are a fiction writer. Write an original {genre} short story of about {length} "
        "words on the theme the user gives. Start with its title as a Markdown heading "
        "(# Title), then the story in plain paragraphs, with no preface or notes."
    )
    messages: list[Message] = [
        {"role": "system", "content": system},
        {"role": "user", "content": theme},
    ]
    return StoryRequest(theme=theme, genre=genre, length=length, messages=messages)


@task(name="validate-story", retries=0, cache_policy=NO_CACHE)
def validate_story(text: str, *, request: StoryRequest, model: str) -> Story:
    """Drop the model's reasoning, take its title, and reject replies too short to be a story."""
    text = _OPEN_THOUGHT.sub("", _CLOSED_THOUGHT.sub("", text)).strip()
    first, _, rest = text.partition("\n")
    if heading := _HEADING.match(first.strip()):
        story = Story(title=heading.group(1).strip("*_ "), body=rest.strip())
    else:
        story = Story(title=request.theme[:1].upper() + request.theme[1:], body=text)
    floor = min(MIN_STORY_WORDS, request.length // 2)
    if story.words < floor:
        raise LLMResponseError(
            f"{model} returned {story.words} words of story, fewer than the {floor} a "
            f"{request.length}-word story needs; retry, or use a model that follows the prompt"
        )
    get_run_logger().info("story %r: %d words", story.title, story.words)
    return story


@task(name="save-story", retries=0, cache_policy=NO_CACHE)
def save_story(story: Story, *, request: StoryRequest, model: str, directory: Path) -> str:
    """Markdown with front matter, so the file alone tells what produced it."""
    front = {
        "title": story.title,
        "theme": request.theme,
        "genre": request.genre,
        "model": model,
        "words": story.words,
    }
    # JSON scalars are valid YAML, which keeps quotes and colons in themes safe.
    header = "\n".join(f"{key}: {json.dumps(value)}" for key, value in front.items())
    text = f"---\n{header}\n---\n\n# {story.title}\n\n{story.body}\n"
    path = write_output(directory, kind="story", about=request.theme, suffix="md", text=text)
    get_run_logger().info("saved story to %s", path)
    return str(path)


@flow(
    name="story-pipeline",
    flow_run_name="story: {theme}",
    retries=0,  # the scheduler owns retries
    description="Write one short story on a theme with an LLM and save it as Markdown.",
)
async def story_pipeline(
    theme: str,
    genre: str = "general",
    length: int = 400,
    model: str = "offline/story-writer",
    output_dir: str | None = None,
    ollama_host: str | None = None,
) -> list[str]:
    """Write a story on `theme`; returns the path of the saved Markdown file.
    `ollama_host`: the Ollama server of an `ollama/...` model, if not the worker's (one
    the operator allows, see flows/ollama_servers.py)."""
    logger = get_run_logger()
    request = build_story_prompt(theme=theme, genre=genre, length=length)
    directory = output_root(output_dir)
    # Room for the story plus the reasoning some local models write first.
    completion = await call_model(
        model, request.messages, max_tokens=2 * length + 2048, ollama_host=ollama_host
    )
    if completion.finish_reason == "length":
        raise LLMResponseError(
            f"{model} did not finish the story within {2 * length + 2048} tokens (the "
            f"reply was cut there, finish_reason 'length'); a {length}-word story needs "
            "far fewer: retry, or use a model that follows the prompt"
        )
    story = validate_story(completion.text, request=request, model=model)
    path = save_story(story, request=request, model=model, directory=directory)
    await publish_artifact(
        kind="story",
        about=request.theme,
        markdown=_summary(story, model=model, path=path),
        description=f"{request.genre} story on {request.theme!r}",
    )
    logger.info("story pipeline wrote %s", path)
    return [path]


def _summary(story: Story, *, model: str, path: str) -> str:
    words = story.body.split()
    excerpt = " ".join(words[:EXCERPT_WORDS]) + (" …" if len(words) > EXCERPT_WORDS else "")
    return f"# {story.title}\n\n{story.words} words by `{model}`\n\n> {excerpt}\n\nFile: `{path}`\n"
