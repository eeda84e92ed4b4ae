"""The benchmark table (bench/report.py) shows rows' text as written: an install command's
`[bench]` extra or a `[x]` in an error is not rich markup to drop."""

from __future__ import annotations

from rich.console import Console

from bench.measure import Result
from bench.report import table


def test_the_table_shows_square_brackets_in_notes_and_errors() -> None:
    results = [
        Result("peers: not run [x]", "postgres", "jobs/s", note="pip install -e '.[bench]'"),
        Result("a row", "sqlite", "ms", error="failed: [Errno 2] no such file"),
    ]
    console = Console(width=400, record=True)
    console.print(table(results, title="t"))
    text = console.export_text()
    assert "pip install -e '.[bench]'" in text
    assert "[Errno 2]" in text
    assert "peers: not run [x]" in text
