"""The offline MinHash check on a real database: repeats are caught, independent texts are
not, and bad input is refused before anything is written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flows.llm import UnknownModelError
from flows.novelty import MINHASH, NoveltyIndex, check_novelty, remember
from scheduler_core.errors import ConfigurationError
from tests.novelty.conftest import NEAR_STORY, OTHER_STORY, STORY
from tests.support import ROOT


def test_an_empty_index_finds_nothing(index: NoveltyIndex) -> None:
    verdict = check_novelty("story", STORY, model="offline", index=index)

    assert verdict.nearest_item_id is None and verdict.compared == 0
    assert verdict.similarity == 0.0 and not verdict.duplicate


def test_identical_and_near_identical_texts_are_duplicates_unrelated_are_not(
    index: NoveltyIndex,
) -> None:
    assert remember(41, "story", STORY, model="offline", index=index) == (MINHASH.name,)
    remember(42, "story", OTHER_STORY, model="offline", index=index)

    same = check_novelty("story", STORY, model="offline", index=index)
    near = check_novelty("story", NEAR_STORY, model="offline", index=index)
    fresh = check_novelty(
        "story", "A cat naps on a warm windowsill all afternoon.", model="offline", index=index
    )

    assert (same.nearest_item_id, same.similarity, same.duplicate) == ("41", 1.0, True)
    assert near.nearest_item_id == "41" and near.duplicate
    assert 0.5 <= near.similarity < 1.0
    assert not fresh.duplicate and fresh.similarity < 0.1
    assert {v.method for v in (same, near, fresh)} == {MINHASH.name}
    assert same.threshold == 0.5 and same.compared == 2


def test_kinds_are_compared_only_with_their_own(index: NoveltyIndex) -> None:
    remember("card-7", "research", STORY, model="offline", index=index)

    assert not check_novelty("story", STORY, model="offline", index=index).duplicate
    assert check_novelty("research", STORY, model="offline", index=index).nearest_item_id == (
        "card-7"
    )


def test_remembering_an_item_again_adds_no_row(index: NoveltyIndex) -> None:
    remember(5, "story", STORY, model="offline", index=index)
    remember(5, "story", OTHER_STORY, model="offline", index=index)

    assert index.count(kind="story", method=MINHASH) == 1
    verdict = check_novelty("story", STORY, model="offline", index=index)
    assert verdict.duplicate and verdict.compared == 1


def test_the_threshold_comes_from_the_setting(
    index: NoveltyIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    remember(1, "story", STORY, model="offline", index=index)
    monkeypatch.setenv("LLMSCHED_NOVELTY_MINHASH_THRESHOLD", "0.99")

    verdict = check_novelty("story", NEAR_STORY, model="offline", index=index)

    assert verdict.threshold == 0.99 and not verdict.duplicate


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("call", "error", "fix"),
    [
        (lambda i: remember(1, "poem", STORY, index=i), ValueError, "story, research"),
        (lambda i: remember(1, "story", "  ", index=i), ValueError, "must not be empty"),
        (lambda i: remember("", "story", STORY, index=i), ValueError, "1 to 200 characters"),
        (lambda i: remember(True, "story", STORY, index=i), ValueError, "an int or a str"),
        (
            lambda i: remember(1, "story", STORY, model="anthropic/claude", index=i),
            UnknownModelError,
            "offers no embeddings",
        ),
        (
            lambda i: check_novelty("story", STORY, model="nomic-embed-text", index=i),
            UnknownModelError,
            "provider/model",
        ),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    index: NoveltyIndex, call: object, error: type[Exception], fix: str
) -> None:
    with pytest.raises(error, match=fix):
        call(index)  # type: ignore[operator]

    assert index.count(kind="story", method=MINHASH) == 0


@pytest.mark.sqlite_only
def test_an_invalid_threshold_setting_names_the_variable(
    index: NoveltyIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSCHED_NOVELTY_THRESHOLD", "1.5")

    with pytest.raises(ConfigurationError, match="LLMSCHED_NOVELTY_THRESHOLD"):
        check_novelty("story", STORY, model="offline", index=index)


@pytest.mark.sqlite_only
def test_the_blocking_calls_refuse_to_run_in_an_event_loop(index: NoveltyIndex) -> None:
    import asyncio

    async def inside() -> None:
        check_novelty("story", STORY, model="offline", index=index)

    with pytest.raises(RuntimeError, match="await acheck_novelty"):
        asyncio.run(inside())


def test_loading_the_pipelines_does_not_import_scipy() -> None:
    """datasketch imports SciPy (about 0.7 s); every command line call loads the
    pipelines, so MinHash is imported only when a signature is made."""
    code = (
        "import sys, flows.pipelines\n"
        "assert 'scipy' not in sys.modules and 'datasketch' not in sys.modules\n"
        "from flows.novelty.signatures import minhash_signature\n"
        "assert minhash_signature('one two three four').shape == (128,)\n"
        "assert 'datasketch' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
