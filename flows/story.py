"""The story pipeline: a theme in, one Markdown story file out, written from a story
structure (flows/structures) with a fixed point of view, ending, language and length, and
optionally checked against that structure afterwards."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from flows.accepting import accept, check_on_duplicate, compare, end_as_duplicate, rewrites
from flows.library import recent_structures
from flows.llm import LLMError, LLMResponseError, Message
from flows.llm.models import MAX_TEMPERATURE
from flows.llm.providers import PROVIDERS
from flows.story_cards import cards_for_story, check_card_params, concepts_of
from flows.structures import ENDINGS, Structure, pick_structure, structures
from flows.structures.prompt import outline
from flows.structures.verdict import StructureVerdict, parse_verdict, verdict_messages
from flows.tasks import call_model, output_root, publish_artifact, require_text, write_output

Pov = Literal["first", "second", "third-limited", "third-omniscient"]
LengthUnit = Literal["words", "characters"]
PostCheck = Literal["none", "warn", "retry", "strict"]
POVS: tuple[str, ...] = get_args(Pov)
LENGTH_UNITS: tuple[str, ...] = get_args(LengthUnit)
POST_CHECKS: tuple[str, ...] = get_args(PostCheck)

MIN_LENGTH, MAX_LENGTH = 50, 5000
LENGTH_RANGES = {"words": (MIN_LENGTH, MAX_LENGTH), "characters": (300, 30000)}
DEFAULT_TOLERANCE = 0.15
DEFAULT_POV: Pov = "third-limited"
DEFAULT_LANGUAGE = "English"
MIN_STORY_WORDS = 40
"""Fewer words than this (or than half the request, for short ones) is a refusal or a cut-off
reply rather than a story; outside the tolerance but above this, the story is kept with a
warning, as models vary."""
CHARS_PER_WORD = 6
"""Roughly, in the languages that separate words with spaces; sizes the floor in characters."""
CHECK_TOKENS = 2048
"""Room for the post-check's short JSON reply, and the reasoning some models write first."""
MAX_CONCEPTS, MAX_CONCEPT_CHARS = 12, 200
EXCERPT_WORDS = 60

_LANGUAGE = re.compile(r"[^\W\d_](?:[\w '().-]{0,38}[\w)])?")
"""A language name or code: `English`, `pt-BR`, `Swiss German`, `日本語`; no line breaks."""
_REASONING = r"(?:think|thinking|reasoning)"
_CLOSED_THOUGHT = re.compile(rf"<({_REASONING})>.*?(?:</\1>|\Z)", re.DOTALL | re.IGNORECASE)
_OPEN_THOUGHT = re.compile(rf"\A.*?</{_REASONING}>", re.DOTALL | re.IGNORECASE)
"""Some chat templates open the thought block in the prompt, so the reply only closes it."""
_HEADING = re.compile(r"\A#{1,6}\s+(.+?)\s*#*\s*\Z")

POV_TEXT = {
    "first": "first person, told by the protagonist (I)",
    "second": "second person, addressing the protagonist as you",
    "third-limited": "third person, limited to one character's perceptions and thoughts",
    "third-omniscient": "third person, by an omniscient narrator who knows every character",
}
ENDING_TEXT = {
    "happy": "happy: the protagonist wins what matters most",
    "bittersweet": "bittersweet: something is won and something is lost",
    "tragic": "tragic: the protagonist's flaw or fate ends in loss",
    "open": "open: the central question is left for the reader to answer",
    "twist": "a twist: a reveal, fairly set up earlier, that recasts what came before",
}


