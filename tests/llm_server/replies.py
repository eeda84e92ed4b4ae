"""Model behaviour shared by every protocol: which names fail how, and the reply's text."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from flows.llm import synthesis
from flows.llm.models import Message
from tests.llm_server.state import ServerState

BROKEN_JSON = '{"title": "A reply cut short", "points": ["first", "sec'
FLOOD_BYTES = 50 * 1024 * 1024
"""How much text a `flood…` model streams before its final event."""
FLOOD_PIECE_CHARS = 1024


REPEATED_STORY_WORDS = 300


def _same_every_time(messages: Sequence[Message], *, as_json: bool) -> str:
    """Models named `repeat…` ignore the prompt: the same story (or, in JSON mode, the same
    object with the keys the prompt shows) every time, as a model stuck in a rut would."""
    fixed: Message = {"role": "user", "content": "the keeper of the same old lighthouse"}
    if as_json:
        template = [m for m in messages if m.get("role") == "system"][:1]
        return synthesis.reply_json([*template, fixed])
    size: Message = {"role": "system", "content": f"about {REPEATED_STORY_WORDS} words"}
    return synthesis.reply_text([size, fixed])


def is_missing(model: str) -> bool:
    return model.startswith("missing")


Ending = Literal["complete", "cutoff", "error", "never"]


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    ending: Ending
    """Models named `cutoff…` stop streaming halfway without the protocol's final event;
    models named `midfail…` stop halfway with the protocol's in-stream error; models named
    `endless…` repeat the reply for ever (paced by `delay_per_token`)."""
    flood_bytes: int = 0
    """Models named `flood…` repeat the reply in 1 KiB pieces until this many bytes of text
    (50 MiB) went out, then end the stream properly, as a server ignoring `max_tokens` would.
    These two shape streams only: a non-streaming request gets the ordinary reply."""

    @classmethod
    def for_request(cls, model: str, messages: Sequence[Message], *, as_json: bool) -> Reply:
        if "broken-json" in model:
            text = BROKEN_JSON
        elif model.startswith("repeat"):
            text = _same_every_time(messages, as_json=as_json or synthesis.wants_json(messages))
        else:
            text = synthesis.reply(messages, as_json=as_json or synthesis.wants_json(messages))
        prompt = " ".join(str(m.get("content", "")) for m in messages)
        ending: Ending = "complete"
        if model.startswith(("cutoff", "midfail")):
            ending = "cutoff" if model.startswith("cutoff") else "error"
        elif model.startswith("endless"):
            ending = "never"
        flood = FLOOD_BYTES if model.startswith("flood") else 0
        return cls(text, synthesis.count_tokens(prompt), ending, flood)

    @property
    def output_tokens(self) -> int:
        return synthesis.count_tokens(self.text)

    async def pieces(self, state: ServerState) -> AsyncIterator[str]:
        """The text in streaming pieces, paced by `delay_per_token`; half of it if it fails."""
        for piece in self._pieces():
            await state.pace()
            state.stats.pieces_sent += 1
            yield piece

    def _pieces(self) -> Iterable[str]:
        pieces = list(synthesis.chunks(self.text))
        if self.ending == "never":
            return itertools.cycle(pieces)
        if self.flood_bytes:
            repeated = (self.text.replace("\n", " ") + " ") * (FLOOD_PIECE_CHARS // 8)
            piece = repeated[:FLOOD_PIECE_CHARS]
            return itertools.repeat(piece, -(-self.flood_bytes // len(piece)))
        if self.ending != "complete":
            return pieces[: len(pieces) // 2]
        return pieces

    async def whole(self, state: ServerState) -> str:
        if self.ending == "never" or self.flood_bytes:
            return self.text
        return "".join([piece async for piece in self.pieces(state)])
