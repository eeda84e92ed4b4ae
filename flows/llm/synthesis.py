"""Deterministic stand-in replies derived from the prompt, so pipelines and their tests run
with no model: the same prompt always yields the same text."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator, Sequence

from flows.llm.models import Message

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_JSON_KEY = re.compile(r'"([A-Za-z_]\w*)"\s*:\s*(\S{0,2})')
_LENGTH = re.compile(r"\babout (\d{1,6}) (words|characters)\b")
WORDS_PER_PARAGRAPH = 34
"""About what one paragraph of `reply_text` holds (four sentences)."""
CHARS_PER_WORD = 6
MAX_PARAGRAPHS = 150
_CHUNK = re.compile(r"(?:\S+\s*){1,4}")
_STOPWORDS = frozenset(
    {"the", "and", "for", "with", "that", "this", "from", "into", "your", "you", "are", "was"}
    | {"were", "have", "has", "about", "write", "give", "make", "please", "return", "reply"}
    | {"only", "one", "each", "its", "their", "them", "than", "then", "what", "which", "who"}
    | {"json", "object", "valid", "nothing", "else", "keys", "tell", "describe", "explain"}
)

_OPENERS = (
    "{Topic} deserves a careful look.",
    "Consider {topic} from the ground up.",
    "At the heart of this piece is {topic}.",
)
_MIDDLES = (
    "The first thing to notice about {a} is how it shapes {b}.",
    "When {a} meets {b}, the details start to matter.",
    "{A} rarely stands alone; it leans on {b} and {c}.",
    "A practical view of {a} begins with {b}.",
    "Seen closely, {a} and {b} tell the same story.",
    "Most questions about {a} come back to {c}.",
)
_CLOSERS = (
    "In short, {a} rewards patience.",
    "That is why {a} keeps coming back.",
    "The rest follows from {a} and {b}.",
)


def wants_json(messages: Sequence[Message]) -> bool:
    """A system prompt mentioning JSON is how every protocol can ask for it."""
    return any(m.get("role") == "system" and "json" in _content(m).lower() for m in messages)


def reply(messages: Sequence[Message], *, as_json: bool) -> str:
    return reply_json(messages) if as_json else reply_text(messages)


def reply_text(messages: Sequence[Message], *, paragraphs: int | None = None) -> str:
    """Paragraphs on the last user prompt's words, as many as a system prompt's "about N
    words" (or characters) asks for, else 3; seeded by the whole conversation, so a change
    anywhere in the prompt (a story's structure, say) changes the text."""
    prompt = _last_user_prompt(messages)
    words, rng = _keywords(prompt), _rng(_conversation(messages))
    paragraphs = paragraphs or _paragraphs_asked(messages)
    return "\n\n".join(
        " ".join(
            _fill(rng, template, words)
            for template in (
                rng.choice(_OPENERS if index == 0 else _MIDDLES),
                rng.choice(_MIDDLES),
                rng.choice(_MIDDLES),
                rng.choice(_CLOSERS),
            )
        )
        for index in range(paragraphs)
    )


def reply_json(messages: Sequence[Message]) -> str:
    """Fill the keys the prompt shows (`"title": ...`), or a generic outline if it shows none:
    a list shown empty (`[]`) stays empty, a boolean keeps the value shown."""
    prompt = _last_user_prompt(messages)
    shown = dict(_JSON_KEY.findall("\n".join(_content(m) for m in messages)))
    words, rng = _keywords(prompt, exclude=shown.keys()), _rng(prompt)
    keys = shown or {"title": '"', "summary": '"', "points": "["}
    obj: dict[str, object] = {}
    for key, marker in keys.items():
        if marker.startswith("[]"):
            obj[key] = []
        elif marker.startswith("["):
            obj[key] = [_fill(rng, rng.choice(_MIDDLES), words) for _ in range(3)]
        elif marker[:1].isdigit():
            obj[key] = rng.randint(1, 10)
        elif marker[:1] in ("t", "f"):
            obj[key] = marker.startswith("t")
        elif "title" in key or "name" in key:
            obj[key] = " ".join(words[:3]).title()
        else:
            obj[key] = _fill(rng, rng.choice(_MIDDLES), words)
    return json.dumps(obj)


def chunks(text: str) -> Iterator[str]:
    """Split a reply into the few-word pieces a streaming server would send."""
    return (match.group(0) for match in _CHUNK.finditer(text))


def count_tokens(text: str) -> int:
    return len(text.split())


def _content(message: Message) -> str:
    content = message.get("content", "")
    return content if isinstance(content, str) else json.dumps(content)


def _conversation(messages: Sequence[Message]) -> str:
    """The whole prompt as every protocol carries it: Anthropic's wire joins the system
    messages into one field, so they are joined the same way here."""
    system = "\n\n".join(_content(m) for m in messages if m.get("role") == "system")
    rest = (f"{m.get('role')}: {_content(m)}" for m in messages if m.get("role") != "system")
    return "\x00".join([system, *rest])


def _paragraphs_asked(messages: Sequence[Message]) -> int:
    system = "\n".join(_content(m) for m in messages if m.get("role") == "system")
    if not (asked := _LENGTH.search(system)):
        return 3
    words = int(asked.group(1)) // (CHARS_PER_WORD if asked.group(2) == "characters" else 1)
    return max(2, min(MAX_PARAGRAPHS, round(words / WORDS_PER_PARAGRAPH)))


def _last_user_prompt(messages: Sequence[Message]) -> str:
    users = [_content(m) for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def _keywords(prompt: str, *, exclude: Iterable[str] = ()) -> list[str]:
    skip = _STOPWORDS | {word.lower() for word in exclude}
    words = (w.lower() for w in _WORD.findall(prompt))
    unique = list(dict.fromkeys(w for w in words if w not in skip))
    return unique or ["the topic", "its parts", "the whole"]


def _rng(prompt: str) -> random.Random:
    return random.Random(hashlib.sha256(prompt.encode()).digest())


def _fill(rng: random.Random, template: str, words: list[str]) -> str:
    a, b, c = rng.sample(words, 3) if len(words) >= 3 else (rng.choice(words) for _ in range(3))
    topic = " and ".join(words[:2])
    return template.format(topic=topic, Topic=topic.capitalize(), a=a, A=a.capitalize(), b=b, c=c)