@dataclass(frozen=True)
class StoryOptions:
    """A story job's checked options; `structure` None means one is picked at run time,
    `ending` None means the structure's own."""

    theme: str
    genre: str = "general"
    length: int = 400
    length_unit: LengthUnit = "words"
    tolerance: float = DEFAULT_TOLERANCE
    structure: str | None = None
    pov: Pov = DEFAULT_POV
    ending: str | None = None
    language: str = DEFAULT_LANGUAGE
    temperature: float | None = None
    post_check: PostCheck = "none"

    def measure(self, body: str) -> int:
        """The body's length in this story's unit (characters include spaces)."""
        return len(body.split()) if self.length_unit == "words" else len(body)

    @property
    def bounds(self) -> tuple[int, int]:
        """The lengths within the tolerance."""
        slack = self.length * self.tolerance
        return round(self.length - slack), round(self.length + slack)

    @property
    def floor(self) -> int:
        """Below this, a reply is a refusal or cut off, not a story (in the story's unit)."""
        least = MIN_STORY_WORDS * (1 if self.length_unit == "words" else CHARS_PER_WORD)
        return min(least, self.length // 2)

    @property
    def token_budget(self) -> int:
        """Room for the story plus the reasoning some local models write first."""
        return 2 * self.length + 2048


@dataclass(frozen=True)
class StoryRequest:
    options: StoryOptions
    structure: Structure
    messages: list[Message]
    concepts: tuple[str, ...] = ()

    @property
    def theme(self) -> str:
        return self.options.theme

    @property
    def genre(self) -> str:
        return self.options.genre

    @property
    def length(self) -> int:
        return self.options.length

    @property
    def ending(self) -> str:
        return self.options.ending or self.structure.ending


@dataclass(frozen=True)
class Story:
    title: str
    body: str

    @property
    def words(self) -> int:
        return len(self.body.split())

    @property
    def markdown(self) -> str:
        return f"# {self.title}\n\n{self.body}"


@dataclass(frozen=True)
class CheckedStory:
    """The story to save, and the post-check's summary of it (None when not checked)."""

    story: Story
    summary: str | None = None


class StoryStructureError(LLMResponseError):
    """Under `post_check="strict"`, the story does not follow its structure; another sample
    may, so it stays retryable like other unusable replies."""

    def __init__(self, message: str, *, structure: str, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.structure = structure
        self.missing = tuple(missing)


def check_story(
    *,
    theme: str,
    genre: str = "general",
    length: int = 400,
    length_unit: str = "words",
    tolerance: float = DEFAULT_TOLERANCE,
    structure: str | None = None,
    pov: str = DEFAULT_POV,
    ending: str | None = None,
    language: str = DEFAULT_LANGUAGE,
    temperature: float | None = None,
    post_check: str = "none",
    model: str | None = None,
) -> StoryOptions:
    """The options, stripped and checked; the same check runs at enqueue
    (check_story_params) and in the run, so bad params never burn retries. Each error names
    the bad value and a valid one."""
    theme = require_text(theme, name="theme", example="a lighthouse keeper's last night")
    genre = require_text(genre, name="genre", example="general")
    unit = _choice(length_unit, name="length_unit", choices=LENGTH_UNITS, example="words")
    low, high = LENGTH_RANGES[unit]
    if not low <= length <= high:
        raise ValueError(
            f"length must be between {low} and {high} {unit}, got {length}: "
            f"pass a length such as {8 * low}"
        )
    if not 0 < tolerance <= 1:
        raise ValueError(
            f"tolerance must be a fraction of the length above 0 and at most 1, got "
            f"{tolerance!r}: pass e.g. tolerance=0.15 for ±15%"
        )
    name = structure.strip() if structure and structure.strip() else None
    if name is not None:
        structures().require(name)
    _check_temperature(temperature, model=model)
    return StoryOptions(
        theme=theme,
        genre=genre,
        length=length,
        length_unit=cast(LengthUnit, unit),
        tolerance=tolerance,
        structure=name,
        pov=cast(Pov, _choice(pov, name="pov", choices=POVS, example=DEFAULT_POV)),
        ending=None if ending is None else _choice(ending, name="ending", choices=ENDINGS),
        language=_language(language),
        temperature=temperature,
        post_check=cast(PostCheck, _choice(post_check, name="post_check", choices=POST_CHECKS)),
    )


OPTION_NAMES = tuple(inspect.signature(check_story).parameters)


def check_story_params(params: Mapping[str, Any]) -> None:
    """Enqueue-time check of params already cast to story_pipeline's signature."""
    check_story(**{name: params[name] for name in OPTION_NAMES if name in params})
    check_card_params(
        cards=params.get("cards"),
        research_topic=params.get("research_topic"),
        match_cards=params.get("match_cards", 0),
    )
    check_on_duplicate(params.get("on_duplicate", "skip"))


def _choice(value: str, *, name: str, choices: Sequence[str], example: str | None = None) -> str:
    normalised = value.strip().lower() if isinstance(value, str) else value
    if normalised not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(choices)}, got {value!r}: pass e.g. "
            f"{name}={example or choices[0]!r}"
        )
    return str(normalised)


