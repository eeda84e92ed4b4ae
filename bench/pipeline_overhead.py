"""Per-job cost of the real pipelines through the worker, against the same flow called bare.

Both sides run the story pipeline (5 tasks, offline model: the model costs next to
nothing, so the time is Prefect's and ours) against the bench's default-settings
Prefect server, alternating rounds. Ours: a job group of story jobs through the worker
loop (`install_pipelines`, `svc.start()`), timed from the group's creation to its end.
The bare side awaits `story_pipeline(...)` on an event loop of its own, as a user's
script would. A second row times `llmsched demo` (a subprocess against the same
server): its group's creation to its end, as recorded in the database, beside the
demo's three flows awaited bare one after the other.

Client-retried 503s (the server's database busy: each costs the client a back-off of
about two seconds) are counted by side and shown in the note; their stalls are in the
figures. A flow run created just after another flow ended meets the server's services
writing that flow's task runs and events: every bare flow is, ours only as a group's
runs are created (see prefect_sync.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.config import Context
from bench.measure import ROOT, Goal, Result, alternate, compare, wait_until
from flows.demo import demo_jobs, sample_theme
from flows.pipelines import PIPELINES, install_pipelines
from flows.story import story_pipeline
from scheduler_core import JobStatus, SchedulerService

STORY_TASKS = 5  # build-story-prompt, call-model, validate-story, save-story, publish-artifact
RETRIED_503 = "Received response with retryable status code 503"


class RetriedRequests(logging.Filter):
    """Counts the Prefect client's 503 retries; passes on only what its level let through.

    The client logs each retry at DEBUG on `prefect.client`, so the logger is lowered to
    DEBUG while counting; this filter then drops the records the old level would have.
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(RETRIED_503):
            self.count += 1
        return record.levelno >= self.level


@contextmanager
def counting_503s() -> Iterator[RetriedRequests]:
    logger = logging.getLogger("prefect.client")
    level = logger.level
    counter = RetriedRequests(logger.getEffectiveLevel())
    logger.addFilter(counter)
    logger.setLevel(logging.DEBUG)
    try:
        yield counter
    finally:
        logger.setLevel(level)
        logger.removeFilter(counter)


_serial = itertools.count()


def _story(out: Path) -> dict[str, Any]:
    """A story on a theme no earlier one of the run shared many words with: near-identical
    themes (`story 1`, `story 2`) would be rewritten as repeats (flows/novelty), and the
    row would time the rewrites."""
    return {"theme": sample_theme(next(_serial)), "length": 120, "output_dir": str(out)}


def _run_group(svc: SchedulerService, jobs: list[dict[str, Any]]) -> float:
    """Seconds from the group's creation to its end; every member must complete."""
    start = time.perf_counter()
    group, members = svc.create_job_group(jobs, name="bench")
    group_id = group.group_id or 0
    wait_until(
        lambda: svc.get_job_group(group_id).status.is_terminal, timeout=300, what="the group"
    )
    seconds = time.perf_counter() - start
    failed = [m.job_id for m in members if svc.get_job(m.job_id or 0).status != JobStatus.COMPLETED]
    if failed:
        raise RuntimeError(f"jobs {failed} of the bench group did not complete")
    return seconds


