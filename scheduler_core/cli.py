"""The `llmsched` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from scheduler_core.errors import SchedulerError
from scheduler_core.service import SchedulerService
from scheduler_core.settings import SchedulerSettings

app = typer.Typer(
    help="A job scheduler for LLM data-generation pipelines on Prefect.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="LLMSCHED_DATABASE_URL",
        help="Database URL (default: a SQLite file in LLMSCHED_HOME).",
    ),
]


def _open(db: str | None) -> SchedulerService:
    try:
        return SchedulerService.open(db)
    except SchedulerError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None


@app.command()
def demo(
    db: DbOption = None,
    out: Annotated[Path | None, typer.Option(help="Where artifacts are written.")] = None,
) -> None:
    """Run a small story/research group offline through the worker and Prefect."""
    from flows.demo import run_demo

    home = SchedulerSettings().resolved_home()
    svc = _open(db)
    with svc:
        code = run_demo(svc, out_dir=out or home / "artifacts", console=console)
    raise typer.Exit(code)


@app.command()
def worker(
    db: DbOption = None,
    slots: Annotated[int, typer.Option(min=1, help="Jobs run at once (Ollama: still one).")] = 1,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to let running jobs finish on SIGTERM/SIGINT.")
    ] = 300.0,
) -> None:
    """Run the scheduler worker: dispatch queued jobs as Prefect flow runs until stopped."""
    from flows.worker import run_worker

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with _open(db) as svc:
        code = run_worker(svc, slots=slots, drain_timeout=drain_timeout)
    raise typer.Exit(code)


@app.command("jobs")
def list_jobs(
    db: DbOption = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
) -> None:
    """List jobs as a table."""
    with _open(db) as svc:
        try:
            jobs = svc.list_jobs(status, limit=limit)
        except SchedulerError as exc:
            err.print(f"error: {exc}")
            raise typer.Exit(2) from None
        table = Table("id", "type", "status", "priority", "attempt", "group", "resource")
        for j in jobs:
            table.add_row(
                str(j.job_id),
                j.job_type,
                j.status.value,
                str(j.priority),
                str(j.attempt),
                str(j.group_id or ""),
                j.resource,
            )
        console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
