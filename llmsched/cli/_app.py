"""The `llmsched` application object and its one error policy.

Every failure a user can cause ends the same way: ONE line `error: <message>` on
stderr and a documented exit code (docs/cli.md), never a traceback.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Any

import typer

try:  # typer >= 0.24 vendors click; older releases use the click package
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

from llmsched.cli._common import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    CLIError,
    one_line,
)


class LLMSchedApp(typer.Typer):
    """A Typer app that turns every error into one `error:` line and an exit code."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        command = typer.main.get_command(self)
        kwargs.setdefault("prog_name", "llmsched")
        _sigterm_interrupts()
        _report_interrupts(command)
        try:
            result = command.main(*args, standalone_mode=False, **kwargs)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except click_exc.NoArgsIsHelpError as exc:
            text = exc.ctx.get_help()  # rich help prints itself (to stdout)
            if text:
                typer.echo(text)
            code = EXIT_REFUSED
        except click_exc.UsageError as exc:
            code = _fail(_usage_message(exc), EXIT_REFUSED)
        except click_exc.ClickException as exc:
            code = _fail(exc.format_message(), exc.exit_code or EXIT_REFUSED)
        except typer.Abort:
            code = _fail("interrupted", EXIT_INTERRUPTED)
        except typer.TyperException as exc:
            code = _fail(exc.format_message(), EXIT_REFUSED)
        except KeyboardInterrupt:  # outside a command (while parsing)
            code = _fail("interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            # `llmsched jobs | head`: the reader left; say nothing more.
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            code = EXIT_FAILED
        except Exception as exc:
            code, message = classify(exc)
            if code == EXIT_INTERNAL and os.environ.get("LLMSCHED_DEBUG"):
                raise
            code = _fail(message, code)
        _flush()
        sys.exit(code)


class _Interrupted(click_exc.ClickException):
    """Ctrl-C or SIGTERM during a command: one `error: interrupted...` line, exit 130."""

    exit_code = EXIT_INTERRUPTED


def _report_interrupts(command: Any) -> None:
    """Typer turns a KeyboardInterrupt into a silent exit 130; catch it first, so the
    user reads `interrupted` and what became of the job (a JobInterrupted says)."""
    invoke = command.invoke

    def guarded(ctx: Any) -> Any:
        try:
            return invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted(f"interrupted: {exc}" if str(exc) else "interrupted") from None

    command.invoke = guarded


def _sigterm_interrupts() -> None:
    """SIGTERM stops a command as Ctrl-C does (its job handed back, exit 130), instead of
    killing it mid-write. `llmsched worker` installs its own draining handler."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def _flush() -> None:
    try:
        sys.stdout.flush()
    except OSError as exc:  # pragma: no cover - a closed pipe at exit
        if exc.errno != errno.EPIPE:
            raise


def _fail(message: str, code: int) -> int:
    typer.echo(f"error: {one_line(message)}", err=True)
    return code


def _usage_message(exc: click_exc.UsageError) -> str:
    message = one_line(exc.format_message())
    ctx = exc.ctx
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and message of an exception raised by a command."""
    from scheduler_core.errors import (
        DatabaseUnavailableError,
        ReservationTimeoutError,
        SchedulerError,
    )

    if isinstance(exc, CLIError):
        return exc.code, str(exc)
    if isinstance(exc, DatabaseUnavailableError):
        return EXIT_UNAVAILABLE, str(exc)
    if isinstance(exc, ReservationTimeoutError):
        return EXIT_TIMEOUT, str(exc)
    if isinstance(exc, SchedulerError):
        return EXIT_REFUSED, str(exc)
    if type(exc).__module__.split(".")[0] == "httpx":
        return EXIT_UNAVAILABLE, f"Prefect API unavailable: {exc}"
    if isinstance(exc, OSError):  # e.g. a SQLite directory that cannot be created
        return EXIT_UNAVAILABLE, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    database = _database_problem(exc)
    if database is not None:
        return database
    return EXIT_INTERNAL, (
        f"unexpected {type(exc).__name__}: {exc} (a bug; set LLMSCHED_DEBUG=1 for the traceback)"
    )


def _database_problem(exc: BaseException) -> tuple[int, str] | None:
    """SQLAlchemy errors that escape the service: an unreachable or unusable database."""
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.ArgumentError | sa.exc.NoSuchModuleError):
        return EXIT_REFUSED, f"invalid database URL: {exc}"
    if isinstance(exc, sa.exc.DBAPIError):
        cause = exc.orig if exc.orig is not None else exc
        return EXIT_UNAVAILABLE, f"database unavailable: {one_line(str(cause))}"
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return EXIT_UNAVAILABLE, f"database error: {one_line(str(exc))}"
    return None


app = LLMSchedApp(
    name="llmsched",
    help="A job scheduler for LLM data-generation pipelines on Prefect.\n\n"
    "Exit codes: 0 ok, 1 the job/run failed, 2 refused (bad input, unknown id, "
    "invalid state), 3 database or Prefect API unavailable, 4 timed out. "
    "Errors are one line on stderr: 'error: <message>'.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

__all__ = ["EXIT_OK", "app", "classify"]
