"""Which structure the next story is written from: never the last one, not one of the last
few, and kinds already used often in the recent history weighted down, so a nightly batch
walks through the kinds instead of settling on one."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from flows.structures.library import structures
from flows.structures.model import Structure

AVOID_RECENT = 3
"""The last this many structures are not picked again while others remain."""
KIND_WINDOW = 12
"""How many of the latest stories count towards a kind's use."""
KIND_PENALTY = 2.0
"""A kind used n times in the window weighs 1 / (1 + n) ** KIND_PENALTY."""


def pick_structure(
    recent: Sequence[str],
    *,
    rng: random.Random | None = None,
    library: Mapping[str, Structure] | None = None,
) -> Structure:
    """A structure for the next story. `recent`: the names of the latest stories'
    structures, most recent last (names the library lacks are ignored). Each kind gets an
    equal chance before its use in `recent` weighs it down, so a kind with many structures
    is not favoured; deterministic for a seeded `rng`."""
    library = structures() if library is None else library
    if not library:
        raise ValueError("there are no story structures to pick from")
    rng = rng or random.Random()
    names = sorted(library)
    known = [name for name in recent if name in library]
    candidates = _not_recent(names, known)
    kind_size = Counter(library[name].kind for name in names)
    kind_use = Counter(library[name].kind for name in known[-KIND_WINDOW:])
    weights = [
        1.0 / kind_size[kind] / (1 + kind_use[kind]) ** KIND_PENALTY
        for kind in (library[name].kind for name in candidates)
    ]
    [name] = rng.choices(candidates, weights=weights)
    return library[name]


def _not_recent(names: list[str], recent: list[str]) -> list[str]:
    """Names outside the last AVOID_RECENT, else all but the last, else all (one structure)."""
    for avoid in (set(recent[-AVOID_RECENT:]), set(recent[-1:])):
        if remaining := [name for name in names if name not in avoid]:
            return remaining
    return names
