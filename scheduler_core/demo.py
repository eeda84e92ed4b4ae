"""The offline demo: a small story/research group through the real worker loop."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from scheduler_core.executor import ExecutionContext
from scheduler_core.service import SchedulerService
from scheduler_core.statuses import JobStatus

DEMO_JOBS: list[dict[str, Any]] = [
    {"job_type": "story", "params": {"theme": "a lighthouse keeper's night", "genre": "drama"}},
    {"job_type": "research", "params": {"topic": "tidal energy", "tags": ["energy", "ocean"]}},
    {"job_type": "story", "params": {"theme": "a robot learns to garden", "genre": "comedy"}},
]


def _writer(out_dir: Path, kind: str) -> Any:
    def handler(params: dict[str, Any], ctx: ExecutionContext) -> list[str]:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{kind}-{ctx.job.job_id}.{'md' if kind == 'story' else 'json'}"
        if kind == "story":
            path.write_text(f"# {params['theme'].capitalize()}\n\nA {params['genre']} story.\n")
        else:
            card = {"topic": params["topic"], "tags": params["tags"], "summary": "offline card"}
            path.write_text(json.dumps(card, indent=2))
        time.sleep(0.3)  # stands in for the model call, so progress is visible
        return [str(path)]

    return handler


def run_demo(svc: SchedulerService, *, out_dir: Path, console: Console | None = None) -> int:
    """Queue a demo group, run it with the background worker, show progress; 0 if all done."""
    console = console or Console()
    svc.register("story", _writer(out_dir, "story"), resource="local")
    svc.register("research", _writer(out_dir, "research"), resource="local")
    group, members = svc.create_job_group(jobs=DEMO_JOBS, name="demo")
    console.print(f"queued group {group.group_id} with {len(members)} jobs")
    svc.start(concurrency=1)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), console=console) as bar:
            task = bar.add_task("running", total=len(members))
            while not svc.get_job_group(group.group_id).status.is_terminal:
                done = sum(svc.get_job(m.job_id).status.is_terminal for m in members)
                bar.update(task, completed=done)
                svc.signal.wait(svc.signal.version, 0.2)
            bar.update(task, completed=len(members))
    finally:
        svc.stop(timeout=30)
    table = Table("job", "type", "status", "artifacts")
    for m in members:
        run = svc.get_job_run_for_job(m.job_id or 0)
        job = svc.get_job(m.job_id or 0)
        artifacts = ", ".join(run.artifacts) if run else ""
        table.add_row(str(m.job_id), m.job_type, job.status.value, artifacts)
    console.print(table)
    final = svc.get_job_group(group.group_id)
    console.print(f"group {group.group_id}: {final.status.value}; artifacts in {out_dir}")
    ok = all(svc.get_job(m.job_id or 0).status == JobStatus.COMPLETED for m in members)
    return 0 if ok else 1
