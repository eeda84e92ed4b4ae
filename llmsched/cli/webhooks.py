"""Webhook commands: add, list, remove, enable, disable, deliveries, redeliver."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from llmsched.cli._app import app
from llmsched.cli._common import (
    CLIError,
    DbOption,
    JsonOption,
    add_row,
    echo,
    emit_json,
    print_table,
    service,
    short,
    table,
    when,
)

webhook_app = typer.Typer(
    name="webhook",
    help="Webhook endpoints that receive signed run and group events (docs/webhooks.md).",
    no_args_is_help=True,
)
app.add_typer(webhook_app, rich_help_panel="Webhooks")


@webhook_app.command("add")
def webhook_add(
    url: Annotated[str, typer.Argument(help="http:// or https:// URL of the receiver.")],
    secret: Annotated[
        str | None,
        typer.Option(
            help="Signing secret; '-' reads it from a prompt (or one line of standard input). "
            "A value given here shows in the process list and shell history: prefer "
            "--secret-file, --secret-env or '-'. Default: a generated one.",
        ),
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file", metavar="PATH", help="Read the signing secret from this file."
        ),
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option(
            "--secret-env",
            metavar="NAME",
            help="Read the signing secret from this environment variable.",
        ),
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            help="Only this event or pattern (repeatable), e.g. job.run.failed, job.group.*; "
            "default: every event.",
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register an endpoint; prints a generated signing secret (this once only)."""
    from scheduler_core.representation import endpoint_to_dict
    from scheduler_core.webhooks import add_webhook_endpoint
    from scheduler_core.webhooks.api import check_secret
    from scheduler_core.webhooks.targets import check_url

    given = _read_secret(secret, secret_file, secret_env)
    # Checked before the database is opened: refused input writes nothing at all.
    check_url(url)
    if given is not None:
        check_secret(given)
    with service(db) as svc:
        endpoint = add_webhook_endpoint(svc, url, secret=given, events=event or None)
    generated = given is None  # a secret the user gave is never echoed back
    if as_json:
        emit_json(endpoint_to_dict(endpoint, with_secret=generated))
        return
    events = ", ".join(endpoint.events) or "all events"
    echo(f"added webhook endpoint {endpoint.endpoint_id}: {endpoint.url} ({events})")
    if generated:
        echo(f"secret: {endpoint.secret}")
        echo("(the secret is not shown again: store it with the receiver now)")


def _read_secret(value: str | None, path: Path | None, env: str | None) -> str | None:
    """The secret from at most one source; None to have one generated."""
    given = [
        n
        for n, v in (("--secret", value), ("--secret-file", path), ("--secret-env", env))
        if v is not None
    ]
    if len(given) > 1:
        raise CLIError(f"give the secret one way only, not {' and '.join(given)}")
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise CLIError(f"cannot read --secret-file {str(path)!r}: {reason}") from None
        return _one_line(text, f"--secret-file {str(path)!r}")
    if env is not None:
        found = os.environ.get(env)
        if not found:
            raise CLIError(
                f"--secret-env {env!r}: the environment variable is not set or empty; "
                f"export {env} with the secret, or use --secret-file"
            )
        return found
    if value == "-":
        if sys.stdin.isatty():
            return getpass.getpass("webhook secret: ")
        return _one_line(sys.stdin.readline(), "standard input (--secret -)")
    return value


def _one_line(text: str, source: str) -> str:
    """`text` without its one trailing newline; empty text names the source."""
    line = text[:-1] if text.endswith("\n") else text
    line = line[:-1] if line.endswith("\r") else line
    if not line:
        raise CLIError(f"no secret in {source}: it is empty")
    return line


