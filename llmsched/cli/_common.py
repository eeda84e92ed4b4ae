"""What every command shares: options, opening the service, params, output, exit codes.

Heavy modules (the service, SQLAlchemy, Prefect) are imported inside functions, so
`llmsched --help` and the start of every command stay fast.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from scheduler_core.service import SchedulerService

# Exit codes (docs/cli.md): every command ends with one of these.
EXIT_OK = 0
EXIT_FAILED = 1  # the job/run (or the worker's drain, or the demo) failed
EXIT_REFUSED = 2  # bad input, unknown id, or a state that does not allow the operation
EXIT_UNAVAILABLE = 3  # the database (or the Prefect API a command needs) is unreachable
EXIT_TIMEOUT = 4  # `run --timeout`: no slot became free in time
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_INTERNAL = 70  # a bug: an unexpected exception (LLMSCHED_DEBUG=1 shows its traceback)


class CLIError(Exception):
    """A refusal of the command line itself (bad key=value, bad file): one line, a code."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="LLMSCHED_DATABASE_URL",
        show_envvar=True,
        help="Database URL, e.g. sqlite:///jobs.db or postgresql://user@host/db "
        "(default: a SQLite file jobs.db in LLMSCHED_HOME).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead.")
]
ParamsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[KEY=VALUE]...",
        help="Job params; a value is parsed as JSON when it parses (400, true, "
        '["a","b"]), else taken as a string.',
        show_default=False,
    ),
]
ParamsJsonOption = Annotated[
    str | None,
    typer.Option(
        "--params-json",
        metavar="JSON",
        help="Params as one JSON object; KEY=VALUE arguments override its keys.",
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="Idempotency key: if work was queued with this key before, it is shown and "
        "nothing is queued (a different request under the same key is refused).",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Sets params.model, e.g. openai/gpt-4o-mini, anthropic/..., ollama/qwen3:30b.",
    ),
]


# ---------------------------------------------------------------------- the service


@contextmanager
def service(db: str | None, *, pipelines: bool = False) -> Iterator[SchedulerService]:
    """Open the scheduler on `db` with the pipelines' resource caps declared; with
    `pipelines`, the story/research job types too."""
    from flows.resources import declare_resources
    from scheduler_core.service import SchedulerService

    svc = SchedulerService.open(db)
    try:
        declare_resources(svc)
        if pipelines:
            from flows.pipelines import install_pipelines

            quiet_prefect()
            install_pipelines(svc)
        yield svc
    finally:
        svc.close()


def check_job_type(svc: SchedulerService, job_type: str) -> None:
    from scheduler_core.validation import shown

    known = svc.registry.names()
    if job_type not in known:
        raise CLIError(f"unknown job type {shown(job_type)}; known: {', '.join(known)}")


def temporary_server_defaults() -> None:
    """Defaults for the temporary Prefect server a command starts when no server is set,
    applied before Prefect is imported (it reads its settings then); a user's own
    setting wins. Offline by design: no usage telemetry (an ERROR line on a machine
    without internet). Its first start creates Prefect's database (every migration):
    about 20 s here, Prefect's default wait for it, and more on a slower machine."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def quiet_prefect() -> None:
    """Keep Prefect's console logging (configured when it is imported) off the terminal.

    Only console handlers go: Prefect's API log handler and the per-run log files stay.
    """
    root = logging.getLogger()
    loggers = [root] + [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if name.startswith("prefect") and isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            if type(handler) is not logging.FileHandler and isinstance(
                handler, logging.StreamHandler
            ):
                logger.removeHandler(handler)
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())  # and no "last resort" printing either


# ---------------------------------------------------------------------- params

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
PARAMS_MAX_BYTES = 256 * 1024  # scheduler_core.validation.PARAMS_MAX_BYTES: read no more


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN/Infinity are not JSON values: keep them as strings


def _too_large(what: str, text: str) -> CLIError | None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size <= PARAMS_MAX_BYTES:
        return None
    return CLIError(
        f"{what} is {size} bytes; params are limited to {PARAMS_MAX_BYTES} bytes (256 KiB) "
        "of JSON: pass a path to a file instead of its content"
    )


def _nested(what: str) -> CLIError:
    return CLIError(
        f"{what} is nested too deeply to parse; params may nest at most 32 levels: flatten it"
    )


def parse_value(text: str, *, key: str = "value") -> Any:
    """JSON when it parses (numbers, true, null, lists, objects, "quoted"), else the text."""
    if (error := _too_large(f"the value of {key}", text)) is not None:
        raise error
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _nested(f"the value of {key}") from None
    except ValueError:
        return text


def build_params(
    pairs: Sequence[str] | None, params_json: str | None, model: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_json is not None:
        if (error := _too_large("--params-json", params_json)) is not None:
            raise error
        try:
            loaded = json.loads(params_json, parse_constant=_reject_constant)
        except RecursionError:
            raise _nested("--params-json") from None
        except ValueError as exc:
            raise CLIError(f"--params-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise CLIError(
                f'--params-json must be a JSON object such as \'{{"theme": "tides"}}\', '
                f"got {type(loaded).__name__}"
            )
        params.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not _KEY.match(key):
            raise CLIError(f"expected KEY=VALUE (e.g. theme=tides or length=400), got {pair!r}")
        params[key] = parse_value(value, key=key)
    if model is not None:
        params["model"] = model
    return params


# ---------------------------------------------------------------------- output

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 controls but tab and newline, DEL and C1 controls: what a terminal obeys (titles,
clearing the screen, moving the cursor) instead of printing."""
_JSON_CONTROL = re.compile(r"[\x7f-\x9f]")


def printable(text: object) -> str:
    """`text` safe for a terminal: every control character but newline and tab removed.

    Everything the CLI prints goes through it (echo, warn, fields, tables, the error
    line), because job params, run errors and names come from users and models."""
    return _CONTROL.sub("", str(text))


def emit_json(data: Any) -> None:
    """JSON escapes C0 controls itself; DEL and C1 are escaped too, so the output is the
    same data and still inert on a terminal."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    text = _JSON_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")


def echo(text: str = "") -> None:
    typer.echo(printable(text))


def warn(text: str) -> None:
    typer.echo(f"warning: {one_line(text)}", err=True)


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message into one printable line, credentials
    masked."""
    from scheduler_core.redaction import redact

    parts = [p.strip() for p in printable(text).splitlines() if p.strip()]
    line = "; ".join(parts) if parts else printable(text).strip()
    return redact(line.replace(":;", ":"))


def when(value: datetime | None) -> str:
    """A timestamp for tables: UTC, to the second."""
    if value is None:
        return "-"
    from datetime import UTC

    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def text_or_dash(value: Any) -> str:
    return "-" if value is None or value == "" else printable(value)


def short(text: str | None, limit: int = 60) -> str:
    if not text:
        return "-"
    line = one_line(text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def table(*columns: str) -> Table:
    from rich.table import Table

    t = Table(*columns, box=None, pad_edge=False, header_style="bold")
    for column in t.columns:
        column.overflow = "fold"
    return t


def add_row(t: Table, *cells: Any) -> None:
    from rich.text import Text

    t.add_row(*(Text(text_or_dash(c)) for c in cells))


def print_table(t: Table) -> None:
    from rich.console import Console

    Console(highlight=False, soft_wrap=False).print(t)


def fields(rows: Sequence[tuple[str, Any]], indent: int = 2) -> None:
    """Aligned `name  value` lines."""
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        echo(f"{' ' * indent}{name.ljust(width)}  {text_or_dash(value)}")
