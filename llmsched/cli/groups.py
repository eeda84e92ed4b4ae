"""Group commands: group submit, group show, group cancel."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmsched.cli._app import app
from llmsched.cli._common import (
    CLIError,
    DbOption,
    JsonOption,
    KeyOption,
    add_row,
    echo,
    emit_json,
    fields,
    one_line,
    print_table,
    service,
    short,
    when,
)
from llmsched.cli._common import table as new_table

if TYPE_CHECKING:
    from scheduler_core.service import SchedulerService

group_app = typer.Typer(
    name="group",
    help="Job groups: members run one after another and stop on the first failure.",
    no_args_is_help=True,
)
app.add_typer(group_app, rich_help_panel="Groups")

FILE_KEYS = {"name", "jobs"}
JOB_KEYS = {"job_type", "params", "priority", "max_retries"}


def load_group_file(path: Path) -> dict[str, Any]:
    """Read a group file (YAML or JSON); any problem is a CLIError naming the file."""

    def bad(problem: str) -> CLIError:
        return CLIError(f"group file {str(path)!r}: {problem}")

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise bad("not a text file (expected YAML or JSON)") from None
    except OSError as exc:
        raise bad(f"cannot be read: {exc.strerror or exc}") from None
    data = _parse(text, path, bad)
    if not isinstance(data, Mapping):
        raise bad(
            "expected a mapping with 'jobs' (and optionally 'name'), "
            f"got {type(data).__name__ if data is not None else 'an empty document'}"
        )
    unknown = set(data) - FILE_KEYS
    if unknown:
        raise bad(f"unknown keys {sorted(map(str, unknown))}; allowed: {sorted(FILE_KEYS)}")
    name = data.get("name", None)
    if name is not None and not isinstance(name, str):
        raise bad(f"'name' must be a string, got {type(name).__name__}")
    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise bad("'jobs' must be a non-empty list of {job_type, params, priority?}")
    for index, job in enumerate(jobs):
        where = f"jobs[{index}]"
        if not isinstance(job, Mapping):
            raise bad(f"{where} must be a mapping with 'job_type' and 'params'")
        unknown = set(job) - JOB_KEYS
        if unknown:
            raise bad(
                f"{where} has unknown keys {sorted(map(str, unknown))}; allowed: {sorted(JOB_KEYS)}"
            )
        if not isinstance(job.get("job_type"), str) or not job["job_type"]:
            raise bad(f"{where} needs 'job_type' (a string such as story or research)")
        params = job.get("params")
        if params is not None and not isinstance(params, Mapping):
            raise bad(f"{where}.params must be a mapping, got {type(params).__name__}")
    return {"name": name, "jobs": [dict(j) for j in jobs]}


def _parse(text: str, path: Path, bad: Any) -> Any:
    import json

    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise bad(f"not valid JSON: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise bad(f"not valid YAML or JSON{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise bad(f"not valid YAML or JSON: {one_line(str(exc))}") from None


def check_jobs(svc: SchedulerService, path: Path, jobs: list[dict[str, Any]]) -> None:
    """Check each member against its pipeline, so an error names the member."""
    from scheduler_core.errors import SchedulerError

    known = svc.registry.names()
    for index, job in enumerate(jobs):
        where = f"group file {str(path)!r}: jobs[{index}]"
        if job["job_type"] not in known:
            raise CLIError(
                f"{where}: unknown job type {job['job_type']!r}; known: {', '.join(known)}"
            )
        validate = svc.registry.get(job["job_type"]).validate
        if validate is None:
            continue
        try:
            validate(dict(job.get("params") or {}))
        except SchedulerError as exc:
            raise CLIError(f"{where}: {exc}") from None
        except Exception as exc:
            raise CLIError(
                f"{where}: params for job type {job['job_type']!r} are invalid: {exc}"
            ) from None


@group_app.command("submit")
def group_submit(
    file: Annotated[Path, typer.Argument(help="A YAML or JSON file: {name, jobs: [...]}.")],
    name: Annotated[
        str | None, typer.Option(help="Group name (default: the file's name, else its stem).")
    ] = None,
    key: KeyOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a job group from a file.

    The file: {name: nightly, jobs: [{job_type: story, params: {theme: tides},
    priority: 0}, ...]}. JSON: {"group": {...}, "jobs": [{...}, ...]}.
    """
    from scheduler_core.errors import DatabaseUnavailableError, NotFoundError, SchedulerError
    from scheduler_core.representation import group_to_dict, job_to_dict

    spec = load_group_file(file)
    group_name = name if name is not None else (spec["name"] or file.stem)
    with service(db, pipelines=True) as svc:
        check_jobs(svc, file, spec["jobs"])
        known = svc.group_by_key(key) if key is not None else None
        try:
            group, members = svc.create_job_group(jobs=spec["jobs"], name=group_name, key=key)
        except (DatabaseUnavailableError, NotFoundError):
            raise
        except SchedulerError as exc:
            raise CLIError(f"group file {str(file)!r}: {exc}") from None
    if as_json:
        emit_json({"group": group_to_dict(group), "jobs": [job_to_dict(j) for j in members]})
        return
    ids = ", ".join(str(m.job_id) for m in members)
    if known is not None:
        echo(
            f"group {group.group_id} {group.name!r} was queued with key {key!r} before "
            f"({group.status.value}; jobs {ids}): nothing queued"
        )
        return
    echo(f"queued group {group.group_id} {group.name!r}: {len(members)} jobs ({ids})")


