"""`python -m bench`: every benchmark row beside its baseline, as a table and as JSON.

    python -m bench [--postgres URL] [--quick | --smoke] [--json PATH] [--repeat N]
                    [--only FAMILY ...] [--peers]

`--peers` runs ours beside huey, DBOS, procrastinate and PgQueuer (bench/peers.py)
instead of the default families (with `--only`, beside those); the peers come from
the `bench` extra: pip install -e '.[bench]'.

Exit code 0 unless a row errors; targets are reported as met or missed, not enforced.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import sqlite3
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import report
from bench.backends import Backend
from bench.config import FAMILIES, MODES, PEERS, Context
from bench.measure import Result
from bench.prefect_server import PrefectServer


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--postgres", metavar="URL", help="also run every row on PostgreSQL")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller windows, same shapes")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: every code path (CI)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--repeat", type=int, metavar="N", help="rounds per row (default 3)")
    parser.add_argument("--only", nargs="+", choices=FAMILIES, metavar="FAMILY")
    parser.add_argument(
        "--peers", action="store_true", help="ours beside huey, DBOS, procrastinate, PgQueuer"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "default"
    sizes = MODES[mode]
    rounds = args.repeat or sizes.rounds
    out = report.console()
    err = Console(stderr=True, log_path=False)
    started = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="llmsched-bench-") as tmp:
        root = Path(tmp)
        # Product warnings (e.g. one per recovered job) go where a worker's log would go.
        logging.basicConfig(filename=root / "bench.log", level=logging.WARNING, force=True)
        prefect = PrefectServer(root / "prefect-home")  # before anything imports Prefect
        backends = [Backend("sqlite", root)]
        if args.postgres:
            backends.append(Backend("postgres", root, args.postgres))
        families = list(args.only or ([] if args.peers else FAMILIES))
        if args.peers:
            families.append(PEERS)
            from bench.peers import install_hint

            if hint := install_hint():
                err.print(hint, style="yellow", markup=False, highlight=False, soft_wrap=True)
        try:
            for backend in backends:
                for name in families:

                    def say(msg: str, prefix: str = f"{backend.name} {name}") -> None:
                        err.log(f"[dim]{prefix}: {msg}")

                    ctx = Context(backend, sizes, rounds, prefect, say)
                    ctx.say("running")
                    results.extend(run_family(name, ctx, err))
        finally:
            prefect.close()
    total = time.perf_counter() - started
    title = f"python -m bench ({mode}, {rounds} rounds per row): {total:.0f} s"
    out.print(report.table(results, title=title))
    if args.json:
        report.write_json(args.json, results, meta(mode, rounds, total, prefect))
        out.print(f"written to {args.json}")
    return 1 if any(r.error for r in results) else 0


def run_family(name: str, ctx: Context, err: Console) -> list[Result]:
    started = time.perf_counter()
    try:
        results: list[Result] = importlib.import_module(f"bench.{name}").run(ctx)
    except Exception as exc:
        err.print(traceback.format_exc(), markup=False, highlight=False)
        return [Result(row=name, backend=ctx.backend.name, unit="", error=f"{exc!r}")]
    seconds = time.perf_counter() - started
    for result in results:
        result.details["family_seconds"] = round(seconds, 1)
    ctx.say(f"done in {seconds:.1f} s")
    return results


def meta(mode: str, rounds: int, total: float, prefect: PrefectServer) -> dict[str, Any]:
    return {
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "mode": mode,
        "rounds": rounds,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_seconds": round(total, 1),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "prefect": version("prefect"),
            "sqlalchemy": version("sqlalchemy"),
        },
        "prefect_server": {
            "how": "`prefect server start` subprocess, temporary PREFECT_HOME, analytics off, "
            "every server service on, as a user runs it (see bench/prefect_server.py)",
            "startup_seconds": prefect.startup_seconds,
        },
    }


if __name__ == "__main__":
    sys.exit(main())
