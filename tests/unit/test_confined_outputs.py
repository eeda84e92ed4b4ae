"""A job's `output_dir` names a directory inside the artifacts directory, or inside a root
the operator allows in LLMSCHED_OUTPUT_ROOTS; anything else is refused on its text alone
(the enqueue-time check: nothing is read or created)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.outputs import NAME_MAX, OUTPUT_ROOTS_ENV, PATH_MAX, confined_output_dir
from scheduler_core.errors import ConfigurationError, InvalidParamsError, OutputDirError

EXTRA = Path("/srv/llmsched-stories")


@pytest.fixture(autouse=True)
def no_extra_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OUTPUT_ROOTS_ENV, raising=False)


@pytest.fixture
def artifacts(isolated_home: Path) -> Path:
    return isolated_home / "artifacts"


@pytest.mark.parametrize("value", [None, "", "."])
def test_no_output_dir_means_the_artifacts_directory(value: str | None, artifacts: Path) -> None:
    assert confined_output_dir(value) == artifacts


@pytest.mark.parametrize(
    ("value", "inside"),
    [
        ("stories", "stories"),
        ("stories/nightly/", "stories/nightly"),
        ("./stories//nightly", "stories/nightly"),
        ("stories~", "stories~"),
    ],
)
def test_a_relative_output_dir_is_a_directory_inside_it(
    value: str, inside: str, artifacts: Path
) -> None:
    assert confined_output_dir(value) == artifacts / inside


def test_an_absolute_path_inside_the_artifacts_directory_is_accepted(artifacts: Path) -> None:
    assert confined_output_dir(f"{artifacts}/cards") == artifacts / "cards"
    assert confined_output_dir(str(artifacts)) == artifacts


OUTSIDE = [
    ("/etc", "is outside the artifacts directory"),
    ("/tmp/stories", "is outside the artifacts directory"),
    ("/", "is outside the artifacts directory"),
    ("../jobs", "contains '..'"),
    ("stories/../../..", "contains '..'"),
    ("stories/../cards", "contains '..'"),  # inside, but going up is never needed
    ("~", "home directories are not expanded"),
    ("~root", "home directories are not expanded"),
    ("~nobody/.ssh", "home directories are not expanded"),
    ("stories\x00/etc", "NUL character"),
    ("x" * (NAME_MAX + 1), f"at most {NAME_MAX}"),
    ("é" * (NAME_MAX // 2 + 1), f"at most {NAME_MAX}"),  # bytes, not characters
    ("d/" * (PATH_MAX // 2), f"at most {PATH_MAX - 1}"),
    ("\udcff\ud800", "cannot be encoded"),
]


@pytest.mark.parametrize(("value", "problem"), OUTSIDE, ids=[repr(v)[:24] for v, _ in OUTSIDE])
def test_a_path_outside_or_unusable_is_refused_with_the_fix(value: str, problem: str) -> None:
    with pytest.raises(OutputDirError) as caught:
        confined_output_dir(value)
    message = str(caught.value)
    assert problem in message
    assert isinstance(caught.value, InvalidParamsError)  # refused at enqueue like any param
    assert len(message) < 400  # one clear sentence, not the whole overlong value


def test_the_refusal_of_an_absolute_path_names_the_setting_that_allows_it() -> None:
    with pytest.raises(OutputDirError, match=OUTPUT_ROOTS_ENV):
        confined_output_dir("/etc")


def test_a_name_of_name_max_bytes_is_accepted_one_more_is_not(artifacts: Path) -> None:
    assert confined_output_dir("x" * NAME_MAX) == artifacts / ("x" * NAME_MAX)
    with pytest.raises(OutputDirError):
        confined_output_dir("x" * (NAME_MAX + 1))


def test_the_whole_path_counts_towards_path_max(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short names under a deep artifacts directory still make one overlong path."""
    monkeypatch.setenv("LLMSCHED_HOME", "/srv/" + "/".join(["h" * 200] * 5))
    room = PATH_MAX - 1 - len(os.fsencode(confined_output_dir(None))) - 1  # after "<root>/"
    names = "/".join(["d" * 100] * (room // 101 + 1))
    assert room < len(names) < PATH_MAX - 1  # the value alone would pass
    with pytest.raises(OutputDirError, match="makes a path of"):
        confined_output_dir(names)


@pytest.mark.parametrize("value", [3, 1.5, ["stories"], {"dir": "x"}, True])
def test_a_non_string_is_refused(value: object) -> None:
    with pytest.raises(OutputDirError, match="must be a string"):
        confined_output_dir(value)


def test_the_operator_allows_more_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OUTPUT_ROOTS_ENV, f"{EXTRA}{os.pathsep}{os.pathsep}/srv/cards/")
    assert confined_output_dir(str(EXTRA)) == EXTRA
    assert confined_output_dir(f"{EXTRA}/nightly") == EXTRA / "nightly"
    assert confined_output_dir("/srv/cards/weekly") == Path("/srv/cards/weekly")
    for outside in ("/srv", "/srv/llmsched-stories-other", f"{EXTRA}/../etc", "/etc"):
        with pytest.raises(OutputDirError):
            confined_output_dir(outside)


@pytest.mark.parametrize("entry", ["relative/dir", "stories"])
def test_a_relative_root_in_the_setting_is_a_configuration_error(
    entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OUTPUT_ROOTS_ENV, entry)
    with pytest.raises(ConfigurationError, match=f"{OUTPUT_ROOTS_ENV} entry .* absolute"):
        confined_output_dir("stories")


def test_the_artifacts_directory_follows_llmsched_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSCHED_HOME", "/srv/elsewhere")
    assert confined_output_dir("x") == Path("/srv/elsewhere/artifacts/x")
    with pytest.raises(OutputDirError):
        confined_output_dir("/srv/elsewhere/logs")  # the data directory, not its artifacts
