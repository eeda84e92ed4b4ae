"""The research card: the one shape a research run may save, so downstream readers can rely on
it whichever model wrote it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from flows.llm import LLMResponseError

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

MIN_KEY_POINTS = 3

DRAFT_TEMPLATE = """{
  "title": "a short headline for the card",
  "summary": "two or three sentences that answer what matters about the topic",
  "key_points": ["at least three findings, one sentence each"],
  "open_questions": ["what is still unknown or disputed"],
  "sources": ["references a reader can check; an empty list if you know none"]
}"""
"""What the model is asked to write; keys shown this way are also what the offline provider
fills in."""


class CardDraft(BaseModel):
    """The part of a card the model writes; unknown keys are ignored, since models add some."""

    model_config = ConfigDict(extra="ignore")

    title: Text
    summary: Text
    key_points: list[Text] = Field(min_length=MIN_KEY_POINTS)
    open_questions: list[Text]
    sources: list[Text]


class ResearchCard(CardDraft):
    """A saved card: the draft plus what the run itself knows, the topic, tags and model."""

    model_config = ConfigDict(extra="forbid")

    topic: Text
    tags: list[Text]
    model: Text


class CardValidationError(LLMResponseError):
    """The model's reply is not a valid card; another sample may be, so it stays retryable."""

    def __init__(self, message: str, *, model: str, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.model = model
        self.fields = fields


def parse_card(reply: Any, *, topic: str, tags: list[str], model: str) -> ResearchCard:
    """Check the model's parsed JSON reply and complete it into a card."""
    if not isinstance(reply, dict):
        raise CardValidationError(
            f"research card from {model} must be a JSON object, got {type(reply).__name__}; "
            "use a model that follows JSON instructions",
            model=model,
            fields=(),
        )
    try:
        draft = CardDraft.model_validate(reply)
    except ValidationError as exc:
        raise _invalid(exc, model=model) from exc
    return ResearchCard(**draft.model_dump(), topic=topic, tags=tags, model=model)


def invalid_json(exc: Exception, *, model: str) -> CardValidationError:
    return CardValidationError(
        f"research card from {model} is not valid JSON: {exc}", model=model, fields=()
    )


def _invalid(exc: ValidationError, *, model: str) -> CardValidationError:
    problems = {".".join(map(str, error["loc"])) or "card": error["msg"] for error in exc.errors()}
    detail = "; ".join(f"{field}: {message}" for field, message in problems.items())
    return CardValidationError(
        f"research card from {model} is invalid ({detail}); retry, or use a model that follows "
        "the card's JSON template",
        model=model,
        fields=tuple(problems),
    )
