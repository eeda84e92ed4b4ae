"""Output commands: outputs (the library's stories and research cards), outputs show."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmsched.cli._app import app
from llmsched.cli._common import (
    CLIError,
    DbOption,
    JsonOption,
    add_row,
    echo,
    emit_json,
    fields,
    print_table,
    short,
    table,
    when,
)

if TYPE_CHECKING:
    from flows.library import OutputItem

PANEL = "Outputs"

outputs_app = typer.Typer(
    name="outputs",
    help="The stories and research cards the pipelines wrote (docs/outputs.md).",
    invoke_without_command=True,
)
app.add_typer(outputs_app, rich_help_panel=PANEL)


class Kind(StrEnum):
    story = "story"
    research = "research"


SinceOption = Annotated[
    str | None,
    typer.Option(
        metavar="DATE",
        help="From this UTC date (YYYY-MM-DD) or time (2026-01-31T18:00Z), inclusive.",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        metavar="DATE",
        help="Up to this UTC date (YYYY-MM-DD, the whole day included) or time, exclusive.",
    ),
]


@contextmanager
def library(db: str | None) -> Iterator[None]:
    """The library's database for one command, closed after it."""
    from flows.library.store import close_library, library_db

    try:
        library_db(db)
        yield
    finally:
        close_library(db)


def parse_when(value: str | None, option: str) -> date | datetime | None:
    """A `--since`/`--until` value: a date, or an ISO 8601 time (UTC when no zone)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CLIError(
            f"{option} {value!r} is not a date: use YYYY-MM-DD (UTC), e.g. 2026-01-31, "
            "or a time such as 2026-01-31T18:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def money(value: float | None) -> str | None:
    """USD to 6 decimals; None (an unknown price) stays None and prints as `-`."""
    if value is None:
        return None
    return f"${value:.6f}" if value else "$0"


def tokens(item: OutputItem) -> str | None:
    if item.input_tokens is None and item.output_tokens is None:
        return None
    return f"{item.input_tokens or 0}/{item.output_tokens or 0}"


@outputs_app.callback()
def list_outputs(
    ctx: typer.Context,
    kind: Annotated[Kind | None, typer.Option(help="Only stories or research cards.")] = None,
    topic: Annotated[
        str | None, typer.Option(help="The topic or theme contains this (case ignored).")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Only outputs with this tag.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    group: Annotated[int | None, typer.Option(help="Only outputs of this group id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="The newest N outputs.")] = 50,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List outputs, oldest first (the newest LIMIT of them); `outputs show ID` for one."""
    if ctx.invoked_subcommand is not None:
        return
    from flows.library import list_outputs as query
    from flows.library import output_to_dict

    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    with library(db):
        items = query(
            kind=kind.value if kind else None,
            topic=topic,
            tag=tag,
            since=start,
            until=end,
            group_id=group,
            limit=limit,
            db=db,
        )
    if as_json:
        emit_json([output_to_dict(item) for item in items])
        return
    if not items:
        echo("no outputs")
        return
    t = table("id", "kind", "created", "title", "topic", "tags", "model", "tokens", "cost", "group")
    for item in items:
        add_row(
            t,
            item.id,
            item.kind,
            when(item.created_at),
            short(item.title, 40),
            short(item.topic, 30),
            short(", ".join(item.tags), 30),
            item.model,
            tokens(item),
            money(item.cost_usd),
            item.group_id,
        )
    print_table(t)


@outputs_app.command("show")
def show_output(
    output_id: Annotated[int, typer.Argument(help="The output id.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """One output with everything recorded about it, its sidecar file and, for a card,
    its key concepts.

    JSON: the output's fields plus "sidecar" (its path, or null when there is none).
    """
    from flows.library import get_output, output_to_dict, sidecar_path

    with library(db):
        item = get_output(output_id, db=db)
    sidecar = sidecar_path(item.path)
    sidecar_shown = str(sidecar) if sidecar.is_file() else None
    if as_json:
        emit_json({**output_to_dict(item), "sidecar": sidecar_shown})
        return
    echo(f"output {item.id}  {item.kind}  {item.title}")
    rows: list[tuple[str, Any]] = [
        ("path", item.path),
        ("sidecar", sidecar_shown),
        ("topic", item.topic),
        ("tags", ", ".join(item.tags) or None),
        ("structure", _structure(item)),
        ("cards used", ", ".join(map(str, item.cards_used)) or None),
        ("model", item.model),
        ("tokens in", item.input_tokens),
        ("tokens out", item.output_tokens),
        ("duration", f"{item.duration_seconds:.2f}s" if item.duration_seconds else None),
        ("cost", money(item.cost_usd) if item.cost_usd is not None else "unknown"),
        ("nearest", _nearest(item)),
        ("job", item.job_id),
        ("group", item.group_id),
        ("flow run", item.flow_run_id),
        ("created", when(item.created_at)),
    ]
    if not Path(item.path).exists():
        rows[0] = ("path", f"{item.path} (missing)")
    fields(rows)
    if item.key_concepts:
        echo("key concepts" if item.kind == "research" else "concepts")
        for concept in item.key_concepts:
            echo(f"  - {concept}")


def _structure(item: OutputItem) -> str | None:
    if item.structure is None:
        return None
    return f"{item.structure} ({item.structure_kind})" if item.structure_kind else item.structure


def _nearest(item: OutputItem) -> str | None:
    if item.nearest_id is None:
        return None
    similarity = f", similarity {item.similarity:.3f}" if item.similarity is not None else ""
    return f"output {item.nearest_id}{similarity}"
