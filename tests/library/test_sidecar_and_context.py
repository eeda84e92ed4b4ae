"""The sidecar file beside each output, its Markdown table, and the run context."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect import flow, tags

from flows.library import (
    OutputItem,
    RunContext,
    current_run_context,
    sidecar_data,
    sidecar_markdown,
    write_sidecar,
)
from flows.library.context import run_context_from
from flows.outputs import written_outputs


def test_the_sidecar_holds_the_outputs_record_privately(
    add_output: Callable[..., OutputItem], tmp_path: Path
) -> None:
    card = add_output()
    output = tmp_path / "story-tides-1a2b3c4d.md"
    output.write_text("# Tides\n")
    item = add_output(
        kind="story",
        path=str(output),
        title="Tides",
        topic="tides",
        structure="hero",
        structure_kind="quest",
        cards_used=[card.id],
        model="anthropic/claude-haiku-4-5",
        input_tokens=1200,
        output_tokens=800,
        duration_seconds=2.25,
        nearest_id=card.id,
        similarity=0.31,
        context=RunContext(job_id=11, group_id=4, flow_run_id="0b6c-flow"),
    )
    written: list[Path] = []
    token = written_outputs.set(written)
    try:
        path = write_sidecar(output, sidecar_data(item, run_id=9, words=412))
    finally:
        written_outputs.reset(token)
    assert path == tmp_path / "story-tides-1a2b3c4d.md.meta.json"
    assert written == [path]  # a cancelled run removes it with the output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data == {
        "output_id": item.id,
        "kind": "story",
        "title": "Tides",
        "topic": "tides",
        "model": "anthropic/claude-haiku-4-5",
        "provider": "anthropic",
        "input_tokens": 1200,
        "output_tokens": 800,
        "duration_seconds": 2.25,
        "cost_usd": pytest.approx((1200 * 1.0 + 800 * 5.0) / 1e6),
        "structure": "hero",
        "structure_kind": "quest",
        "cards_used": [card.id],
        "nearest_id": card.id,
        "similarity": 0.31,
        "job_id": 11,
        "group_id": 4,
        "flow_run_id": "0b6c-flow",
        "created_at": data["created_at"],
        "run_id": 9,
        "words": 412,
    }
    assert data["created_at"].endswith("Z")
    with pytest.raises(FileExistsError):  # never over an existing file
        write_sidecar(output, {"x": 1})
    table = sidecar_markdown(data).splitlines()
    assert table[:2] == ["| field | value |", "|---|---|"]
    assert (
        f"| cards_used | {card.id} |" in table and "| model | anthropic/claude-haiku-4-5 |" in table
    )


def test_markdown_cells_cannot_break_the_table() -> None:
    rows = sidecar_markdown({"title": "a | b\nc", "cards_used": [], "cost_usd": None}).splitlines()
    assert rows[2:] == ["| title | a \\| b c |", "| cards_used | - |", "| cost_usd | - |"]


def test_the_run_context_comes_from_the_flow_runs_tags() -> None:
    tags_ = ["llmsched", "job:12", "type:story", "group:3", "position:2", "job:x", "retry_of:9"]
    assert run_context_from("abc", tags_) == RunContext(job_id=12, group_id=3, flow_run_id="abc")
    assert run_context_from(None, []) == RunContext()
    assert current_run_context() == RunContext()  # outside a flow run


@pytest.mark.sqlite_only
def test_inside_a_flow_run_the_context_names_its_job_group_and_run(prefect_api: str) -> None:
    @flow(name="library-context-probe")
    def probe() -> tuple[RunContext, str]:
        from prefect.runtime import flow_run

        return current_run_context(), str(flow_run.id)

    with tags("llmsched", "job:41", "group:6"):
        context, run_id = probe()
    assert context == RunContext(job_id=41, group_id=6, flow_run_id=run_id)
