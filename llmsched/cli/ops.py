"""Operating commands: status, recover, worker, setup, demo."""

from __future__ import annotations

import logging
import os
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
    print_table,
    quiet_prefect,
    service,
    table,
    temporary_server_defaults,
    warn,
)

if TYPE_CHECKING:
    from scheduler_core.service import SchedulerService

PANEL = "Operating"


def status_report(svc: SchedulerService, *, all_workers: bool) -> dict[str, Any]:
    from datetime import UTC, datetime

    from scheduler_core.liveness import worker_is_alive
    from scheduler_core.representation import (
        reservation_to_dict,
        run_to_dict,
        worker_to_dict,
    )

    running = svc.list_jobs("RUNNING")
    runs = []
    for job in running:
        run = svc.get_job_run_for_job(job.job_id or 0)
        if run is not None:
            runs.append(run_to_dict(job, run))
    queued = len(svc.list_jobs("QUEUED"))
    limits = svc.resource_limits()
    counts: dict[str, int] = {}
    for job in running:  # by the slot each occupies: one per Ollama server
        slot = job.slot or job.resource
        counts[slot] = counts.get(slot, 0) + 1
    resources = [
        {"resource": name, "limit": limits.get(name), "running": counts.get(name, 0)}
        for name in sorted(set(limits) | set(counts))
    ]
    now = datetime.now(UTC)
    timeout = svc.settings.heartbeat_timeout
    workers = [
        worker_to_dict(w, alive=worker_is_alive(w, now=now, heartbeat_timeout=timeout), now=now)
        for w in svc.list_workers()
        if w.worker_id != svc.worker_id
    ]
    if not all_workers:
        workers = [w for w in workers if w["status"] == "RUNNING"]
    return {
        "running": runs,
        "queued": queued,
        "reservations": [reservation_to_dict(r) for r in svc.active_reservations()],
        "resources": resources,
        "workers": workers,
    }


