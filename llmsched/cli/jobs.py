"""Job commands: submit, jobs, show, cancel, retry, run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmsched.cli._app import app
from llmsched.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    DbOption,
    JsonOption,
    KeyOption,
    ModelOption,
    ParamsArg,
    ParamsJsonOption,
    add_row,
    build_params,
    check_job_type,
    echo,
    emit_json,
    fields,
    print_table,
    quiet_prefect,
    service,
    short,
    table,
    temporary_server_defaults,
    when,
)

if TYPE_CHECKING:
    from scheduler_core import Job, JobRun
    from scheduler_core.service import SchedulerService

PANEL = "Jobs"


def compact(params: dict[str, Any], limit: int = 48) -> str:
    import json

    text = json.dumps(params, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_and_run(svc: SchedulerService, job: Job) -> dict[str, Any]:
    from scheduler_core.representation import job_to_dict, run_to_dict

    run = svc.get_job_run_for_job(job.job_id or 0)
    return {"job": job_to_dict(job), "run": run_to_dict(job, run) if run else None}


@app.command(rich_help_panel=PANEL)
def submit(
    job_type: Annotated[str, typer.Argument(help="The job type: story or research.")],
    params: ParamsArg = None,
    params_json: ParamsJsonOption = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    model: ModelOption = None,
    max_retries: Annotated[
        int | None,
        typer.Option(min=0, help="Automatic retries (default: LLMSCHED_MAX_RETRIES, 3)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Execution deadline in seconds (default: LLMSCHED_JOB_TIMEOUT_SECONDS, 3600)."
        ),
    ] = None,
    key: KeyOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a job; its params are checked against the pipeline's signature first.

    Example: llmsched submit story theme="a city of bridges" length=400 --priority 5
    """
    from scheduler_core.representation import job_to_dict

    values = build_params(params, params_json, model)
    with service(db, pipelines=True) as svc:
        check_job_type(svc, job_type)
        known = svc.job_by_key(key) if key is not None else None
        job = svc.enqueue_job(
            job_type,
            values,
            priority=priority,
            max_retries=max_retries,
            timeout_seconds=timeout,
            key=key,
        )
    if as_json:
        emit_json(job_to_dict(job))
        return
    if known is not None:
        echo(
            f"job {job.job_id} was queued with key {key!r} before ({job.status.value}): "
            "nothing queued"
        )
        return
    echo(
        f"queued job {job.job_id} ({job.job_type}, priority {job.priority}, "
        f"resource {job.resource})"
    )


