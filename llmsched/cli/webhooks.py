"""Webhook commands: add, list, remove, enable, disable, deliveries, redeliver."""

from __future__ import annotations

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
        str | None, typer.Option(help="Signing secret (default: a generated one).")
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
    """Register an endpoint; prints its signing secret (this once only)."""
    from scheduler_core.representation import endpoint_to_dict
    from scheduler_core.webhooks import add_webhook_endpoint

    with service(db) as svc:
        endpoint = add_webhook_endpoint(svc, url, secret=secret, events=event or None)
    if as_json:
        emit_json(endpoint_to_dict(endpoint, with_secret=True))
        return
    events = ", ".join(endpoint.events) or "all events"
    echo(f"added webhook endpoint {endpoint.endpoint_id}: {endpoint.url} ({events})")
    echo(f"secret: {endpoint.secret}")
    echo("(the secret is not shown again: store it with the receiver now)")


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
