"""The results as a rich table for people and as JSON for tools and later comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.measure import Result, Series

FORMATS = {"jobs/s": "{:,.0f}", "ms": "{:,.1f}", "s": "{:,.3f}", "MB": "{:,.1f}"}
VERDICT = {True: "[green]met[/]", False: "[red]missed[/]", None: "-"}


def figure(series: Series | None, unit: str) -> str:
    if series is None:
        return "-"
    fmt = FORMATS.get(unit, "{:,.3g}")
    low, high = fmt.format(series.low), fmt.format(series.high)
    return f"{fmt.format(series.median)} [dim]\\[{low}-{high}][/]"


def table(results: list[Result], *, title: str) -> Table:
    grid = Table(title=title)
    grid.add_column("row", ratio=3)
    grid.add_column("db")
    grid.add_column("unit")
    grid.add_column("ours: median [min-max]", justify="right", no_wrap=True)
    grid.add_column("baseline", ratio=2)
    grid.add_column("baseline: median [min-max]", justify="right", no_wrap=True)
    grid.add_column("ratio", justify="right")
    grid.add_column("target")
    grid.add_column("")
    grid.add_column("note", ratio=2)
    for r in results:  # text from rows, errors and notes is shown as written: a command's
        # `[bench]` extra is not markup
        grid.add_row(
            escape(r.row),
            r.backend,
            escape(r.unit),
            figure(r.ours, r.unit) if r.error is None else "[red]error[/]",
            escape(r.baseline_label or "-"),
            figure(r.baseline, r.unit),
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            escape(r.goal.text) if r.goal else "-",
            VERDICT[r.met],
            escape(r.error or r.note),
        )
    return grid


def write_json(path: Path, results: list[Result], meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({**meta, "rows": [r.as_json() for r in results]}, indent=2))


def console() -> Console:
    """Wide enough for the table when the output is a file or a CI log."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=200)
