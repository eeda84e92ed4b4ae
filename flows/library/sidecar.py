"""The sidecar: `<output>.meta.json` beside each output, so the file alone tells what made
it (model, tokens, cost, structure, cards, nearest earlier item, run ids), and the same
data as a Markdown table for the run's Prefect artifact."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flows.library.registry import output_to_dict
from flows.library.tables import OutputItem
from flows.outputs import note_output
from scheduler_core.files import open_private

SIDECAR_SUFFIX = ".meta.json"

SIDECAR_FIELDS = (
    "output_id",
    "kind",
    "title",
    "topic",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "duration_seconds",
    "cost_usd",
    "structure",
    "structure_kind",
    "cards_used",
    "nearest_id",
    "similarity",
    "job_id",
    "group_id",
    "flow_run_id",
    "created_at",
)
"""What `sidecar_data` takes from a registered output, in this order."""


def sidecar_path(output_path: str | Path) -> Path:
    path = Path(output_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sidecar_data(item: OutputItem, **extra: Any) -> dict[str, Any]:
    """The sidecar of a registered output (`created_at` as ISO 8601 UTC), plus `extra`
    fields (e.g. `run_id`, `words`)."""
    fields = output_to_dict(item)
    fields["output_id"] = fields.pop("id")
    return {**{name: fields[name] for name in SIDECAR_FIELDS}, **extra}


def write_sidecar(output_path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write `data` as JSON to `<output_path>.meta.json`, private (0600, or the group's
    mode, see scheduler_core/files.py) and never over an existing file; noted as a run
    output first, so a cancelled run removes it with the output."""
    path = note_output(sidecar_path(output_path))
    text = json.dumps(dict(data), indent=2, ensure_ascii=False) + "\n"
    with open_private(path, "x") as file:
        file.write(text)
    return path


def sidecar_markdown(data: Mapping[str, Any]) -> str:
    """The sidecar as a two-column Markdown table (lists comma-separated, None as `-`)."""
    from flows.group_artifact import cell  # imports Prefect's client: only when rendering

    rows = "\n".join(f"| {cell(name)} | {cell(_shown(value))} |" for name, value in data.items())
    return f"| field | value |\n|---|---|\n{rows}\n"


def _shown(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
