"""Group commands: group submit, group show, group cancel."""

from __future__ import annotations

import os
import stat
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
JOB_KEYS = {"job_type", "params", "priority", "max_retries", "name"}
"""`name`: a label a later member's params use as {"$outputs": name}, the list of paths
this member's completed run returned (scheduler_core/references.py)."""
MAX_FILE_BYTES = 16 * 1024 * 1024
"""A group file's size limit (16 MiB): room for 50,000 jobs with modest params."""
MAX_FILE_DEPTH = 36
"""The file's structure (3 levels) plus params nested at most 32 levels."""
MAX_FILE_VALUES = 2_000_000
"""Values in the parsed document, counted as YAML aliases expand: a small file whose
aliases expand to billions of values is refused before anything walks it."""


def read_text_file(path: Path, *, limit: int, bad: Any) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes. A FIFO, a device
    (/dev/zero) or a directory is refused from its metadata: the file is opened
    non-blocking and checked again, so nothing waits on a writer or reads forever."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise bad(_not_regular(os.stat(path).st_mode))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise bad(f"cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced since the first look
            raise bad(_not_regular(info.st_mode))
        if info.st_size > limit:
            raise bad(f"is {info.st_size} bytes; the limit is {limit} bytes (16 MiB)")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise bad(f"is more than {limit} bytes; the limit is {limit} bytes (16 MiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("not a text file (expected YAML or JSON in UTF-8)") from None


def _not_regular(mode: int) -> str:
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    return f"is {kind}, not a regular file: pass the path of a YAML or JSON file"


def _check_shape(data: Any, bad: Any) -> None:
    """Refuse documents nested deeper than MAX_FILE_DEPTH or holding more than
    MAX_FILE_VALUES values (validation.nested: no document can exhaust the stack)."""
    from scheduler_core.validation import nested

    for seen, (_, value, depth) in enumerate(nested(data), start=1):
        if seen > MAX_FILE_VALUES:
            raise bad(
                f"holds more than {MAX_FILE_VALUES} values (YAML aliases count each time "
                "they are used); write smaller groups"
            )
        if depth > MAX_FILE_DEPTH and isinstance(value, Mapping | list | tuple):
            raise bad(
                f"is nested more than {MAX_FILE_DEPTH} levels deep; params may nest at "
                "most 32 levels: flatten them"
            )


def load_group_file(path: Path) -> dict[str, Any]:
    """Read a group file (YAML or JSON); any problem is a CLIError naming the file."""
    from scheduler_core.validation import MAX_GROUP_JOBS

    def bad(problem: str) -> CLIError:
        return CLIError(f"group file {str(path)!r}: {problem}")

    text = read_text_file(path, limit=MAX_FILE_BYTES, bad=bad)
    data = _parse(text, path, bad)
    _check_shape(data, bad)
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
    if len(jobs) > MAX_GROUP_JOBS:
        raise bad(f"has {len(jobs)} jobs; a group may have at most {MAX_GROUP_JOBS}: split it")
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

    deep = "is nested too deeply to parse; params may nest at most 32 levels: flatten them"
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except RecursionError:
            raise bad(deep) from None
        except ValueError as exc:
            raise bad(f"not valid JSON: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise bad(deep) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise bad(f"not valid YAML or JSON{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise bad(f"not valid YAML or JSON: {one_line(str(exc))}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value YAML cannot construct
        raise bad(f"not valid YAML or JSON: {one_line(str(exc))}") from None


def check_jobs(svc: SchedulerService, path: Path, jobs: list[dict[str, Any]]) -> None:
    """Each member's job type is known; its params are checked once, by the service."""
    from scheduler_core.validation import shown

    known = svc.registry.names()
    for index, job in enumerate(jobs):
        if job["job_type"] not in known:
            raise CLIError(
                f"group file {str(path)!r}: jobs[{index}]: unknown job type "
                f"{shown(job['job_type'])}; known: {', '.join(known)}"
            )


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
    priority: 0}, ...]}. A member named `name: card` passes its outputs to a later
    member's params as {"$outputs": card}. JSON: {"group": {...}, "jobs": [{...}, ...]}.
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
            problem = str(exc)
            if (member := getattr(exc, "member", None)) is not None:  # validation.member_error
                problem = f"jobs[{member}]: {getattr(exc, 'problem', exc)}"
            raise CLIError(f"group file {str(file)!r}: {problem}") from None
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
