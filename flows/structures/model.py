"""The shape of a story structure: a named, classified arc of three acts, each a share of
the story's length and a few beats. Held strictly, so a user's file with a typo fails with
the file and the field named instead of quietly changing what a story is asked to be."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Ending = Literal["happy", "bittersweet", "tragic", "open", "twist"]
ENDINGS: tuple[str, ...] = get_args(Ending)

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=60)]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Paragraph = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]

ACTS = 3
SHARE_SLACK = 0.011
"""How far the acts' shares may sum from 1: rounding to two places, no more."""


class Act(BaseModel):
    """One act: what it is called, its share of the length, and its beats in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Line
    share: float = Field(gt=0, lt=1)
    beats: tuple[Line, ...] = Field(min_length=1, max_length=12)


class Structure(BaseModel):
    """A story structure; `kind` classifies it (several structures share a kind), and
    `ending` is the ending it leans to, used when a job names none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Slug
    title: Line
    kind: Slug
    description: Paragraph
    ending: Ending
    acts: tuple[Act, ...] = Field(min_length=ACTS, max_length=ACTS)

    @model_validator(mode="after")
    def _shares_make_the_whole(self) -> Structure:
        total = sum(act.share for act in self.acts)
        if abs(total - 1) > SHARE_SLACK:
            raise ValueError(f"the acts' shares must add up to 1, got {total:g}")
        return self

    @property
    def beats(self) -> int:
        return sum(len(act.beats) for act in self.acts)