@app.command("jobs", rich_help_panel=PANEL)
def list_jobs(
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: QUEUED, RUNNING, COMPLETED, FAILED, ..."),
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    group: Annotated[int | None, typer.Option(help="Only members of this group id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="The newest N jobs.")] = 50,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, oldest first (the newest LIMIT of them)."""
    from scheduler_core.representation import job_to_dict

    with service(db) as svc:
        if group is not None:
            svc.get_job_group(group)  # an unknown group is an error, not an empty list
        jobs = svc.list_jobs(status, job_type=job_type, group_id=group)[-limit:]
    if as_json:
        emit_json([job_to_dict(j) for j in jobs])
        return
    if not jobs:
        echo("no jobs")
        return
    t = table("id", "type", "status", "pri", "attempt", "group", "resource", "created", "params")
    for j in jobs:
        group_cell = f"{j.group_id}#{j.sequence}" if j.group_id is not None else None
        add_row(
            t,
            j.job_id,
            j.job_type,
            j.status.value,
            j.priority,
            j.attempt,
            group_cell,
            j.resource,
            when(j.created_at),
            compact(j.params),
        )
    print_table(t)


def print_run(run: JobRun, indent: int = 2) -> None:
    rows: list[tuple[str, Any]] = [
        ("status", run.status.value),
        ("started", when(run.started_at)),
        ("finished", when(run.finished_at)),
        (
            "duration",
            f"{run.duration_seconds:.2f}s" if run.duration_seconds is not None else None,
        ),
        ("exit code", run.exit_code),
        ("error", run.error),
        ("log", run.log_path),
        ("flow run", run.flow_run_id),
        ("worker", run.worker_id),
    ]
    rows.append(("artifacts", ", ".join(run.artifacts) if run.artifacts else None))
    fields(rows, indent=indent)


@app.command(rich_help_panel=PANEL)
def show(
    job_id: Annotated[int, typer.Argument(help="The job id.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """One job with its run and its whole retry chain.

    JSON: {"job": {...}, "run": {...} | null, "retry_chain": [{"job", "run"}, ...]}
    """
    with service(db) as svc:
        job = svc.get_job(job_id)
        shown = job_and_run(svc, job)
        run = svc.get_job_run_for_job(job_id)
        chain = [job_and_run(svc, j) for j in svc.get_retry_chain(job_id)]
    if as_json:
        emit_json({**shown, "retry_chain": chain})
        return
    import json

    echo(f"job {job.job_id}  {job.job_type}  {job.status.value}")
    fields(
        [
            ("params", json.dumps(job.params, ensure_ascii=False)),
            ("priority", job.priority),
            ("resource", job.resource),
            ("origin", job.origin.value),
            ("attempt", f"{job.attempt} (max retries {job.max_retries})"),
            ("retry of", job.retry_of),
            ("group", f"{job.group_id} member {job.sequence}" if job.group_id else None),
            ("created", when(job.created_at)),
            ("not before", when(job.not_before) if job.not_before else None),
        ]
    )
    if run is None:
        echo("run: none yet")
    else:
        echo(f"run {run.run_id}")
        print_run(run)
    if len(chain) > 1:
        echo(f"retry chain ({len(chain)} jobs)")
        t = table("job", "attempt", "retry of", "status", "run", "finished", "error")
        for item in chain:
            j, r = item["job"], item["run"]
            add_row(
                t,
                f"{j['job_id']}{' *' if j['job_id'] == job_id else ''}",
                j["attempt"],
                j["retry_of"],
                j["status"],
                r["run_id"] if r else None,
                (r["finished_at"] or "-") if r else None,
                short(r["error"]) if r else None,
            )
        print_table(t)


@app.command(rich_help_panel=PANEL)
def cancel(
    job_id: Annotated[int, typer.Argument(help="The job id.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a job: a queued one never runs; a running one is stopped by its worker
    within seconds (no retry). Its Prefect flow run ends Cancelled too."""
    from scheduler_core.representation import job_to_dict

    with service(db) as svc:
        job = svc.cancel_job(job_id)
    if as_json:
        emit_json(job_to_dict(job))
        return
    if job.status.value == "RUNNING":
        echo(f"cancelling job {job.job_id}: its worker stops it within seconds")
        return
    echo(f"cancelled job {job.job_id}")


@app.command(rich_help_panel=PANEL)
def priority(
    job_id: Annotated[int, typer.Argument(help="The job id.")],
    value: Annotated[int, typer.Argument(metavar="PRIORITY", help="Higher runs first.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a queued job's priority (its place in the queue); refused once it started."""
    from scheduler_core.representation import job_to_dict

    with service(db) as svc:
        job = svc.set_priority(job_id, value)
    if as_json:
        emit_json(job_to_dict(job))
        return
    echo(f"job {job.job_id} now has priority {job.priority}")


@app.command(rich_help_panel=PANEL)
def retry(
    run_id: Annotated[int, typer.Argument(help="The id of a FAILED or CANCELLED run.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Manually retry a FAILED or CANCELLED run: a new queued job linked to it; prints the
    new job id."""
    from scheduler_core.representation import job_to_dict

    with service(db) as svc:
        job = svc.retry_run(run_id)
    if as_json:
        emit_json(job_to_dict(job))
        return
    echo(f"queued job {job.job_id} (attempt {job.attempt}, retry of job {job.retry_of})")


@app.command(rich_help_panel=PANEL)
def run(
    job_type: Annotated[str, typer.Argument(help="The job type: story or research.")],
    params: ParamsArg = None,
    params_json: ParamsJsonOption = None,
    model: ModelOption = None,
    priority: Annotated[int, typer.Option(help="Recorded on the job.")] = 0,
    timeout: Annotated[
        float | None,
        typer.Option(min=0.001, help="Give up (exit 4) if no slot is free within S seconds."),
    ] = None,
    job_timeout: Annotated[
        float | None,
        typer.Option(
            help="The job's execution deadline in seconds (default: LLMSCHED_JOB_TIMEOUT_SECONDS)."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's logs on stderr.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a job now in this process, in the next free slot (never preempting running work).

    Waits for the end and prints the run; exit 0 if it COMPLETED, else 1.
    JSON: the run (as in webhooks).
    """
    temporary_server_defaults()
    from scheduler_core.representation import run_to_dict

    values = build_params(params, params_json, model)
    with service(db) as svc:
        from flows.guard import ensure_ollama_limit
        from flows.pipelines import install_pipelines

        if not verbose:
            quiet_prefect()
        executor = install_pipelines(svc)
        check_job_type(svc, job_type)
        job_spec = svc.registry.get(job_type)
        try:
            if job_spec.validate is not None:
                job_spec.validate(values)
            needs_ollama = job_spec.resource_for(values) == "ollama"
        except Exception:
            needs_ollama = False  # execute_direct refuses them before anything runs
        if needs_ollama:  # the worker's start-up check: the one Ollama slot in Prefect
            executor.run(ensure_ollama_limit())
        result = svc.execute_direct(
            job_type,
            values,
            reserved_by="llmsched run",
            priority=priority,
            timeout=timeout,
            timeout_seconds=job_timeout,
        )
        job = svc.get_job(result.job_id)
    code = EXIT_OK if result.status.value == "COMPLETED" else EXIT_FAILED
    if as_json:
        emit_json(run_to_dict(job, result))
    else:
        echo(f"job {job.job_id} run {result.run_id}: {result.status.value}")
        print_run(result)
    raise typer.Exit(code)