@contextmanager
def output_roots(root: Path) -> Iterator[None]:
    """Allow outputs under the bench's own directory, as an operator would
    (LLMSCHED_OUTPUT_ROOTS), for the flows this process runs."""
    previous = os.environ.get("LLMSCHED_OUTPUT_ROOTS")
    os.environ["LLMSCHED_OUTPUT_ROOTS"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["LLMSCHED_OUTPUT_ROOTS"]
        else:
            os.environ["LLMSCHED_OUTPUT_ROOTS"] = previous


def run(ctx: Context) -> list[Result]:
    n = ctx.sizes.pipeline_jobs
    ctx.prefect.url()
    bare_loop = asyncio.new_event_loop()  # not the executor's: its clients are ours
    with (
        ctx.backend.database() as db,
        counting_503s() as retried,
        output_roots(db.home),
    ):
        out = db.home / "out"
        svc = db.open_service()
        install_pipelines(svc)
        svc.start(concurrency=1)

        async def bare_calls() -> None:
            for _ in range(n):
                await story_pipeline(**_story(out))

        refused = {"bare": 0, "ours": 0}  # client-retried 503s by side

        def bare() -> float:
            before = retried.count
            start = time.perf_counter()
            bare_loop.run_until_complete(bare_calls())
            seconds = time.perf_counter() - start
            refused["bare"] += retried.count - before
            return seconds * 1000 / n

        def ours() -> float:
            before = retried.count
            jobs = [{"job_type": "story", "params": _story(out)} for _ in range(n)]
            seconds = _run_group(svc, jobs)
            refused["ours"] += retried.count - before
            return seconds * 1000 / n

        demo_bare: list[float] = []

        def demo_flows_bare() -> float:
            async def calls() -> None:
                # A member's `{"$outputs": name}` is what the scheduler passes: the
                # named member's returned paths.
                outputs: dict[str, Any] = {}
                for job in demo_jobs(out):
                    params = {
                        key: outputs[value["$outputs"]] if isinstance(value, dict) else value
                        for key, value in job["params"].items()
                    }
                    result = await PIPELINES[job["job_type"]](**params)
                    if "name" in job:
                        outputs[job["name"]] = result

            start = time.perf_counter()
            bare_loop.run_until_complete(calls())
            return time.perf_counter() - start

        def demo() -> float:
            demo_bare.append(demo_flows_bare())
            return _demo_group_seconds(ctx, db.home)

        try:
            # Warm-up of both sides: connections, flow and deployment registration, clients.
            bare_loop.run_until_complete(story_pipeline(**_story(out)))
            _run_group(svc, [{"job_type": "story", "params": _story(out)}])
            plain, scheduled = alternate(ctx.rounds, [bare, ours])
            demo_seconds = alternate(ctx.rounds, [demo])[0]
        finally:
            svc.stop(timeout=60)
            bare_loop.close()
    per_task = [ms / 1000 / STORY_TASKS for ms in scheduled]
    no_503 = f"client-retried 503s: {refused['ours']} (bare flows: {refused['bare']})"
    return [
        compare(
            f"Story pipeline job through the worker ({n}-job group, 5 tasks, offline model), "
            "ms/job",
            ctx.backend.name,
            "ms",
            scheduled,
            plain,
            baseline_label="the same flow awaited bare, same server and process",
            goal=Goal("<= 1.2x", 1.2, at_least=False, on_ratio=True),
            note=no_503,
            details={"client_retried_503s": refused},
        ),
        compare(
            "Story pipeline job through the worker, s/task",
            ctx.backend.name,
            "s",
            per_task,
            goal=Goal("<= 0.2 s", 0.2, at_least=False),
            note=f"the job's wall time over its {STORY_TASKS} tasks; {no_503}",
        ),
        compare(
            "llmsched demo, group creation -> end (3 jobs), s",
            ctx.backend.name,
            "s",
            demo_seconds,
            demo_bare,
            baseline_label="the demo's 3 flows awaited bare one after another",
            note="`llmsched demo` as a subprocess against the bench's server; its "
            "group's created_at -> finished_at in the database",
        ),
    ]


def _demo_group_seconds(ctx: Context, home: Path) -> float:
    """`llmsched demo` on a fresh database; its group's time as the database records it."""
    with ctx.backend.database() as db:
        env = {**os.environ, "LLMSCHED_HOME": str(db.home)}
        done = subprocess.run(
            [sys.executable, "-m", "llmsched", "demo", "--db", db.url, "--out", str(home / "demo")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"llmsched demo exited {done.returncode}: {done.stdout[-2000:]}")
        svc = db.open_service()
        group = svc.get_job_group(1)  # the only group of this fresh database
        if group.finished_at is None:
            raise RuntimeError(f"the demo's group {group.group_id} has not ended")
        return (group.finished_at - group.created_at).total_seconds()
