"""Run many `llmsched` commands in one process (the imports are most of a command's cost)
and report, per command, its exit code, stdout, stderr and the database's row counts
after it.

    python -m tests.cli.cli_runner DB_URL < commands.json > results.json

`commands.json` is a list of argument lists; `--db DB_URL` is appended to each.
"""

from __future__ import annotations

import io
import json
import signal
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import sqlalchemy as sa


def row_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows of every table of the scheduler's schema."""
    with engine.connect() as conn:
        names = sorted(sa.inspect(conn).get_table_names())
        return {
            name: conn.execute(sa.text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
            for name in names
        }


def run(args: list[str], db_url: str) -> dict[str, Any]:
    from llmsched.cli import app

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            app([*args, "--db", db_url])
            code: Any = 0
        except SystemExit as exc:
            code = exc.code
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the app installs its own per command
    return {"args": args, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    from scheduler_core.database import create_engine

    db_url = sys.argv[1]
    commands = json.load(sys.stdin)
    engine = create_engine(db_url)
    results = []
    for args in commands:
        result = run(args, db_url)
        result["rows"] = row_counts(engine)
        results.append(result)
    engine.dispose()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
