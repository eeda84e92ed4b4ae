"""DEC-011 resource rule: class names, caps, and room for one more job."""

from __future__ import annotations

import pytest

from scheduler_core.errors import ConfigurationError, InvalidJobError
from scheduler_core.rules.resources import (
    capacity,
    check_limit,
    check_name,
    direct_has_room,
    has_room,
)

# --- check_name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "default",
        "ollama",
        "a",
        "x" * 64,
        "GPU_0",
        "llm.local:11434",
        "team@host",
        "a-b_c.d:e@f",
        "0123456789",
    ],
)
def test_a_valid_resource_class_name_is_returned_unchanged(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 65, id="too-long"),
        pytest.param("has space", id="space"),
        pytest.param("slash/name", id="slash"),
        pytest.param("star*", id="star"),
        pytest.param("ünïcode", id="non-ascii"),
        pytest.param("\ngpu", id="leading-newline"),
        pytest.param("gpu\tx", id="tab"),
    ],
)
def test_an_invalid_resource_class_name_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        check_name(name)
    assert str(raised.value) == (
        f"invalid resource class {name!r}: use 1-64 letters, digits or _ . : @ -"
    )


@pytest.mark.parametrize("name", [None, 1, 1.5, b"ollama", ["ollama"], True])
def test_a_resource_class_name_that_is_not_a_string_is_a_configuration_error(
    name: object,
) -> None:
    with pytest.raises(ConfigurationError, match="invalid resource class"):
        check_name(name)


@pytest.mark.parametrize("name", ["gpu\n", "x" * 64 + "\n"], ids=["short", "64-chars"])
def test_a_name_with_a_trailing_newline_is_rejected(name: str) -> None:
    with pytest.raises(ConfigurationError):
        check_name(name)


# --- check_limit ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [None, 1, 2, 10_000])
def test_a_positive_integer_or_none_is_a_valid_limit(limit: int | None) -> None:
    assert check_limit(limit) == limit


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(1.0, id="float"),
        pytest.param("1", id="str"),
    ],
)
def test_anything_else_is_an_invalid_limit(limit: object) -> None:
    with pytest.raises(InvalidJobError) as raised:
        check_limit(limit)
    assert str(raised.value) == (
        f"resource limit must be a positive integer or None, got {limit!r}"
    )


# --- has_room ---------------------------------------------------------------------------


@pytest.mark.parametrize("running", [0, 1, 1000])
def test_a_class_without_a_limit_always_has_room(running: int) -> None:
    assert has_room(limit=None, running=running) is True


@pytest.mark.parametrize(
    ("limit", "running", "room"),
    [(1, 0, True), (1, 1, False), (1, 2, False), (3, 2, True), (3, 3, False)],
)
def test_a_capped_class_has_room_while_fewer_than_its_limit_run(
    limit: int, running: int, room: bool
) -> None:
    assert has_room(limit=limit, running=running) is room


# --- capacity / direct_has_room ---------------------------------------------------------


@pytest.mark.parametrize(("live_slots", "expected"), [(-1, 1), (0, 1), (1, 1), (4, 4)])
def test_capacity_is_the_live_slots_but_at_least_one(live_slots: int, expected: int) -> None:
    assert capacity(live_slots) == expected


@pytest.mark.parametrize(
    ("running", "live_slots", "room"),
    [
        pytest.param(0, 0, True, id="lone-direct-caller-without-workers"),
        pytest.param(1, 0, False, id="no-workers-one-running"),
        pytest.param(1, 2, True, id="a-free-slot"),
        pytest.param(2, 2, False, id="every-slot-busy"),
        pytest.param(3, 2, False, id="over-full"),
    ],
)
def test_a_direct_execution_starts_only_in_a_free_slot(
    running: int, live_slots: int, room: bool
) -> None:
    assert direct_has_room(running=running, live_slots=live_slots) is room