@webhook_app.command("list")
def webhook_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List endpoints (without their secrets)."""
    from scheduler_core.representation import endpoint_to_dict
    from scheduler_core.webhooks import list_webhook_endpoints

    with service(db) as svc:
        endpoints = list_webhook_endpoints(svc)
    if as_json:
        emit_json([endpoint_to_dict(e) for e in endpoints])
        return
    if not endpoints:
        echo("no webhook endpoints")
        return
    t = table("id", "url", "events", "enabled", "created")
    for e in endpoints:
        add_row(
            t,
            e.endpoint_id,
            e.url,
            ", ".join(e.events) or "all",
            "yes" if e.enabled else "no",
            when(e.created_at),
        )
    print_table(t)


@webhook_app.command("remove")
def webhook_remove(
    endpoint_id: Annotated[int, typer.Argument(metavar="ID", help="The endpoint id.")],
    db: DbOption = None,
) -> None:
    """Delete an endpoint and its deliveries (pending ones are dropped)."""
    from scheduler_core.webhooks import remove_webhook_endpoint

    with service(db) as svc:
        remove_webhook_endpoint(svc, endpoint_id)
    echo(f"removed webhook endpoint {endpoint_id}")


def _set_enabled(endpoint_id: int, enabled: bool, db: str | None) -> None:
    from scheduler_core.webhooks import set_webhook_endpoint_enabled

    with service(db) as svc:
        set_webhook_endpoint_enabled(svc, endpoint_id, enabled)
    echo(f"{'enabled' if enabled else 'disabled'} webhook endpoint {endpoint_id}")


@webhook_app.command("enable")
def webhook_enable(
    endpoint_id: Annotated[int, typer.Argument(metavar="ID", help="The endpoint id.")],
    db: DbOption = None,
) -> None:
    """Send events to an endpoint again (its held deliveries go out)."""
    _set_enabled(endpoint_id, True, db)


@webhook_app.command("disable")
def webhook_disable(
    endpoint_id: Annotated[int, typer.Argument(metavar="ID", help="The endpoint id.")],
    db: DbOption = None,
) -> None:
    """Stop sending to an endpoint; its pending deliveries wait until it is enabled."""
    _set_enabled(endpoint_id, False, db)


@webhook_app.command("deliveries")
def webhook_deliveries(
    status: Annotated[
        str | None, typer.Option(help="Only PENDING, DELIVERED or FAILED deliveries.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (oldest first).")] = 100,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List deliveries (one per event and endpoint) with their attempts and last error."""
    from scheduler_core.representation import delivery_to_dict
    from scheduler_core.webhooks import list_webhook_deliveries

    with service(db) as svc:
        items = list_webhook_deliveries(svc, status, limit=limit)
    if as_json:
        emit_json([delivery_to_dict(d) for d in items])
        return
    if not items:
        echo("no deliveries")
        return
    t = table("id", "event", "key", "endpoint", "status", "attempts", "last", "updated")
    for d in items:
        last = d.last_error or (str(d.last_status_code) if d.last_status_code else None)
        add_row(
            t,
            d.delivery_id,
            d.event_type,
            d.idempotency_key,
            d.endpoint_id,
            str(d.status),
            d.attempts,
            short(last, 40),
            when(d.updated_at),
        )
    print_table(t)


@webhook_app.command("redeliver")
def webhook_redeliver(
    delivery_id: Annotated[
        int | None, typer.Argument(metavar="[DELIVERY_ID]", help="The delivery to send again.")
    ] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Send every FAILED delivery again.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a delivery again from its first attempt (a running worker sends it).

    JSON: the delivery, or {"reset": N} with --all-failed.
    """
    from scheduler_core.representation import delivery_to_dict
    from scheduler_core.webhooks import redeliver, redeliver_failed

    if (delivery_id is None) == (not all_failed):
        raise CLIError("give either a DELIVERY_ID or --all-failed (one of them)")
    with service(db) as svc:
        if all_failed:
            count = redeliver_failed(svc)
            if as_json:
                emit_json({"reset": count})
            else:
                echo(f"{count} failed deliveries queued again")
            return
        assert delivery_id is not None
        view = redeliver(svc, delivery_id)
    if as_json:
        emit_json(delivery_to_dict(view))
        return
    echo(f"delivery {view.delivery_id} queued again ({view.event_type} to {view.url})")
