"""What every part of the store shares: the dialect, the plugins it reports to, the
position clock and the dispatch lock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from scheduler_core.plugins import Plugins
from scheduler_core.prepared import prepared
from scheduler_core.rules.ordering import PositionClock
from scheduler_core.rules.retry import RetryPolicy
from scheduler_core.store.hot import DISPATCH_LOCK_KEY, Hot
from scheduler_core.values import Job

LOG_NAME = "{job_type}-job-{job_id}-attempt-{attempt}.log"
"""A run log's file name in the log directory (also rendered in SQL: store/cycle.py)."""


class StoreBase:
    def __init__(
        self,
        *,
        dialect: str,
        retry_policy: RetryPolicy,
        plugins: Plugins | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.is_postgres = dialect == "postgresql"
        self.retry_policy = retry_policy
        self.plugins = plugins or Plugins()
        self.positions = PositionClock()
        self._known_resources: set[str] = set()

    def log_path_for(self, job: Job) -> str | None:
        """The run log file of `job`'s run, fixed when it is claimed."""
        if self.log_dir is None:
            return None
        # os.path, not pathlib: on Python 3.11 pathlib interns every part it parses, and
        # each run's file name is new, so the interpreter's interned-string table grows.
        name = LOG_NAME.format(job_type=job.job_type, job_id=job.job_id, attempt=job.attempt)
        return os.path.join(self.log_dir, name)

    def _insert(self, table: Any) -> Any:
        """An INSERT with this dialect's ON CONFLICT."""
        return (postgresql.insert if self.is_postgres else sqlite.insert)(table)

    def _dispatch_lock(self, conn: Connection, *, exclusive: bool) -> None:
        if self.is_postgres:
            lock = Hot.dispatch_lock_exclusive if exclusive else Hot.dispatch_lock_shared
            prepared(conn, lock).execute(conn, {"key": DISPATCH_LOCK_KEY})
