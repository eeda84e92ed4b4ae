"""The story structures: the shipped library, a user's own files, the pick of the next one,
and the post-check's verdict. Pure: no Prefect server, no model server."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from flows.llm import complete
from flows.structures import (
    ENDINGS,
    STRUCTURES_DIR_ENV,
    StructureFileError,
    UnknownStructureError,
    load_library,
    pick_structure,
    structures,
)
from flows.structures.prompt import outline
from flows.structures.verdict import VerdictError, parse_verdict, verdict_messages

PICKS = 100
MAX_KIND_SHARE = 0.25
"""With ten kinds a fair share is a tenth; a quarter means the weighting has failed."""


@pytest.fixture(autouse=True)
def _prefect() -> None:
    """These tests need no Prefect server (overrides the flow tests' autouse fixture)."""


@pytest.fixture(autouse=True)
def shipped_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STRUCTURES_DIR_ENV, raising=False)


def a_structure(name: str, *, kind: str = "quest", **changes: object) -> dict[str, object]:
    structure: dict[str, object] = {
        "name": name,
        "title": name.replace("-", " ").title(),
        "kind": kind,
        "description": "A test arc.",
        "ending": "open",
        "acts": [
            {"label": "Start", "share": 0.25, "beats": ["Something begins"]},
            {"label": "Middle", "share": 0.5, "beats": ["It gets worse", "A turn"]},
            {"label": "End", "share": 0.25, "beats": ["It ends"]},
        ],
    }
    return {**structure, **changes}


def test_the_library_ships_at_least_15_structures_of_shared_kinds() -> None:
    library = structures()

    assert len(library) >= 15
    assert sum(len(names) >= 2 for names in library.kinds.values()) >= 5, "kinds are shared"
    for name, structure in library.items():
        assert structure.name == name and library.source(name) == "shipped"
        assert len(structure.acts) == 3 and all(act.beats for act in structure.acts)
        assert sum(act.share for act in structure.acts) == pytest.approx(1, abs=0.011)
        assert structure.ending in ENDINGS


def test_the_library_is_loaded_once_per_directory() -> None:
    assert structures() is structures() is load_library(None)


def test_a_hundred_picks_never_repeat_the_last_and_spread_over_kinds() -> None:
    library, rng, history = structures(), random.Random(15), []
    for _ in range(PICKS):
        picked = pick_structure(history, rng=rng)
        assert picked.name not in history[-3:], f"{picked.name} repeats one of {history[-3:]}"
        history.append(picked.name)

    kinds = Counter(library[name].kind for name in history)
    assert set(kinds) == set(library.kinds), (
        f"kinds never picked: {set(library.kinds) - set(kinds)}"
    )
    assert max(kinds.values()) <= MAX_KIND_SHARE * PICKS, kinds


def test_picks_are_deterministic_under_a_seeded_rng() -> None:
    def run(seed: int) -> list[str]:
        rng, history = random.Random(seed), []
        for _ in range(20):
            history.append(pick_structure(history, rng=rng).name)
        return history

    assert run(7) == run(7) != run(8)


def test_kinds_used_often_in_the_history_are_weighted_down() -> None:
    library = structures()
    quests = library.kinds["quest"]
    recent = [quests[0]] * 8 + ["tragedy", "whodunit", "rebirth"]  # quest: 8 of the last 11
    picks = Counter(
        library[pick_structure(recent, rng=random.Random(seed)).name].kind for seed in range(2000)
    )

    unused = [kind for kind in library.kinds if kind not in ("quest", "tragedy", "mystery")]
    assert picks["quest"] * 10 < min(picks[kind] for kind in unused), picks


def test_a_one_structure_library_still_answers() -> None:
    only = load_library(None)["tragedy"]
    assert pick_structure(["tragedy"] * 5, library={"tragedy": only}) is only


def test_an_unknown_structure_is_refused_naming_the_choices() -> None:
    with pytest.raises(UnknownStructureError, match=r"structure 'sonnet' is unknown: pass one of"):
        structures().require("sonnet")


