"""A server that misbehaves cannot hold a call for ever, fill the memory, or put megabytes or
credentials into an error: each hostile mode of the fake server, through every protocol."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psutil
import pytest

from flows.llm import (
    AuthenticationError,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMTimeoutError,
    complete,
)
from tests.llm_server.process import LLMServerProcess
from tests.llm_server.replies import FLOOD_BYTES, FLOOD_PIECE_CHARS

PROMPT = [{"role": "user", "content": "Write a 100-word story about a lighthouse keeper"}]
PROVIDERS = ["ollama", "openai", "anthropic"]
KEYED = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
BASE_URL_ENV = {"ollama": "OLLAMA_HOST", "openai": "OPENAI_BASE_URL", "anthropic": None}
MB = 1024 * 1024


class PeakRSS:
    """This process's resident memory, sampled as tokens arrive (every 16th) and at the end."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._seen = 0

    def on_token(self, _piece: str) -> None:
        self._seen += 1
        if self._seen % 16 == 0:
            self.sample()

    def sample(self) -> None:
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        self.sample()
        return (self.peak - self.start) / MB


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception behind it (`__cause__`, else `__context__`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def all_text(error: BaseException) -> str:
    return "\n".join(f"{exc}\n{exc!r}" for exc in chain(error))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_endless_stream_fails_at_the_call_deadline(
    fake_llm: LLMServerProcess, provider: str
) -> None:
    fake_llm.control(delay_per_token=0.01)
    tokens: list[str] = []
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError) as caught:
        complete(f"{provider}/endless", PROMPT, call_timeout=2, on_token=tokens.append)
    elapsed = time.monotonic() - started

    assert 2.0 <= elapsed < 4.0, elapsed
    assert len(tokens) > 20, "the server was streaming all along, never silent"
    message = str(caught.value)
    assert "call deadline of 2s" in message
    assert "call_timeout=" in message and "LLMSCHED_LLM_CALL_TIMEOUT_SECONDS" in message
    assert caught.value.retryable
    # The server saw the connection go: its Ollama request is no longer in flight.
    fake_llm.wait_for_stats(lambda s: s["current_ollama"] == 0, timeout=5)
    print(f"\n{provider}: endless stream failed after {elapsed:.2f}s, {len(tokens)} pieces")


def test_the_call_deadline_defaults_from_the_environment(
    fake_llm: LLMServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSCHED_LLM_CALL_TIMEOUT_SECONDS", "1.5")
    fake_llm.control(delay_per_token=0.01)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r"call deadline of 1\.5s"):
        complete("openai/endless", PROMPT)
    assert 1.5 <= time.monotonic() - started < 3.5


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_flood_stops_at_the_response_size_cap(fake_llm: LLMServerProcess, provider: str) -> None:
    rss = PeakRSS()
    started = time.monotonic()
    with pytest.raises(LLMResponseError) as caught:
        # max_tokens high enough (160 MB of text) that only the byte cap can stop the flood
        complete(f"{provider}/flood", PROMPT, max_tokens=10_000_000, on_token=rss.on_token)
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert f"more than {4 * MB} bytes" in message
    assert "max_response_bytes=" in message and "LLMSCHED_LLM_MAX_RESPONSE_BYTES" in message
    assert rss.growth_mb < 100, f"RSS grew {rss.growth_mb:.1f} MB"
    stats = fake_llm.stats()
    assert stats["pieces_sent"] < FLOOD_BYTES // FLOOD_PIECE_CHARS // 2, "reading stopped early"
    print(f"\n{provider}: flood stopped at the cap in {elapsed:.2f}s, RSS +{rss.growth_mb:.1f} MB")


