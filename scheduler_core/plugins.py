"""The one interface for side effects of state changes: subclass `Plugin`, override the
hooks you need, and add it with `SchedulerService.add_plugin`.

Hooks named `on_*_in_tx` run inside the transaction of the change they report, so what
they write commits or rolls back with it (the webhook outbox). `after_write` runs when
a write transaction has ended; `on_recovered` after a dead worker's job was recovered,
outside any transaction (a failing one is logged, and recovery goes on); `start` and
`stop` follow the service's background worker.

Webhooks (scheduler_core/webhooks) are such a plugin, installed by every service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from scheduler_core.values import Claim, Finish, Job, JobGroup, JobRun

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

log = logging.getLogger("scheduler_core.plugins")


class Plugin:
    """No-op hooks; a plugin overrides the ones it needs."""

    def on_terminal_run_in_tx(self, conn: Connection, job: Job, run: JobRun) -> None:
        """A run ended COMPLETED, FAILED or SKIPPED (written in `conn`'s transaction)."""

    def on_group_end_in_tx(self, conn: Connection, group: JobGroup) -> None:
        """A group reached its terminal status (written in `conn`'s transaction)."""

    def after_write(self, conn: Connection) -> None:
        """A write transaction on `conn` ended, committed or rolled back."""

    def on_recovered(self, claim: Claim, finish: Finish) -> None:
        """A dead worker's job was recovered: its run closed, its retry (if any) queued."""

    def start(self) -> None:
        """The service's background worker started."""

    def stop(self, timeout: float) -> None:
        """The service is closing; end background work within `timeout` seconds."""


class Plugins(Plugin):
    """The service's plugins, called in the order they were added."""

    def __init__(self) -> None:
        self._plugins: list[Plugin] = []

    def add(self, plugin: Plugin) -> None:
        if plugin not in self._plugins:
            self._plugins.append(plugin)

    def __iter__(self) -> Iterator[Plugin]:
        return iter(list(self._plugins))

    def on_terminal_run_in_tx(self, conn: Connection, job: Job, run: JobRun) -> None:
        for plugin in self._plugins:
            plugin.on_terminal_run_in_tx(conn, job, run)

    def on_group_end_in_tx(self, conn: Connection, group: JobGroup) -> None:
        for plugin in self._plugins:
            plugin.on_group_end_in_tx(conn, group)

    def after_write(self, conn: Connection) -> None:
        for plugin in self._plugins:
            plugin.after_write(conn)

    def on_recovered(self, claim: Claim, finish: Finish) -> None:
        for plugin in self._plugins:
            try:
                plugin.on_recovered(claim, finish)
            except Exception:  # one failing plugin must not stop the recovery pass
                log.exception(
                    "action=recovery_hook_failed plugin=%s job_id=%s",
                    type(plugin).__name__,
                    claim.job.job_id,
                )

    def start(self) -> None:
        for plugin in self._plugins:
            plugin.start()

    def stop(self, timeout: float) -> None:
        for plugin in self._plugins:
            plugin.stop(timeout)