@app.command(rich_help_panel=PANEL)
def status(
    all_workers: Annotated[
        bool, typer.Option("--all-workers", help="Also list STOPPED and DEAD workers.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Running jobs, queued count, active reservations, resource slots and workers.

    JSON: {"running": [run...], "queued": N, "reservations": [...],
    "resources": [{"resource", "limit", "running"}], "workers": [{..., "alive"}]}
    """
    with service(db) as svc:
        report = status_report(svc, all_workers=all_workers)
    if as_json:
        emit_json(report)
        return
    echo(f"running: {len(report['running'])}   queued: {report['queued']}")
    if report["running"]:
        t = table("job", "run", "type", "slot", "attempt", "started", "flow run")
        for r in report["running"]:
            add_row(
                t,
                r["job_id"],
                r["run_id"],
                r["job_type"],
                r["slot"] or r["resource"],
                r["attempt"],
                r["started_at"],
                r["flow_run_id"],
            )
        print_table(t)
    echo()
    if report["reservations"]:
        echo("reservations (queue dispatch paused for a direct run):")
        t = table("id", "reserved by", "job", "expires")
        for r in report["reservations"]:
            add_row(t, r["reservation_id"], r["reserved_by"], r["job_id"], r["expires_at"])
        print_table(t)
    else:
        echo("reservations: none")
    echo()
    echo("resources:")
    t = table("resource", "running", "limit")
    for r in report["resources"]:
        add_row(t, r["resource"], r["running"], "unlimited" if r["limit"] is None else r["limit"])
    print_table(t)
    echo()
    if not report["workers"]:
        echo("workers: none running")
        return
    echo("workers:")
    t = table("worker", "slots", "status", "alive", "heartbeat", "age")
    for w in report["workers"]:
        add_row(
            t,
            w["worker_id"],
            w["slots"],
            w["status"],
            "yes" if w["alive"] else "NO",
            w["heartbeat_at"],
            f"{w['heartbeat_age_seconds']:.1f}s",
        )
    print_table(t)


@app.command(rich_help_panel=PANEL)
def recover(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Run crash recovery once: fail the RUNNING jobs of dead workers (retries apply).

    Live workers' jobs are never touched. Prefect flow runs of recovered jobs are
    marked Crashed and their Ollama leases released.
    JSON: {"running_jobs_recovered", "retries_created", "workers_marked_dead",
    "reservations_released", "recovered_job_ids", "warnings"}
    """
    import dataclasses

    from scheduler_core import Plugin

    class Collect(Plugin):
        def __init__(self) -> None:
            self.recovered: list[Any] = []

        def on_recovered(self, claim: Any, finish: Any) -> None:
            self.recovered.append((claim, finish))

    warnings: list[str] = []
    with service(db) as svc:
        collect = Collect()
        svc.add_plugin(collect)
        report = svc.recover()
        recovered = collect.recovered
        in_prefect = [
            (claim, finish)
            for claim, finish in recovered
            if finish.run.flow_run_id or svc.leases_of(claim.run.run_id or 0)
        ]
        if in_prefect:  # only then is Prefect needed (imported, contacted)
            from flows.executor import CrashCleanup, install_prefect
            from llmsched.cli._common import quiet_prefect

            quiet_prefect()
            cleanup = CrashCleanup(svc, install_prefect(svc))
            for claim, finish in in_prefect:
                try:
                    cleanup.on_recovered(claim, finish)
                except Exception as exc:
                    warnings.append(
                        f"job {claim.job.job_id}: Prefect clean-up failed "
                        f"({type(exc).__name__}: {exc}); its lease expires on its own"
                    )
    data = {**dataclasses.asdict(report), "warnings": warnings}
    if as_json:
        emit_json(data)
        return
    for line in warnings:
        warn(line)
    ids = ", ".join(map(str, report.recovered_job_ids)) or "none"
    echo(f"recovered jobs: {report.running_jobs_recovered} ({ids})")
    echo(f"retries created: {report.retries_created}")
    echo(f"workers marked dead: {report.workers_marked_dead}")
    echo(f"reservations released: {report.reservations_released}")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@app.command(rich_help_panel=PANEL)
def worker(
    db: DbOption = None,
    slots: Annotated[int, typer.Option(min=1, help="Jobs run at once (Ollama: still one).")] = 1,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to let running jobs finish on SIGTERM/SIGINT.")
    ] = 300.0,
    log_level: Annotated[
        str,
        typer.Option(
            envvar="LLMSCHED_LOG_LEVEL",
            show_envvar=True,
            help=f"The least severe `action=` lines shown: {', '.join(LOG_LEVELS)}.",
        ),
    ] = "INFO",
    log_file: Annotated[
        Path | None,
        typer.Option(
            envvar="LLMSCHED_LOG_FILE",
            show_envvar=True,
            help="Also append the lines to this file (created mode 0600).",
        ),
    ] = None,
) -> None:
    """Run the scheduler worker: dispatch queued jobs as Prefect flow runs until stopped."""
    level = log_level.upper()
    if level not in LOG_LEVELS:  # refused before the worker's imports (Prefect: seconds)
        raise CLIError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    from flows.worker import run_worker  # configures logging: before show_worker_logs

    show_worker_logs(getattr(logging, level), log_file)
    with service(db) as svc:
        code = run_worker(svc, slots=slots, drain_timeout=drain_timeout)
    raise typer.Exit(code)


@app.command(rich_help_panel=PANEL)
def setup() -> None:
    """Create the Prefect work pool `llmsched` and the pipelines' deployments on it (the
    worker does the same as it starts), so `prefect deploy` can target the pool."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from flows.pipelines import PIPELINES
    from flows.prefect_jobs import deploy_flows, pool_name

    if not PREFECT_API_URL.value():
        raise CLIError(
            "PREFECT_API_URL is not set: point it at your Prefect server, e.g. "
            "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
    quiet_prefect()

    async def deploy() -> list[str]:
        async with get_client() as client:
            return await deploy_flows(client, PIPELINES)

    for name in asyncio.run(deploy()):
        echo(f"deployment {name} on work pool {pool_name()}")


@app.command(rich_help_panel=PANEL)
def demo(
    db: DbOption = None,
    out: Annotated[Path | None, typer.Option(help="Where artifacts are written.")] = None,
) -> None:
    """Run a small story/research group offline through the worker and Prefect."""
    temporary_server_defaults()
    from rich.console import Console

    from flows.demo import run_demo
    from scheduler_core.settings import SchedulerSettings

    home = SchedulerSettings().resolved_home()
    with service(db) as svc:
        code = run_demo(svc, out_dir=out or home / "artifacts", console=Console())
    raise typer.Exit(code)


WORKER_LOGGERS = ("scheduler_core", "flows", "llmsched")


def show_worker_logs(level: int = logging.INFO, log_file: Path | None = None) -> None:
    """The worker's own `action=...` lines on stderr (and `log_file`) from `level` up.
    Not through the root logger: importing Prefect configures logging, after which
    `basicConfig` does nothing."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        try:
            fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CLIError(f"--log-file {str(log_file)!r}: {exc.strerror}") from None
        handlers.append(logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8")))
    for handler in handlers:
        handler.setFormatter(formatter)
    for name in WORKER_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for handler in handlers:
            logger.addHandler(handler)
        logger.propagate = False
