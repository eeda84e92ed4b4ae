"""The bounds of one call without a server: how `max_tokens` cuts a reply, how the body is
split into records, and how the limits are configured."""

from __future__ import annotations

import pytest

from flows.llm import complete
from flows.llm.models import (
    CHARS_PER_TOKEN,
    CompletionRequest,
    ModelSpec,
    default_call_timeout,
    default_max_response_bytes,
)
from flows.llm.providers.base import StreamState
from flows.llm.providers.framing import (
    ByteBudget,
    LineSplitter,
    NDJSONFrames,
    ResponseTooLargeError,
    SSEFrames,
)

SPEC = ModelSpec("offline", "demo", "local")
STORY = [{"role": "user", "content": "Write about a lighthouse keeper and a storm"}]


def test_a_reply_with_more_pieces_than_max_tokens_is_cut_at_max_tokens() -> None:
    seen: list[str] = []
    state = StreamState(on_token=seen.append, max_tokens=3)
    for piece in ["a", "b", "c", "d", "e"]:
        state.emit(piece)

    assert state.truncated and state.parts == ["a", "b", "c"] == seen
    state.end_truncated()
    assert state.finished and state.finish_reason == "length" and state.output_tokens == 3


def test_a_reply_with_more_characters_than_the_bound_is_cut_mid_piece() -> None:
    state = StreamState(on_token=None, max_tokens=2)
    state.emit("x" * 20)
    state.emit("y" * 20)
    state.emit("z")

    assert state.truncated
    assert "".join(state.parts) == "x" * 20 + "y" * (2 * CHARS_PER_TOKEN - 20)
    assert state.tokens() == 2


def test_a_reply_exactly_at_max_tokens_is_not_cut() -> None:
    state = StreamState(on_token=None, max_tokens=2)
    state.emit("a" * CHARS_PER_TOKEN)
    state.emit("")
    state.emit("b" * CHARS_PER_TOKEN)

    assert not state.truncated and len(state.parts) == 2


def test_without_max_tokens_nothing_is_cut() -> None:
    state = StreamState(on_token=None)
    for _ in range(1000):
        state.emit("word " * 50)
    assert not state.truncated and len(state.parts) == 1000


def test_the_offline_provider_holds_to_max_tokens_too() -> None:
    whole = complete("offline/demo", STORY)
    cut = complete("offline/demo", STORY, max_tokens=5)

    assert whole.finish_reason == "stop"
    assert cut.finish_reason == "length" and cut.output_tokens == 5
    assert whole.text.startswith(cut.text) and len(cut.text) < len(whole.text)


def test_lines_split_across_chunks_and_line_endings() -> None:
    splitter = LineSplitter()
    chunks = ["data: a", "bc\r", "\ndata: x\r\n\r", "\n", "last\rone\nno-end"]
    lines = [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.flush()

    assert lines == ["data: abc", "data: x", "", "last", "one", "no-end"]


def test_sse_frames_join_data_lines_and_skip_the_rest() -> None:
    frames = SSEFrames()
    lines = [
        ": a comment",
        "event: ping",
        "",
        "event: message",
        "data: first",
        "data:second",
        "id: 7",
        "",
        "data: [DONE]",
        "",
    ]
    records = [r for line in lines if (r := frames.line(line)) is not None]

    assert records == ["first\nsecond", "[DONE]"]


def test_ndjson_frames_skip_blank_lines() -> None:
    frames = NDJSONFrames()
    assert [frames.line(line) for line in ['{"a": 1}', "  ", ""]] == ['{"a": 1}', None, None]


def test_the_byte_budget_fails_once_past_its_limit() -> None:
    budget = ByteBudget(10)
    budget.take(6)
    budget.take(4)
    with pytest.raises(ResponseTooLargeError, match="larger than 10 bytes"):
        budget.take(1)


def test_limits_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMSCHED_LLM_CALL_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("LLMSCHED_LLM_MAX_RESPONSE_BYTES", raising=False)
    assert default_call_timeout() == 600.0
    assert default_max_response_bytes() == 4 * 1024 * 1024

    monkeypatch.setenv("LLMSCHED_LLM_CALL_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("LLMSCHED_LLM_MAX_RESPONSE_BYTES", "1000")
    request = CompletionRequest(spec=SPEC, messages=STORY)
    assert (request.call_timeout, request.max_response_bytes) == (30.0, 1000)
    explicit = CompletionRequest(spec=SPEC, messages=STORY, call_timeout=5, max_response_bytes=9)
    assert (explicit.call_timeout, explicit.max_response_bytes) == (5, 9)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLMSCHED_LLM_CALL_TIMEOUT_SECONDS", "soon"),
        ("LLMSCHED_LLM_CALL_TIMEOUT_SECONDS", "0"),
        ("LLMSCHED_LLM_CALL_TIMEOUT_SECONDS", "inf"),
        ("LLMSCHED_LLM_MAX_RESPONSE_BYTES", "4MB"),
        ("LLMSCHED_LLM_MAX_RESPONSE_BYTES", "-1"),
    ],
)
def test_an_invalid_limit_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        complete("offline/demo", STORY)


@pytest.mark.parametrize("option", ["call_timeout", "max_response_bytes", "max_tokens", "timeout"])
def test_a_non_positive_limit_is_refused(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        complete("offline/demo", STORY, **{option: 0})  # type: ignore[misc]
