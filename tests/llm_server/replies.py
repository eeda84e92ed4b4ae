"""Model behaviour shared by every protocol: which names fail how, and the reply's text."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from flows.llm import synthesis
from flows.llm.models import Message
from tests.llm_server.state import ServerState

BROKEN_JSON = '{"title": "A reply cut short", "points": ["first", "sec'


def is_missing(model: str) -> bool:
    return model.startswith("missing")


Ending = Literal["complete", "cutoff", "error"]


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    ending: Ending
    """Models named `cutoff…` stop streaming halfway without the protocol's final event;
    models named `midfail…` stop halfway with the protocol's in-stream error."""

    @classmethod
    def for_request(cls, model: str, messages: Sequence[Message], *, as_json: bool) -> Reply:
        if "broken-json" in model:
            text = BROKEN_JSON
        else:
            text = synthesis.reply(messages, as_json=as_json or synthesis.wants_json(messages))
        prompt = " ".join(str(m.get("content", "")) for m in messages)
        ending: Ending = "complete"
        if model.startswith(("cutoff", "midfail")):
            ending = "cutoff" if model.startswith("cutoff") else "error"
        return cls(text, synthesis.count_tokens(prompt), ending)

    @property
    def output_tokens(self) -> int:
        return synthesis.count_tokens(self.text)

    async def pieces(self, state: ServerState) -> AsyncIterator[str]:
        """The text in streaming pieces, paced by `delay_per_token`; half of it if it fails."""
        pieces = list(synthesis.chunks(self.text))
        if self.ending != "complete":
            pieces = pieces[: len(pieces) // 2]
        for piece in pieces:
            await state.pace()
            state.stats.pieces_sent += 1
            yield piece

    async def whole(self, state: ServerState) -> str:
        return "".join([piece async for piece in self.pieces(state)])
