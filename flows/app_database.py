"""Which database the app's own tables (the output library, the novelty index) live in:
the one the worker's scheduler uses, so outputs sit beside the jobs that wrote them.

A worker started with `--db URL` (or `SchedulerService.open(url)`) names it here through
`install_pipelines`; elsewhere (a script, a Prefect worker running the submit flow) it is
the scheduler's setting: LLMSCHED_DATABASE_URL, else the SQLite file in LLMSCHED_HOME.
"""

from __future__ import annotations

from scheduler_core.settings import SchedulerSettings

_url: str | None = None


def use_database(url: str | None) -> None:
    """Make `url` this process's app database (None: back to the setting)."""
    global _url
    _url = url


def app_database_url(url: str | None = None) -> str:
    """`url`, else the one `use_database` named, else the scheduler's setting."""
    return url or _url or SchedulerSettings().resolved_database_url()
