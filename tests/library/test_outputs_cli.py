"""`llmsched outputs`, `outputs show` and `usage`, run as real subprocesses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.library import OutputItem, RunContext, record_usage
from tests.cli.conftest import CLI

OUTPUT_KEYS = {
    "id", "kind", "path", "title", "topic", "tags", "key_concepts", "structure",
    "structure_kind", "cards_used", "model", "provider", "input_tokens", "output_tokens",
    "duration_seconds", "cost_usd", "job_id", "group_id", "flow_run_id", "nearest_id",
    "similarity", "created_at",
}  # fmt: skip


@pytest.fixture
def cli(lib: str) -> CLI:
    return CLI(lib)


def test_outputs_lists_and_filters_stories_and_cards(
    cli: CLI, add_output: Callable[..., OutputItem]
) -> None:
    card = add_output(
        title="Tidal power", topic="Tidal energy", tags=["ocean"], model="openai/gpt-4o-mini",
        input_tokens=1000, output_tokens=500, context=RunContext(job_id=1, group_id=2),
    )  # fmt: skip
    story = add_output(kind="story", title="The keeper", topic="a lighthouse", tags=["sea"])
    today = datetime.now(UTC).date().isoformat()
    table, as_json, research, tagged, grouped, dated, empty = cli.many(
        [
            ["outputs"],
            ["outputs", "--json"],
            ["outputs", "--kind", "research", "--json"],
            ["outputs", "--tag", "SEA", "--json"],
            ["outputs", "--group", "2", "--topic", "tidal", "--json"],
            ["outputs", "--since", today, "--until", today, "--limit", "1", "--json"],
            ["outputs", "--since", "2000-01-01", "--until", "2000-01-02"],
        ]
    )
    assert table.code == 0 and table.stderr == ""
    header, *lines = table.stdout.splitlines()
    assert header.split()[:4] == ["id", "kind", "created", "title"]
    assert "Tidal power" in lines[0] and "$0.000450" in lines[0] and "1000/500" in lines[0]
    assert "The keeper" in lines[1]
    listed = as_json.json()
    assert [o["id"] for o in listed] == [card.id, story.id]
    assert set(listed[0]) == OUTPUT_KEYS and listed[0]["tags"] == ["ocean"]
    assert listed[0]["cost_usd"] == pytest.approx(0.00045)
    assert [o["id"] for o in research.json()] == [card.id]
    assert [o["id"] for o in tagged.json()] == [story.id]
    assert [o["id"] for o in grouped.json()] == [card.id]
    assert [o["id"] for o in dated.json()] == [story.id]
    assert (empty.code, empty.stdout) == (0, "no outputs\n")


def test_outputs_show_gives_every_field_the_sidecar_and_key_concepts(
    cli: CLI, add_output: Callable[..., OutputItem], tmp_path: Path
) -> None:
    path = tmp_path / "research-tides.json"
    path.write_text("{}")
    sidecar = tmp_path / "research-tides.json.meta.json"
    sidecar.write_text("{}")
    card = add_output(
        path=str(path), title="Tides", topic="tides", key_concepts=["neap tides", "spring tides"],
        model="openai/brand-new", input_tokens=5, output_tokens=5,
    )  # fmt: skip
    text, as_json = cli.many(
        [["outputs", "show", str(card.id)], ["outputs", "show", str(card.id), "--json"]]
    )
    assert text.code == 0, text
    lines = text.stdout.splitlines()
    assert lines[0] == f"output {card.id}  research  Tides"
    assert f"  sidecar     {sidecar}" in lines and "  cost        unknown" in lines
    assert lines[-3:] == ["key concepts", "  - neap tides", "  - spring tides"]
    data = as_json.json()
    assert set(data) == OUTPUT_KEYS | {"sidecar"} and data["sidecar"] == str(sidecar)
    assert data["key_concepts"] == ["neap tides", "spring tides"] and data["cost_usd"] is None


def test_usage_sums_per_model_day_and_group(cli: CLI, lib: str) -> None:
    for group, tokens in [(1, 1000), (1, 2000), (2, 4000)]:
        record_usage("openai/gpt-4o", input_tokens=tokens, output_tokens=tokens,
                     context=RunContext(group_id=group), db=lib)  # fmt: skip
    record_usage("ollama/qwen3:30b", input_tokens=7, output_tokens=8, context=RunContext(), db=lib)
    text, by_model, by_group, later = cli.many(
        [
            ["usage"],
            ["usage", "--by", "model", "--json"],
            ["usage", "--by", "group", "--by", "model", "--json"],
            ["usage", "--since", "2999-01-01", "--json"],
        ]
    )
    assert text.code == 0, text
    lines = text.stdout.splitlines()
    assert lines[0].split()[:4] == ["model", "day", "group", "calls"]
    assert lines[-1].split()[:5] == ["total", "-", "-", "4", "7007"]
    data = by_model.json()
    assert data["by"] == ["model"]
    assert [(r["model"], r["calls"], r["input_tokens"]) for r in data["rows"]] == [
        ("ollama/qwen3:30b", 1, 7),
        ("openai/gpt-4o", 3, 7000),
    ]
    assert data["rows"][1]["cost_usd"] == pytest.approx((7000 * 2.5 + 7000 * 10) / 1e6)
    assert data["total"]["calls"] == 4 and data["total"]["output_tokens"] == 7008
    rows = by_group.json()["rows"]
    assert [(r["group_id"], r["model"], r["calls"]) for r in rows] == [
        (None, "ollama/qwen3:30b", 1),
        (1, "openai/gpt-4o", 2),
        (2, "openai/gpt-4o", 1),
    ]
    assert later.json() == {"by": ["model", "day", "group"], "rows": [], "total": None}


@pytest.mark.sqlite_only  # refused before any read: the backend plays no part
def test_bad_input_is_one_error_line_and_a_documented_exit_code(
    cli: CLI, add_output: Callable[..., OutputItem]
) -> None:
    add_output()
    results = cli.many(
        [
            ["outputs", "show", "999"],
            ["outputs", "show", "0"],
            ["outputs", "--since", "2026-13-01"],
            ["outputs", "--until", "yesterday"],
            ["outputs", "--kind", "poem"],
            ["outputs", "--limit", "0"],
            ["usage", "--by", "week"],
            ["usage", "--since", "31/01/2026"],
        ]
    )
    errors = [(r.code, r.error) for r in results]
    assert all(code == 2 for code, _ in errors), errors
    assert all(r.stdout == "" for r in results)
    messages = [message for _, message in errors]
    assert messages[0] == "error: no output with id 999; list them with `llmsched outputs`"
    assert "output id must be an integer from 1" in messages[1]
    assert messages[2].startswith("error: --since '2026-13-01' is not a date: use YYYY-MM-DD")
    assert messages[3].startswith("error: --until 'yesterday' is not a date")
    assert "'poem' is not one of 'story', 'research'" in messages[4]
    assert "--limit" in messages[5]
    assert "'week' is not one of 'model', 'day', 'group'" in messages[6]
    assert messages[7].startswith("error: --since '31/01/2026' is not a date")
