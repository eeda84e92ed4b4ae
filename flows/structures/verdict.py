"""The post-check: the model reads a finished story against the structure it was meant to
follow and answers in JSON whether it does, what is missing, and a short summary. The
reply is held strictly to that shape, like a research card."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationError

from flows.llm import LLMResponseError, Message
from flows.structures.model import Structure
from flows.structures.prompt import outline

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]

VERDICT_TEMPLATE = """{
  "follows_structure": true,
  "missing": [],
  "summary": "two or three sentences on what happens in the story"
}"""
"""What the checker is asked to write; the offline provider fills these keys in, keeping
the `true` and the empty list it is shown."""


class StructureVerdict(BaseModel):
    """The checker's reply; keys it adds are ignored, the three asked for are required."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    follows_structure: StrictBool
    missing: list[Text] = Field(max_length=30)
    summary: Text

    @property
    def problems(self) -> list[str]:
        """What the story lacks; empty when it follows its structure."""
        if self.follows_structure:
            return []
        return self.missing or ["the checker named no act or beat, only that it is off"]


class VerdictError(LLMResponseError):
    """The checker's reply is not a verdict; another sample may be, so it stays retryable."""


def verdict_messages(
    structure: Structure, *, title: str, body: str, language: str
) -> list[Message]:
    system = (
        "You are an editor. Check whether the short story the user gives follows the "
        "structure given with it: its three acts in order, with most of their beats (loose, "
        "creative readings count). Reply with one JSON object with exactly these keys:\n"
        f"{VERDICT_TEMPLATE}\n"
        "follows_structure: true or false. missing: when false, each act or beat the story "
        "lacks or gets wrong, one short sentence each; an empty list when true. summary: two "
        f"or three sentences on what happens in the story, in {language}."
    )
    user = f"{outline(structure)}\n\nThe story:\n\n# {title}\n\n{body}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_verdict(reply: Any, *, model: str) -> StructureVerdict:
    """The verdict in the model's parsed JSON reply; anything else is a `VerdictError`
    naming the bad fields and the model."""
    if not isinstance(reply, dict):
        raise VerdictError(
            f"post-check reply from {model} must be a JSON object, got {type(reply).__name__}; "
            "retry, or use a model that follows JSON instructions"
        )
    try:
        return StructureVerdict.model_validate(reply)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise VerdictError(
            f"post-check reply from {model} is not a verdict ({fields}); retry, or use a model "
            "that follows JSON instructions"
        ) from None