@group_app.command("show")
def group_show(
    group_id: Annotated[int, typer.Argument(help="The group id.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """A group and its members with their runs.

    JSON: {"group": {...}, "jobs": [{"job": {...}, "run": {...} | null}, ...]}
    """
    from llmsched.cli.jobs import job_and_run
    from scheduler_core.representation import group_to_dict

    with service(db) as svc:
        group = svc.get_job_group(group_id)
        members = [job_and_run(svc, j) for j in svc.list_jobs(group_id=group_id)]
    if as_json:
        emit_json({"group": group_to_dict(group), "jobs": members})
        return
    echo(f"group {group.group_id} {group.name!r}  {group.status.value}")
    fields(
        [
            ("members", group.size),
            ("origin", group.origin.value),
            ("cancel requested", "yes" if group.cancel_requested else "no"),
            ("created", when(group.created_at)),
            ("started", when(group.started_at)),
            ("finished", when(group.finished_at)),
        ]
    )
    t = new_table("#", "job", "type", "status", "attempt", "run", "error")
    for item in members:
        j, r = item["job"], item["run"]
        add_row(
            t,
            j["sequence"],
            j["job_id"],
            j["job_type"],
            j["status"],
            j["attempt"],
            r["run_id"] if r else None,
            short(r["error"]) if r else None,
        )
    print_table(t)


@group_app.command("cancel")
def group_cancel(
    group_id: Annotated[int, typer.Argument(help="The group id.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a group's queued members; a running member finishes, then the group ends."""
    from scheduler_core.representation import group_to_dict

    with service(db) as svc:
        before = svc.get_job_group(group_id)
        group = svc.cancel_job_group(group_id)
        members = svc.list_jobs(group_id=group_id)
    if as_json:
        emit_json(group_to_dict(group))
        return
    if before.status.is_terminal:
        echo(f"group {group_id} had already ended {before.status.value}; nothing to cancel")
        return
    running = [m.job_id for m in members if m.status.value == "RUNNING"]
    cancelled = sum(m.status.value == "CANCELLED" for m in members)
    line = f"group {group_id}: {cancelled} member(s) cancelled"
    if running:
        line += f"; job {running[0]} is running and is being stopped, then the group is CANCELLED"
    else:
        line += f"; group is {group.status.value}"
    echo(line)
