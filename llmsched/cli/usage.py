"""The usage command: tokens and cost summed per model, UTC day and group."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from llmsched.cli._app import app
from llmsched.cli._common import (
    DbOption,
    JsonOption,
    add_row,
    echo,
    emit_json,
    print_table,
    table,
)
from llmsched.cli.outputs import PANEL, SinceOption, UntilOption, library, money, parse_when


class By(StrEnum):
    model = "model"
    day = "day"
    group = "group"


@app.command("usage", rich_help_panel=PANEL)
def usage(
    by: Annotated[
        list[By] | None,
        typer.Option(help="Sum per this key; repeat for several (default: model, day, group)."),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    group: Annotated[int | None, typer.Option(help="Only calls of this group id.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Model calls, tokens and cost summed per model, day (UTC) and group.

    JSON: {"by": [...], "rows": [row, ...], "total": row | null}; a row has model, day,
    group_id (null when not summed by), calls, input_tokens, output_tokens, cost_usd and
    unpriced_calls (hosted calls of unknown price, left out of cost_usd).
    """
    from flows.library import usage_summary

    keys = [b.value for b in dict.fromkeys(by)] if by else ["model", "day", "group"]
    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    with library(db):
        rows = usage_summary(keys, since=start, until=end, group_id=group, db=db)
        totals = usage_summary((), since=start, until=end, group_id=group, db=db)
    total = totals[0] if totals else None
    if as_json:
        emit_json(
            {
                "by": keys,
                "rows": [row.to_dict() for row in rows],
                "total": total.to_dict() if total else None,
            }
        )
        return
    if not rows or total is None:
        echo("no usage recorded")
        return
    t = table(*keys, "calls", "tokens in", "tokens out", "cost", "unpriced")
    for row in [*rows, total]:
        cells = {"model": row.model, "day": row.day, "group": row.group_id}
        if row is total:
            cells = {key: "total" if i == 0 else None for i, key in enumerate(keys)}
        add_row(
            t,
            *(cells[key] for key in keys),
            row.calls,
            row.input_tokens,
            row.output_tokens,
            money(row.cost_usd),
            row.unpriced_calls or None,
        )
    print_table(t)
