"""The one interface for side effects of state changes: subclass `Plugin`, override the
hooks you need, and add it with `SchedulerService.add_plugin`.

Hooks named `on_*_in_tx` run inside the transaction of the change they report, so what
they write commits or rolls back with it (the webhook outbox); what such a hook reads at
every run's end can ride on the end's own statement (`reads_with_end`), and when it
writes nothing for an end is said in SQL (`writes_with_end`). `after_write`
runs when a write transaction has ended, and says whether it committed (what a hook
noted in the transaction is sent only then); `after_enqueue` after new jobs were committed by a
submission; `on_recovered` after a dead worker's job was recovered; these three run
outside any transaction (a failing one is logged, and the scheduler goes on). `start`
and `stop` follow the service's background worker.

Webhooks (scheduler_core/webhooks) are such a plugin, installed by every service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from scheduler_core.errors import ConfigurationError
from scheduler_core.values import Claim, Finish, Job, JobGroup, JobRun

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

log = logging.getLogger("scheduler_core.plugins")
DIALECTS = ("sqlite", "postgresql")


class Plugin:
    """No-op hooks; a plugin overrides the ones it needs."""

    def reads_with_end(self, dialect: str) -> Mapping[str, Any]:
        """Scalar SQL expressions (SQLAlchemy) that the statement recording a run's end
        evaluates too, by label (a Python identifier, unique among plugins): their values
        are in `conn.info[label]` when `on_terminal_run_in_tx` runs for that end. A read
        that every end needs costs no statement of its own (on PostgreSQL, no round
        trip). Called when the plugin is added, once per `dialect` ('sqlite',
        'postgresql'). An end recorded another way (recovery) leaves no value there."""
        return {}

    def writes_with_end(self, dialect: str) -> bool | Any:
        """Whether `on_terminal_run_in_tx` and `on_retry_decided_in_tx` may write rows for
        a run's end: True, False, or a scalar SQL boolean expression (SQLAlchemy, without
        parameters) true where they may (the webhooks: an endpoint is enabled). Where no
        plugin may, a PostgreSQL worker writes a run's end and its slot's next claim in
        one statement outside a transaction (store/cycle.py): there is nothing for the
        hooks to write in it, and they run once it committed (one that raises then
        undoes nothing). A hook that only notes something for `after_write` writes
        nothing. The default: True for a plugin that overrides either hook."""
        return (
            type(self).on_terminal_run_in_tx is not Plugin.on_terminal_run_in_tx
            or type(self).on_retry_decided_in_tx is not Plugin.on_retry_decided_in_tx
        )

    def on_terminal_run_in_tx(self, conn: Connection, job: Job, run: JobRun) -> None:
        """A run ended COMPLETED, FAILED or SKIPPED (written in `conn`'s transaction)."""

    def on_group_end_in_tx(self, conn: Connection, group: JobGroup) -> None:
        """A group reached its terminal status (written in `conn`'s transaction)."""

    def on_retry_decided_in_tx(self, conn: Connection, job: Job, retry: Job | None) -> None:
        """A job FAILED: `retry` is its automatic retry, or None when none is left."""

    def on_cancelled_in_tx(self, conn: Connection, job: Job) -> None:
        """A QUEUED job was cancelled (it never ran and has no run)."""

    def after_write(self, conn: Connection, committed: bool) -> None:
        """A write transaction on `conn` ended, committed or rolled back."""

    def after_enqueue(self, jobs: list[Job]) -> None:
        """A submission (enqueue, group, manual retry) committed these new QUEUED jobs."""

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
        self._reads: dict[str, tuple[tuple[str, Any], ...]] = {d: () for d in DIALECTS}
        self._writes: dict[str, bool | Any] = {d: False for d in DIALECTS}

    def add(self, plugin: Plugin) -> None:
        """Raises ConfigurationError, and adds nothing, if the plugin's reads are
        labelled with a name that is no Python identifier or is another plugin's."""
        if plugin in self._plugins:
            return
        reads = {}
        for dialect in DIALECTS:
            merged = dict(self._reads[dialect])
            for label, expression in plugin.reads_with_end(dialect).items():
                if not label.isidentifier() or label in merged:
                    raise ConfigurationError(
                        f"{type(plugin).__name__}.reads_with_end: the label {label!r} is "
                        "not a Python identifier, or another plugin's; name it uniquely"
                    )
                merged[label] = expression
            reads[dialect] = tuple(merged.items())
        writes = {d: _either(self._writes[d], plugin.writes_with_end(d)) for d in DIALECTS}
        self._plugins.append(plugin)
        self._reads = reads
        self._writes = writes

    def end_reads(self, dialect: str) -> tuple[tuple[str, Any], ...]:
        """Every plugin's `reads_with_end`, as one tuple that stays the same object
        until a plugin is added (the store builds the end's statement once per tuple)."""
        return self._reads[dialect]

    def end_writes(self, dialect: str) -> bool | Any:
        """Every plugin's `writes_with_end`, combined: False where none may write, True
        where one always may, else one SQL expression; the same object until a plugin is
        added."""
        return self._writes[dialect]

    def __iter__(self) -> Iterator[Plugin]:
        return iter(list(self._plugins))

    def on_terminal_run_in_tx(self, conn: Connection, job: Job, run: JobRun) -> None:
        for plugin in self._plugins:
            plugin.on_terminal_run_in_tx(conn, job, run)

    def on_group_end_in_tx(self, conn: Connection, group: JobGroup) -> None:
        for plugin in self._plugins:
            plugin.on_group_end_in_tx(conn, group)

    def on_retry_decided_in_tx(self, conn: Connection, job: Job, retry: Job | None) -> None:
        for plugin in self._plugins:
            plugin.on_retry_decided_in_tx(conn, job, retry)

    def on_cancelled_in_tx(self, conn: Connection, job: Job) -> None:
        for plugin in self._plugins:
            plugin.on_cancelled_in_tx(conn, job)

    def after_write(self, conn: Connection, committed: bool) -> None:
        for plugin in self._plugins:
            _guarded(plugin, "after_write", plugin.after_write, conn, committed)

    def after_enqueue(self, jobs: list[Job]) -> None:
        for plugin in self._plugins:
            _guarded(plugin, "after_enqueue", plugin.after_enqueue, jobs)

    def on_recovered(self, claim: Claim, finish: Finish) -> None:
        for plugin in self._plugins:
            _guarded(plugin, "recovery", plugin.on_recovered, claim, finish)

    def start(self) -> None:
        for plugin in self._plugins:
            plugin.start()

    def stop(self, timeout: float) -> None:
        for plugin in self._plugins:
            plugin.stop(timeout)


def _either(known: bool | Any, more: bool | Any) -> bool | Any:
    """`known OR more` for `writes_with_end` values, kept a bool where either decides."""
    if known is True or more is True:
        return True
    if more is False:
        return known
    if known is False:
        return more
    return sa.or_(known, more)


def _guarded(plugin: Plugin, hook: str, call: Callable[..., None], *args: object) -> None:
    """Call a hook that runs after the fact: one failing plugin stops neither the others
    nor the scheduler."""
    try:
        call(*args)
    except Exception:
        log.exception("action=plugin_hook_failed plugin=%s hook=%s", type(plugin).__name__, hook)