def test_user_files_add_and_override_structures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(a_structure("spiral", kind="descent")))
    both = [a_structure("tragedy", kind="tragedy", ending="tragic"), a_structure("loop")]
    (tmp_path / "more.yml").write_text(yaml.safe_dump(both))
    (tmp_path / "notes.txt").write_text("not a structure")
    monkeypatch.setenv(STRUCTURES_DIR_ENV, str(tmp_path))

    library = structures()

    assert {"spiral", "loop"} <= set(library) and len(library) == len(load_library(None)) + 2
    assert library["spiral"].kind == "descent" and "descent" in library.kinds
    assert library["tragedy"].description == "A test arc."
    assert library.source("tragedy") == str(tmp_path / "more.yml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (a_structure("x", acts=[]), r"acts: Tuple should have at least 3 items"),
        ({**a_structure("x"), "kind": "Quest Story"}, r"kind: String should match pattern"),
        ({k: v for k, v in a_structure("x").items() if k != "title"}, r"title: Field required"),
        ({**a_structure("x"), "ending": "sad"}, r"ending: Input should be 'happy'"),
        ({**a_structure("x"), "beats": ["a"]}, r"beats: Extra inputs are not permitted"),
        (
            a_structure("x", acts=[{"label": "A", "share": 0.5, "beats": ["b"]}] * 3),
            r"the acts' shares must add up to 1, got 1.5",
        ),
        (
            a_structure("x", acts=[{"label": "A", "share": 0, "beats": ["b"]}] * 3),
            r"acts\.0\.share: Input should be greater than 0",
        ),
        ("- just a string", r"item 0: must be a mapping"),
    ],
)
def test_a_bad_user_file_names_the_file_and_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: object, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    monkeypatch.setenv(STRUCTURES_DIR_ENV, str(tmp_path))

    with pytest.raises(StructureFileError, match=message) as caught:
        structures()
    assert str(caught.value).startswith(f"structure file {bad}")


def test_unreadable_and_clashing_user_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STRUCTURES_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(StructureFileError, match="is not a directory"):
        structures()

    monkeypatch.setenv(STRUCTURES_DIR_ENV, str(tmp_path))
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    with pytest.raises(StructureFileError, match=r"broken.yaml: not valid YAML"):
        load_library(str(tmp_path))

    (tmp_path / "broken.yaml").unlink()
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(a_structure("twin")))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(a_structure("twin")))
    with pytest.raises(
        StructureFileError, match=r"b.yaml: name 'twin' is also defined in .*a.yaml"
    ):
        load_library(str(tmp_path))


def test_the_outline_gives_every_act_its_share_and_beats() -> None:
    structure = structures()["heros-journey"]

    text = outline(structure, length=400, unit="words")

    assert text.startswith("Structure: The Hero's Journey (quest).")
    assert "Act 2, Initiation (about 50% of the story, ~200 words):" in text
    assert all(f"- {beat}" in text for act in structure.acts for beat in act.beats)


def test_the_offline_model_returns_a_usable_verdict() -> None:
    structure = structures()["whodunit"]
    messages = verdict_messages(
        structure, title="The Tide Clock", body="The keeper wound the clock.", language="English"
    )

    verdict = parse_verdict(complete("offline/x", messages, json_mode=True).json(), model="x")

    assert verdict.follows_structure and verdict.missing == [] and verdict.problems == []
    assert verdict.summary


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"follows_structure": "yes", "missing": [], "summary": "s"}, "Input should be a valid"),
        ({"follows_structure": True, "summary": "s"}, r"missing: Field required"),
        ({"follows_structure": True, "missing": [], "summary": " "}, r"summary: String should"),
        (["not", "an", "object"], "must be a JSON object, got list"),
    ],
)
def test_a_reply_that_is_not_a_verdict_is_refused(reply: object, message: str) -> None:
    with pytest.raises(VerdictError, match=message) as caught:
        parse_verdict(reply, model="ollama/qwen3:30b")
    assert "ollama/qwen3:30b" in str(caught.value) and caught.value.retryable


def test_an_unfollowed_structure_always_names_a_problem() -> None:
    vague = parse_verdict({"follows_structure": False, "missing": [], "summary": "s"}, model="m")
    named = parse_verdict(
        {"follows_structure": False, "missing": ["no reveal"], "summary": "s"}, model="m"
    )

    assert len(vague.problems) == 1 and named.problems == ["no reveal"]
