"""The offline demo: a small story/research group through the real worker and Prefect."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect.settings import PREFECT_API_URL, PREFECT_HOME
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.guard import ensure_ollama_limit
from flows.pipelines import install_pipelines
from scheduler_core.service import SchedulerService
from scheduler_core.statuses import JobStatus

_SUBJECTS = ("keeper", "baker", "pilot", "gardener", "violinist", "cartographer")
_SUBJECTS += ("ferryman", "clockmaker", "beekeeper", "astronomer", "weaver", "diver")
_PLACES = ("lighthouse", "desert", "harbour", "orchard", "observatory", "glacier")
_PLACES += ("market", "monastery", "canyon", "island", "library", "vineyard")


def sample_theme(k: int) -> str:
    """The k-th of 144 story themes that share few words, for trying the pipelines at
    volume: stories on near-identical themes (`story 1`, `story 2`) come out alike enough
    for the novelty check to rewrite them as repeats (flows/novelty); with the offline
    model, stories on any 40 of these stay below half its threshold."""
    return f"the {_SUBJECTS[k % 12]} of the {_PLACES[(k * 5 + k // 12) % 12]}"


def demo_jobs(out_dir: Path) -> list[dict[str, Any]]:
    """A research card, then two stories that draw on it (`{"$outputs": "tides"}`): the
    first in a structure the pipeline picks, the second checked against its own."""
    out = str(out_dir)
    return [
        {
            "job_type": "research",
            "name": "tides",
            "params": {"topic": "tidal energy", "tags": ["energy", "ocean"], "output_dir": out},
        },
        {
            "job_type": "story",
            "params": {
                "theme": "a lighthouse keeper's last night",
                "genre": "drama",
                "length": 300,
                "cards": {"$outputs": "tides"},
                "output_dir": out,
            },
        },
        {
            "job_type": "story",
            "params": {
                "theme": "a robot learns to garden",
                "genre": "comedy",
                "length": 300,
                "structure": "voyage-and-return",
                "pov": "first",
                "cards": {"$outputs": "tides"},
                "post_check": "warn",
                "output_dir": out,
            },
        },
    ]


def run_demo(svc: SchedulerService, *, out_dir: Path, console: Console) -> int:
    """Queue the demo group, run it with the background worker; 0 if every job completed."""
    executor = install_pipelines(svc)
    console.print("connecting to Prefect (a temporary local server starts if none is set)...")
    executor.run(ensure_ollama_limit())
    group, members = svc.create_job_group(jobs=demo_jobs(out_dir), name="demo")
    console.print(f"queued job group {group.group_id}: {len(members)} jobs, offline models")
    started = time.monotonic()
    svc.start(concurrency=1)
    try:
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("running", total=len(members))
            while not svc.get_job_group(group.group_id).status.is_terminal:
                jobs = [svc.get_job(m.job_id or 0) for m in members]
                running = [j for j in jobs if j.status == JobStatus.RUNNING]
                label = f"running {running[0].job_type} job {running[0].job_id}" if running else ""
                bar.update(
                    task,
                    completed=sum(j.status.is_terminal for j in jobs),
                    description=label or "waiting",
                )
                seen = svc.signal.version
                svc.signal.wait(seen, 0.25)
    finally:
        svc.stop(timeout=60)
    return _report(svc, group.group_id, members, out_dir, console, time.monotonic() - started)


def _report(
    svc: SchedulerService,
    group_id: int | None,
    members: list[Any],
    out_dir: Path,
    console: Console,
    elapsed: float,
) -> int:
    table = Table("job", "type", "status", "flow run", "artifacts", "log")
    ok = True
    for member in members:
        job = svc.get_job(member.job_id)
        run = svc.get_job_run_for_job(member.job_id)
        ok &= job.status == JobStatus.COMPLETED
        table.add_row(
            str(job.job_id),
            job.job_type,
            job.status.value,
            (run.flow_run_id or "")[:8] if run else "",
            "\n".join(Path(a).name for a in run.artifacts) if run else "",
            Path(run.log_path).name if run and run.log_path else "",
        )
    console.print(table)
    group = svc.get_job_group(group_id or 0)
    console.print(f"job group {group_id}: [bold]{group.status.value}[/bold] in {elapsed:.1f}s")
    console.print(f"artifacts: {out_dir} (each with its .meta.json sidecar)")
    console.print("library:   `llmsched outputs` lists them, `llmsched usage` sums their tokens")
    console.print(f"run logs:  {svc.settings.resolved_log_dir()}")
    api = PREFECT_API_URL.value()
    if api:
        ui = api.removesuffix("/api")
        console.print(f"Prefect UI: {ui}/runs (filter by tag 'llmsched' or 'group:{group_id}')")
    else:
        console.print(
            f"the runs are stored in Prefect's database under {PREFECT_HOME.value()}; to browse "
            "them: `prefect server start`, then open http://127.0.0.1:4200/runs "
            f"(filter by tag 'group:{group_id}')"
        )
    return 0 if ok else 1