def _language(language: str) -> str:
    language = language.strip() if isinstance(language, str) else language
    if not language or not _LANGUAGE.fullmatch(language):
        raise ValueError(
            f"language must be a language name or code of at most 40 characters, got "
            f"{language!r}: pass e.g. language='English' or language='pt-BR'"
        )
    return language


def _check_temperature(temperature: float | None, *, model: str | None) -> None:
    if temperature is None:
        return
    provider = PROVIDERS.get((model or "").partition("/")[0])
    most = provider.max_temperature if provider is not None else MAX_TEMPERATURE
    if not 0 <= temperature <= most:
        whose = f" for {model}" if provider is not None and most < MAX_TEMPERATURE else ""
        raise ValueError(
            f"temperature must be between 0 and {most:g}{whose}, got {temperature!r}: pass "
            "e.g. temperature=0.7, or leave it out for the model's default"
        )


def story_messages(
    options: StoryOptions,
    *,
    structure: Structure,
    concepts: Sequence[str] = (),
    avoid: str | None = None,
) -> list[Message]:
    """The system prompt fixes the form (structure, point of view, ending, language,
    length); the user message is the theme, the concepts to weave in, and the title of an
    earlier story this one must not repeat (`avoid`, on a rewrite of a near-duplicate)."""
    ending = options.ending or structure.ending
    unit = options.length_unit
    system = (
        f"You are a fiction writer. Write an original {options.genre} short story in "
        f"{options.language} on the theme the user gives.\n"
        f"Length: about {options.length} {unit}, within {options.tolerance:.0%} either way.\n"
        f"Point of view: {POV_TEXT[options.pov]}.\n"
        f"Ending: {ENDING_TEXT[ending]}.\n"
        f"{outline(structure, length=options.length, unit=unit)}\n"
        "Follow the three acts in order, each about its share of the length; show the beats "
        "through scenes, without naming acts or beats.\n"
        "Start with its title as a Markdown heading (# Title), then the story in plain "
        "paragraphs, with no preface or notes."
    )
    user = options.theme
    if concepts:
        ideas = "\n".join(f"- {concept}" for concept in concepts)
        user += f"\n\nWeave these ideas into the story, naturally and without lecturing:\n{ideas}"
    if avoid:
        user += (
            f"\n\nAn earlier story, {avoid!r}, came too close to this one: take a different "
            "angle, with other characters, another setting and a different turn of events."
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _concepts(concepts: Sequence[str]) -> tuple[str, ...]:
    """Blank and repeated ones dropped, each on one line and cut to a prompt-sized length."""
    lines = (" ".join(str(c).split())[:MAX_CONCEPT_CHARS] for c in concepts)
    return tuple(dict.fromkeys(line for line in lines if line))[:MAX_CONCEPTS]


@task(name="build-story-prompt", retries=0, cache_policy=NO_CACHE)
def build_story_prompt(
    options: StoryOptions,
    *,
    recent: Sequence[str] = (),
    concepts: Sequence[str] = (),
    avoid: str | None = None,
    rng: random.Random | None = None,
) -> StoryRequest:
    """Take the named structure or pick one (`recent`: the latest stories' structures,
    most recent last), then write the prompt from the checked `options` (check_story),
    weaving in `concepts` (research cards' key ideas) and steering away from `avoid`."""
    library = structures()
    chosen = (
        library.require(options.structure)
        if options.structure
        else pick_structure(recent, rng=rng, library=library)
    )
    ideas = _concepts(concepts)
    messages = story_messages(options, structure=chosen, concepts=ideas, avoid=avoid)
    get_run_logger().info(
        "structure %s (%s)%s, pov %s, ending %s, %s, about %d %s",
        chosen.name,
        chosen.kind,
        "" if options.structure else " picked",
        options.pov,
        options.ending or chosen.ending,
        options.language,
        options.length,
        options.length_unit,
    )
    return StoryRequest(options=options, structure=chosen, messages=messages, concepts=ideas)


@task(name="validate-story", retries=0, cache_policy=NO_CACHE)
def validate_story(text: str, *, request: StoryRequest, model: str) -> Story:
    """Drop the model's reasoning, take its title, reject replies too short to be a story,
    and warn of one outside the length's tolerance."""
    logger = get_run_logger()
    text = _OPEN_THOUGHT.sub("", _CLOSED_THOUGHT.sub("", text)).strip()
    first, _, rest = text.partition("\n")
    if heading := _HEADING.match(first.strip()):
        story = Story(title=heading.group(1).strip("*_ "), body=rest.strip())
    else:
        story = Story(title=request.theme[:1].upper() + request.theme[1:], body=text)
    options = request.options
    size, unit = options.measure(story.body), options.length_unit
    if size < options.floor:
        raise LLMResponseError(
            f"{model} returned {size} {unit} of story, fewer than the {options.floor} a "
            f"{options.length}-{unit[:-1]} story needs; retry, or use a model that follows "
            "the prompt"
        )
    low, high = options.bounds
    if not low <= size <= high:
        logger.warning(
            "story %r has %d %s, outside the %d asked ±%.0f%% (%d to %d); kept",
            story.title,
            size,
            unit,
            options.length,
            100 * options.tolerance,
            low,
            high,
        )
    logger.info("story %r: %d words", story.title, story.words)
    return story


@task(name="judge-story", retries=0, cache_policy=NO_CACHE)
def judge_story(reply: Any, *, request: StoryRequest, model: str) -> StructureVerdict:
    """Hold the checker's reply to the verdict schema and log what it found."""
    verdict = parse_verdict(reply, model=model)
    name = request.structure.name
    if verdict.problems:
        get_run_logger().info("post-check: not %s; missing: %s", name, "; ".join(verdict.problems))
    else:
        get_run_logger().info("post-check: follows %s", name)
    return verdict


@task(name="save-story", retries=0, cache_policy=NO_CACHE)
def save_story(
    story: Story,
    *,
    request: StoryRequest,
    model: str,
    directory: Path,
    summary: str | None = None,
    cards: Sequence[int] = (),
) -> str:
    """Markdown with front matter, so the file alone tells what produced it (its sidecar,
    written once it is registered, adds tokens, cost and novelty)."""
    options = request.options
    front: dict[str, Any] = {
        "title": story.title,
        "theme": request.theme,
        "genre": request.genre,
        "model": model,
        "words": story.words,
        "characters": len(story.body),
        "structure": request.structure.name,
        "kind": request.structure.kind,
        "pov": options.pov,
        "ending": request.ending,
        "language": options.language,
        "length": options.length,
        "length_unit": options.length_unit,
        "temperature": options.temperature,
    }
    if cards:
        front["cards"] = list(cards)
    if summary is not None:
        front["summary"] = summary
    # JSON scalars are valid YAML, which keeps quotes and colons in themes safe.
    header = "\n".join(f"{key}: {json.dumps(value)}" for key, value in front.items())
    text = f"---\n{header}\n---\n\n{story.markdown}\n"
    path = write_output(directory, kind="story", about=request.theme, suffix="md", text=text)
    get_run_logger().info("saved story to %s", path)
    return str(path)


async def write_story(
    request: StoryRequest,
    *,
    model: str,
    ollama_host: str | None,
    messages: Sequence[Message] | None = None,
) -> Story:
    """One draft: the call (`messages`, else the request's) and its validation."""
    budget = request.options.token_budget
    completion = await call_model(
        model,
        messages or request.messages,
        max_tokens=budget,
        ollama_host=ollama_host,
        temperature=request.options.temperature,
    )
    if completion.finish_reason == "length":
        raise LLMResponseError(
            f"{model} did not finish the story within {budget} tokens (the reply was cut "
            f"there, finish_reason 'length'); a {request.length}-{request.options.length_unit[:-1]}"
            " story needs far fewer: retry, or use a model that follows the prompt"
        )
    return validate_story(completion.text, request=request, model=model)


async def post_check_story(
    story: Story, *, request: StoryRequest, model: str, ollama_host: str | None
) -> CheckedStory:
    """Apply the `post_check` policy: `none` keeps the story unchecked; otherwise the same
    model judges it against its structure and summarises it. Off-structure, `warn` keeps it
    with a warning, `retry` rewrites it once naming the problems (then keeps the rewrite,
    with a warning if still off, or the first draft if the rewrite fails), `strict` fails
    the run. Under warn and retry a check that
    itself fails (an invalid verdict, a server error) is a warning, and the story is kept."""
    policy = request.options.post_check
    if policy == "none":
        return CheckedStory(story)
    logger = get_run_logger()
    verdict = await _verdict(story, request=request, model=model, ollama_host=ollama_host)
    if verdict is None:
        return CheckedStory(story)
    if verdict.problems and policy == "retry":
        story, verdict = await _rewrite(
            story, verdict, request=request, model=model, ollama_host=ollama_host
        )
        if verdict is None:
            return CheckedStory(story)
    if verdict.problems:
        structure = request.structure
        missing = "; ".join(verdict.problems)
        if policy == "strict":
            raise StoryStructureError(
                f"{model}'s story {story.title!r} does not follow the structure "
                f"{structure.name!r} ({structure.title}): missing {missing}. Retry, or pass "
                "post_check='warn' (or 'retry') to keep such stories",
                structure=structure.name,
                missing=verdict.problems,
            )
        logger.warning(
            "story %r does not follow %s (missing %s); kept (post_check=%r)",
            story.title,
            structure.name,
            missing,
            policy,
        )
    return CheckedStory(story, summary=verdict.summary)


async def _verdict(
    story: Story, *, request: StoryRequest, model: str, ollama_host: str | None
) -> StructureVerdict | None:
    """The checker's verdict; None (with a warning) when the check fails under a lenient
    policy, since the story itself is fine to keep."""
    messages = verdict_messages(
        request.structure, title=story.title, body=story.body, language=request.options.language
    )
    try:
        completion = await call_model(
            model, messages, json_mode=True, max_tokens=CHECK_TOKENS, ollama_host=ollama_host
        )
        return judge_story(completion.json(), request=request, model=model)
    except LLMError as exc:
        if request.options.post_check == "strict":
            raise
        get_run_logger().warning("post-check failed, story kept without a summary: %s", exc)
        return None


async def _rewrite(
    story: Story,
    verdict: StructureVerdict,
    *,
    request: StoryRequest,
    model: str,
    ollama_host: str | None,
) -> tuple[Story, StructureVerdict | None]:
    """One rewrite with the problems named, and its verdict; a rewrite that fails (refused,
    cut off, a server error) leaves the first draft and its verdict."""
    logger = get_run_logger()
    logger.warning(
        "story %r does not follow %s; rewriting it once", story.title, request.structure.name
    )
    messages = _rewrite_messages(story, request=request, problems=verdict.problems)
    try:
        rewritten = await write_story(
            request, model=model, ollama_host=ollama_host, messages=messages
        )
    except LLMError as exc:
        logger.warning("the rewrite failed, keeping the first draft: %s", exc)
        return story, verdict
    return rewritten, await _verdict(
        rewritten, request=request, model=model, ollama_host=ollama_host
    )


def _rewrite_messages(
    story: Story, *, request: StoryRequest, problems: Sequence[str]
) -> list[Message]:
    found = "\n".join(f"- {problem}" for problem in problems)
    ask = (
        f"An editor found that this story does not follow its structure, "
        f"{request.structure.title}:\n{found}\n"
        "Rewrite the whole story so that it moves through the three acts and their beats in "
        "order. Keep the theme, point of view, ending, language and length. Start with the "
        "title as a Markdown heading (# Title)."
    )
    return [
        *request.messages,
        {"role": "assistant", "content": story.markdown},
        {"role": "user", "content": ask},
    ]


@flow(
    name="story-pipeline",
    flow_run_name="story: {theme}",
    retries=0,  # the scheduler owns retries
    description="Write one short story on a theme from a story structure with an LLM, drawing "
    "on research cards, and save it as Markdown unless it repeats an earlier story.",
)
async def story_pipeline(
    theme: str,
    genre: str = "general",
    length: int = 400,
    model: str = "offline/story-writer",
    output_dir: str | None = None,
    ollama_host: str | None = None,
    structure: str | None = None,
    pov: str = DEFAULT_POV,
    ending: str | None = None,
    language: str = DEFAULT_LANGUAGE,
    length_unit: str = "words",
    tolerance: float = DEFAULT_TOLERANCE,
    temperature: float | None = None,
    post_check: str = "none",
    cards: list[str] | None = None,
    research_topic: str | None = None,
    match_cards: int = 0,
    on_duplicate: str = "skip",
) -> list[str] | State[list[str]]:
    """Write a story on `theme`; returns the path of the saved Markdown file.
    `ollama_host`: the Ollama server of an `ollama/...` model, if not the worker's (one
    the operator allows, see flows/ollama_servers.py). `structure`: a structure's name, or
    None to pick one; `ending`: None for the structure's own. `cards` (ids or a research
    member's outputs), `research_topic` and `match_cards`: the research cards to draw on
    (story_cards.py). A draft too close to an earlier story is rewritten with another
    structure or angle; `on_duplicate` says how the job ends if every draft was
    (accepting.py). The options: docs/pipelines.md#the-story-pipeline."""
    started = time.monotonic()
    logger = get_run_logger()
    # Every parameter is checked before a card is researched or a file is written.
    options = check_story(
        theme=theme,
        genre=genre,
        length=length,
        length_unit=length_unit,
        tolerance=tolerance,
        structure=structure,
        pov=pov,
        ending=ending,
        language=language,
        temperature=temperature,
        post_check=post_check,
        model=model,
    )
    check_card_params(cards=cards, research_topic=research_topic, match_cards=match_cards)
    check_on_duplicate(on_duplicate)
    used = await cards_for_story(
        cards=cards,
        research_topic=research_topic,
        match_cards=match_cards,
        theme=theme,
        genre=genre,
        model=model,
        ollama_host=ollama_host,
        output_dir=output_dir,
    )
    recent = await asyncio.to_thread(recent_structures)
    tries, avoid = 1 + rewrites(), None
    for attempt in range(1, tries + 1):
        request = build_story_prompt(
            options, recent=recent, concepts=concepts_of(used), avoid=avoid
        )
        story = await write_story(request, model=model, ollama_host=ollama_host)
        checked = await post_check_story(
            story, request=request, model=model, ollama_host=ollama_host
        )
        novelty = await compare("story", checked.story.markdown, ollama_host=ollama_host)
        if not novelty.duplicate:
            break
        logger.warning("draft %d of %d: %s", attempt, tries, novelty.describe())
        recent = [*recent, request.structure.name]  # the next draft takes another structure
        avoid = novelty.nearest.title if novelty.nearest else checked.story.title
    else:
        return end_as_duplicate(novelty, tries=tries, on_duplicate=on_duplicate)
    card_ids = [card.id or 0 for card in used]
    directory = output_root(output_dir)
    path = save_story(
        checked.story,
        request=request,
        model=model,
        directory=directory,
        summary=checked.summary,
        cards=card_ids,
    )
    accepted = await accept(
        "story",
        path,
        checked.story.markdown,
        novelty=novelty,
        model=model,
        started=started,
        ollama_host=ollama_host,
        title=checked.story.title,
        topic=request.theme,
        tags=[request.genre],
        key_concepts=[],
        structure=request.structure.name,
        structure_kind=request.structure.kind,
        cards_used=card_ids,
    )
    await publish_artifact(
        kind="story",
        about=request.theme,
        markdown=_summary(checked, request=request, model=model, path=path) + accepted.table,
        description=f"{request.genre} story on {request.theme!r}",
    )
    logger.info("story pipeline wrote %s (output %s)", path, accepted.item.id)
    return [path]


def _summary(checked: CheckedStory, *, request: StoryRequest, model: str, path: str) -> str:
    story, structure = checked.story, request.structure
    words = story.body.split()
    excerpt = " ".join(words[:EXCERPT_WORDS]) + (" …" if len(words) > EXCERPT_WORDS else "")
    about = (
        f"{story.words} words by `{model}` · structure {structure.title} ({structure.kind}) · "
        f"{request.options.pov} · {request.ending} ending · {request.options.language}"
    )
    summary = f"**Summary:** {checked.summary}\n\n" if checked.summary else ""
    return f"# {story.title}\n\n{about}\n\n{summary}> {excerpt}\n\nFile: `{path}`\n"
