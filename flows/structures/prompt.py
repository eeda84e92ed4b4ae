"""A structure written out for a model: its acts in order, each with its share of the
length and its beats."""

from __future__ import annotations

from flows.structures.model import Structure


def outline(structure: Structure, *, length: int | None = None, unit: str = "words") -> str:
    """The structure as prompt text; with `length`, each act also gets its rough size."""
    lines = [f"Structure: {structure.title} ({structure.kind}). {structure.description}"]
    for number, act in enumerate(structure.acts, start=1):
        size = f", ~{round(act.share * length)} {unit}" if length else ""
        lines.append(f"Act {number}, {act.label} (about {act.share:.0%} of the story{size}):")
        lines.extend(f"- {beat}" for beat in act.beats)
    return "\n".join(lines)