def test_the_size_cap_defaults_from_the_environment(
    fake_llm: LLMServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSCHED_LLM_MAX_RESPONSE_BYTES", "100000")
    with pytest.raises(LLMResponseError, match="more than 100000 bytes"):
        complete("ollama/flood", PROMPT)
    with pytest.raises(LLMResponseError, match="more than 50000 bytes"):
        complete("ollama/flood", PROMPT, max_response_bytes=50_000)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_flood_is_cut_at_max_tokens(fake_llm: LLMServerProcess, provider: str) -> None:
    rss = PeakRSS()
    tokens: list[str] = []

    def on_token(piece: str) -> None:
        tokens.append(piece)
        rss.on_token(piece)

    completion = complete(f"{provider}/flood", PROMPT, max_tokens=200, on_token=on_token)

    assert completion.finish_reason == "length"
    assert completion.text == "".join(tokens)
    assert 0 < len(completion.text) <= 200 * 16
    assert completion.output_tokens is not None and completion.output_tokens <= 200
    assert rss.growth_mb < 100, f"RSS grew {rss.growth_mb:.1f} MB"
    print(f"\n{provider}: flood cut at {len(completion.text)} chars, RSS +{rss.growth_mb:.1f} MB")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_huge_error_body_gives_a_short_error(fake_llm: LLMServerProcess, provider: str) -> None:
    rss = PeakRSS()
    with pytest.raises(LLMResponseError) as caught:
        complete(f"{provider}/hugeerror", PROMPT)

    error = caught.value
    assert error.status_code == 500 and error.retryable
    assert "HTTP 500" in str(error) and "the model crashed" in str(error)
    assert "only the first 4096 bytes" in str(error)
    assert len(str(error)) <= 2048, len(str(error))
    assert len(all_text(error)) <= 8192, "nor behind it"
    assert rss.growth_mb < 100, f"RSS grew {rss.growth_mb:.1f} MB"
    print(f"\n{provider}: 20 MB error body gave a {len(str(error))}-character error")


@pytest.mark.parametrize("key", ["test-KEY-echoed-7f3a9", "sk-proj-Echo1234567890abcdefXYZ"])
@pytest.mark.parametrize(
    ("model", "error_type"),
    [("echokey-401", AuthenticationError), ("echokey-500", LLMResponseError)],
)
@pytest.mark.parametrize("provider", sorted(KEYED))
def test_a_key_the_server_echoes_appears_in_no_error(
    fake_llm: LLMServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    model: str,
    error_type: type[LLMError],
    key: str,
) -> None:
    """Ollama sends no key, so it has none to echo."""
    monkeypatch.setenv(KEYED[provider], key)
    with pytest.raises(error_type) as caught:
        complete(f"{provider}/{model}", PROMPT)

    text = all_text(caught.value)
    assert key not in text, text
    assert key[:12] not in text, "not even its start"
    assert "refused or failed" in str(caught.value), "the rest of the server's message stays"


@pytest.mark.parametrize("scenario", ["refused", "http-500", "deadline"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_password_in_the_base_url_appears_in_no_error(
    fake_llm: LLMServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    closed_port: int,
    provider: str,
    scenario: str,
) -> None:
    password = "tiger-Pa55word-x9"
    port = closed_port if scenario == "refused" else fake_llm.port
    base = f"http://scott:{password}@127.0.0.1:{port}"
    env_var = BASE_URL_ENV[provider] or "ANTHROPIC_BASE_URL"
    monkeypatch.setenv(env_var, f"{base}/v1" if provider == "openai" else base)
    expected: type[LLMError] = {
        "refused": LLMConnectionError,
        "http-500": LLMResponseError,
        "deadline": LLMTimeoutError,
    }[scenario]
    if scenario == "http-500":
        fake_llm.control(fail_next=1, fail_status=500)
    if scenario == "deadline":
        fake_llm.control(delay_per_token=0.01)
    model = f"{provider}/{'endless' if scenario == 'deadline' else 'qwen3:30b'}"

    # Only the deadline scenario is about the deadline: the others get one no loaded
    # machine reaches, so that their own error is the one raised.
    with pytest.raises(expected) as caught:
        complete(model, PROMPT, call_timeout=1 if scenario == "deadline" else 60)

    text = all_text(caught.value)
    assert password not in text and "scott:" not in text, text
    assert f"127.0.0.1:{port}" in text, "the address itself is still named"
