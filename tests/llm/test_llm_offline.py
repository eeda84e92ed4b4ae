"""The offline provider lets demos and pipeline tests run with no model at all."""

from __future__ import annotations

import pytest

from flows.llm import ModelSpec, complete, resolve_model

STORY = [{"role": "user", "content": "Write about a lighthouse keeper and a storm"}]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> None:
    """Any attempt to reach a server would fail loudly."""
    for env_var in ("OLLAMA_HOST", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.setenv(env_var, f"http://127.0.0.1:{closed_port}")


def test_the_same_prompt_gives_the_same_plausible_text() -> None:
    tokens: list[str] = []
    first = complete("offline/demo", STORY, on_token=tokens.append)
    again = complete("offline/other-name", STORY)
    other = complete("offline/demo", [{"role": "user", "content": "Explain tidal pools"}])

    assert first.text == again.text != other.text
    assert "".join(tokens) == first.text and len(tokens) > 5
    assert first.text.count("\n\n") >= 2, "a few paragraphs"
    assert "lighthouse" in first.text.lower()
    assert first.provider == "offline" and first.output_tokens == len(first.text.split())


def test_json_mode_fills_the_keys_the_prompt_shows() -> None:
    prompt = 'Plan a chapter. Answer as {"title": "...", "beats": ["..."], "length": 3}'
    data = complete("offline/demo", [{"role": "user", "content": prompt}], json_mode=True).json()

    assert set(data) == {"title", "beats", "length"}
    assert isinstance(data["title"], str) and data["title"]
    assert isinstance(data["beats"], list) and all(isinstance(b, str) for b in data["beats"])
    assert isinstance(data["length"], int)


def test_a_system_prompt_asking_for_json_gets_json() -> None:
    messages = [{"role": "system", "content": "Reply in JSON."}, *STORY]
    data = complete("offline/demo", messages).json()

    assert set(data) == {"title", "summary", "points"}


@pytest.mark.parametrize(
    ("model", "spec"),
    [
        ("ollama/qwen3:30b", ModelSpec("ollama", "qwen3:30b", "ollama")),
        ("openai/gpt-4o-mini", ModelSpec("openai", "gpt-4o-mini", "external")),
        ("anthropic/claude-sonnet-4-5", ModelSpec("anthropic", "claude-sonnet-4-5", "external")),
        ("offline/demo", ModelSpec("offline", "demo", "local")),
        ("ollama/hf.co/org/model:Q4", ModelSpec("ollama", "hf.co/org/model:Q4", "ollama")),
    ],
)
def test_the_model_string_picks_provider_and_resource(model: str, spec: ModelSpec) -> None:
    assert resolve_model(model) == spec
    assert str(spec) == model
