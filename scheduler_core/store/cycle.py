"""PostgreSQL: a slot's end and its next claim in one call of a server function.

A slot's transaction was five round trips (BEGIN, the end, the heads, the start with its
run, COMMIT); each costs psycopg 50-60 µs of the worker's CPU and the server a
statement's start-up, whatever the statement does (docs/benchmarks.md). Here the same
statements run inside one PL/pgSQL function, in the same order, each with its own
snapshot as before (the heads see what committed while the end waited for the dispatch
lock): the end of the run and its job, then the heads in dispatch order, then the first
head's start with its run. The function is generated from store/hot.py's statements as
SQLAlchemy compiles them, so every rule keeps its one definition, and is created in the
scheduler's schema on first use under a name that is a hash of its text.

It starts a head of an uncapped class that is neither a group member nor a retry (whose
parameters may refer to earlier members' outputs, store/groups.py). For a head of a
capped class it locks the head's slot and stops: Python starts it, reading the start
time after that lock by the worker's clock, as before (`CAPPED`). For a group member or
a retry it ends the run and stops, and the claim goes on in Python in the same
transaction, as before (`PYTHON`).

Where the call does everything (`STARTED`, or `NONE` to claim) and no plugin writes at
the end (plugins.py `writes_with_end`), nothing follows it in its transaction, so it is
made alone, outside a transaction: one round trip instead of BEGIN, the call and
COMMIT, whose two cost the worker about 95 µs of CPU and the job 200 µs
(docs/benchmarks.md). A call made alone where a plugin may write at the end writes
nothing and says so (`TRANSACTION`): it is made again in the transaction. One whose
first head needs Python (a capped class, a group member, a retry) ends the run, which
is complete by itself, and stops (`ENDED`): the slot's next job is claimed by the
worker's dispatcher, as after any end without a claim. Each thread makes its next call
alone only when its last one could have been (`o_alone`), so a worker whose work needs
Python goes on in transactions.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from string import Formatter
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scheduler_core.database import GENERATED_FUNCTION_PREFIX, outside_transaction
from scheduler_core.prepared import prepared
from scheduler_core.store import rows
from scheduler_core.store.base import LOG_NAME
from scheduler_core.store.claims import ClaimsStore, left_queued
from scheduler_core.store.finish import FinishStore, not_running
from scheduler_core.store.hot import (
    Bindings,
    Hot,
    dispatch_order,
    ending,
    heads_skip_locked,
    run_and_job_end,
    run_values,
    slot_name,
    slot_of,
    start_binds,
    type_params,
    value_binds,
)
from scheduler_core.tables import JOBS as J
from scheduler_core.values import Claim, Finish, Job, Outcome

log = logging.getLogger("scheduler_core.store")

STARTED, CAPPED, PYTHON, NONE, STALE = "started", "capped", "python", "none", "stale"
ENDED, TRANSACTION = "ended", "transaction"
"""What a call did: started the first head; locked the slot of the first head, of a
capped class, for Python to start it (the start time is read after that lock, by the
worker's clock: store/claims.py `_start_with_run`); ended the run, the claim left to
Python; ended the run, nothing to claim; ended nothing (the run is no longer RUNNING).
Made alone: ended the run, the claim left to the worker's dispatcher (its first head
needs a transaction); wrote nothing, as a plugin may write at the end."""

RETRY_SECONDS = 60.0
"""How long a worker goes without a function it could not create before trying again."""

UNDEFINED_FUNCTION = "42883"  # a call of a function dropped since: made again on the rerun
_BIND = re.compile(r"%\((\w+)\)s")
_PREFIX = GENERATED_FUNCTION_PREFIX
_JOB_COLUMNS = tuple(c.key for c in J.c)


class Cycle:
    """One generated function (for a set of plugin reads, job types and worker bindings):
    its `create` statement, and `call`, a statement returning one row."""

    def __init__(
        self,
        dialect: sa.Dialect,
        *,
        reads: tuple[tuple[str, Any], ...],
        writes: bool | Any,
        n_types: int,
        bindings: Bindings,
        log_name: str,
    ) -> None:
        end = ending(run_and_job_end, reads)
        head_rows = heads_skip_locked(n_types, bindings).subquery("heads")
        heads = (
            sa.select(head_rows)
            .where(head_rows.c.job_id.is_not(None))
            .order_by(*dispatch_order(head_rows))
        )
        self.reads, self.writes = reads, writes
        self.key = (reads, writes, n_types, bindings)  # its store's key for it
        self.args: list[sa.BindParameter[Any]] = []  # the call's, in the function's order
        slot = _sql(slot_of(sa.literal_column("h.resource"), bindings), dialect)
        from_head = {  # the start's values that come from the head, not from the caller
            "b_job_id": "h.job_id",
            "b_slot": slot,
            "v_params_snapshot": "h.params",
            "v_log_path": "p_log_dir || " + _log_name_sql(log_name),
        }
        end_sql = self._render(end, dialect, "e", {})
        heads_sql = self._render(heads, dialect, "h", {"n": "1"})
        start_sql = self._render(Hot.start_job_with_run, dialect, "s", from_head)
        lock_sql = self._render(Hot.lock_resource, dialect, "l", {"resource": slot})
        lock_sql = "PERFORM" + lock_sql.removeprefix("SELECT")
        self.args.append(sa.bindparam("p_log_dir", type_=sa.String()))
        self.args.append(sa.bindparam("p_alone", type_=sa.Boolean()))
        # Where no plugin writes at the end, `quiet`: the call may be made alone.
        if isinstance(writes, bool):
            quiet = str(not writes).lower()
        else:
            quiet = f"NOT coalesce(({self._render(writes, dialect, 'w', {})}), false)"
        # The end's columns but the dispatch lock's (void): the run's flow run id and
        # the plugins' reads.
        end_out = [c for c in end.exported_columns if c.key != "dispatch_locked"]
        end_columns = [c.key for c in end_out]
        job_columns = list(_JOB_COLUMNS)
        out = [("o_code", "text")]
        out += [(f"o_e_{c.key}", _type(c.type, dialect)) for c in end_out]
        out += [(f"o_j_{k}", _type(J.c[k].type, dialect)) for k in job_columns]
        out += [("o_run_id", "integer"), ("o_limit", "integer"), ("o_alone", "boolean")]
        # Cast to the declared types: a read's SQL type may be wider than SQLAlchemy's
        # (count() is a bigint where its type says Integer).
        ended = ", ".join(
            f"e.{k}::{kind}" for k, (_, kind) in zip(end_columns, out[1:], strict=False)
        )
        job = ", ".join(f"h.{k}" for k in job_columns)

        def nulls(columns: list[tuple[str, str]]) -> str:  # typed: RETURN QUERY checks them
            return ", ".join(f"NULL::{kind}" for _, kind in columns)

        no_end, no_job = nulls(out[1 : 1 + len(end_out)]), nulls(out[1 + len(end_out) : -3])

        def result(
            code: str, job_values: str, run: str, end_values: str = ended, limit: str = "NULL"
        ) -> str:
            alone = "quiet" if code in (STARTED, NONE) else "false"
            values = f"{end_values}, {job_values}, {run}, {limit}::integer, {alone}"
            return f"RETURN QUERY SELECT '{code}'::text, {values}; RETURN;"

        # Made alone, the call ends the run and stops where the claim needs Python: the
        # end is committed, and the worker's dispatcher claims the slot's next job.
        alone_ends = f"IF p_alone THEN {result(ENDED, no_job, 'NULL::integer')} END IF;"
        signature = ", ".join(f"{b.key} {_type(b.type, dialect)}" for b in self.args)
        body = "\n".join(
            [
                "#variable_conflict use_column",
                "DECLARE e record; h record; s record;",
                f"  quiet boolean := {quiet};",
                "BEGIN",
                "  IF p_alone AND NOT quiet THEN",
                f"    {result(TRANSACTION, no_job, 'NULL::integer', no_end)}",
                "  END IF;",
                f"  {end_sql} INTO e;",
                "  IF NOT FOUND THEN",
                f"    {result(STALE, no_job, 'NULL::integer', no_end)}",
                "  END IF;",
                f"  FOR h IN {heads_sql} LOOP",
                "    IF h.group_id IS NOT NULL OR h.retry_of IS NOT NULL THEN",
                f"      {alone_ends}",
                f"      {result(PYTHON, no_job, 'NULL::integer')}",
                "    END IF;",
                "    IF h.class_limit IS NOT NULL THEN",
                f"      {alone_ends}",
                f"      {lock_sql};",
                f"      {result(CAPPED, job, 'NULL::integer', limit='h.class_limit')}",
                "    END IF;",
                f"    {start_sql} INTO s;",
                "    IF NOT FOUND THEN",
                f"      {alone_ends}",
                f"      {result(STALE, job, 'NULL::integer')}",
                "    END IF;",
                f"    {result(STARTED, job, 's.run_id')}",
                "  END LOOP;",
                f"  {result(NONE, no_job, 'NULL::integer')}",
                "END",
            ]
        )
        returns = ", ".join(f"{name} {kind}" for name, kind in out)
        digest = hashlib.sha1(f"{signature}|{returns}|{body}".encode()).hexdigest()[:16]
        self.name = _PREFIX + digest
        self.create = (
            f"CREATE OR REPLACE FUNCTION {self.name}({signature}) RETURNS TABLE({returns}) "
            f"LANGUAGE plpgsql AS $cycle$\n{body}\n$cycle$"
        )
        types = [sa.String(), *(c.type for c in end_out), *(J.c[k].type for k in job_columns)]
        types += [sa.Integer(), sa.Integer(), sa.Boolean()]
        columns = [sa.column(name, t) for (name, _), t in zip(out, types, strict=True)]
        self.call = sa.select(*getattr(sa.func, self.name)(*self.args).table_valued(*columns).c)

    def _render(
        self, statement: Any, dialect: sa.Dialect, prefix: str, fixed: dict[str, str]
    ) -> str:
        """`statement`'s SQL for the function body: each bound value a function argument
        (named `prefix_name`), one of `fixed` (an expression of the body), or, for a
        constant of the statement, its literal."""
        compiled: Any = statement.compile(dialect=dialect)
        by_name = {name: bind for bind, name in compiled.bind_names.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in fixed:
                return fixed[name]
            bind = by_name[name]
            if not bind.required:
                return _sql(sa.literal(bind.effective_value, bind.type), dialect)
            arg = f"{prefix}_{name}"
            if all(a.key != arg for a in self.args):
                kind = sa.Text() if isinstance(bind.type, sa.types.NullType) else bind.type
                self.args.append(sa.bindparam(arg, type_=kind))
            return arg

        return _BIND.sub(replace, compiled.string).replace("%%", "%")


def _sql(expression: Any, dialect: sa.Dialect) -> str:
    return str(expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _type(kind: Any, dialect: sa.Dialect) -> str:
    """An argument's or column's SQL type; text for a value SQLAlchemy left untyped (a
    job type in the heads' list, compared with a text column)."""
    if isinstance(kind, sa.types.NullType):
        return "text"
    return str(kind.dialect_impl(dialect).compile(dialect=dialect))


def _log_name_sql(template: str) -> str:
    """SQL of `template` (StoreBase's LOG_NAME) for the head `h`: its literal text and its
    fields, each a column of the head, joined."""
    parts: list[str] = []
    for text, field, _, _ in Formatter().parse(template):
        if text:
            parts.append("'" + text.replace("'", "''") + "'")
        if field:
            parts.append(f"h.{field}::text")
    return " || ".join(parts)


def ensure(conn: Connection, cycle: Cycle) -> bool:
    """Create `cycle`'s function in the scheduler's schema unless it is there; False if
    the server refuses (a role without the right to create functions): the caller goes
    on without it. On a connection of its own, committed before this returns, so that
    no other thread calls a function that `conn`'s transaction has not committed yet;
    workers creating it together take turns on an advisory lock."""
    schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    try:
        with conn.engine.connect() as own, own.begin():
            own.exec_driver_sql(f"SET LOCAL search_path TO {_quoted(own, schema)}")
            key = int(cycle.name[len(_PREFIX) :][:15], 16)
            own.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")
            exists = own.execute(
                sa.text(
                    "SELECT 1 FROM pg_proc WHERE proname = :name "
                    "AND pronamespace = current_schema()::regnamespace"
                ),
                {"name": cycle.name},
            ).first()
            if exists is None:
                own.exec_driver_sql(cycle.create.replace("%", "%%"))
    except sa.exc.DBAPIError as exc:  # said once per function; retried quietly after
        level = logging.DEBUG if cycle.name in _refused else logging.WARNING
        _refused.add(cycle.name)
        log.log(level, "action=cycle_function_unavailable name=%s error=%s", cycle.name, exc.orig)
        return False
    return True


_refused: set[str] = set()  # functions the server refused to create, in this process


def _quoted(conn: Connection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote_identifier(name))


class CycleStore(ClaimsStore, FinishStore):
    """`end_then_claim`: the store's side of the call."""

    def end_then_claim(
        self,
        conn: Connection,
        claim: Claim,
        outcome: Outcome,
        *,
        worker_id: str,
        job_types: Sequence[str],
        bindings: Bindings,
        now: datetime,
    ) -> tuple[Finish, Claim | None] | None:
        """PostgreSQL: `claim`'s end (FinishStore.finish) and the next claim
        (`claim_many(1, after_end=True)`) in `conn`'s transaction, with one call of the
        cycle function; None, having written nothing, where the end needs Python before
        the claim (a group member's end, one that queues a retry) or the function cannot
        be had: the caller writes both as before."""
        if not self.is_postgres or not job_types or claim.job.group_id is not None:
            return None
        if self.retries(claim, outcome, now=now):
            return None
        cycle = self.cycle(conn, n_types=len(job_types), bindings=bindings)
        if cycle is None:
            return None
        params = self.end_params(claim, outcome, now=now)
        args = self.cycle_args(params, worker_id=worker_id, job_types=job_types, now=now)
        try:
            row = self._call(conn, cycle, args)
        except sa.exc.DBAPIError as exc:  # dropped since: the rerun (database.py) makes it
            if getattr(exc.orig, "sqlstate", None) == UNDEFINED_FUNCTION:
                self._cycles.pop(cycle.key, None)
            raise
        if row is None or (row.o_code == STALE and row.o_j_job_id is None):
            raise not_running(claim)
        if row.o_code == STALE:
            raise left_queued(row.o_j_job_id)
        reads = cycle.reads
        ended = SimpleNamespace(
            flow_run_id=row.o_e_flow_run_id,
            **{label: getattr(row, f"o_e_{label}") for label, _ in reads},
        )
        finish = self.ended(conn, claim, outcome, params, ended, group=None, reads=reads, now=now)

        def in_python() -> Claim | None:  # the claim, as it went before the function
            return self.claim_many(
                conn,
                1,
                worker_id=worker_id,
                job_types=job_types,
                now=now,
                bindings=bindings,
                after_end=True,
            ).first

        if row.o_code == PYTHON:
            return finish, in_python()
        if row.o_code in (NONE, ENDED):
            return finish, None
        job = rows.value(Job, {k: getattr(row, f"o_j_{k}") for k in _JOB_COLUMNS})
        slot = slot_name(job.resource, bindings)
        if row.o_code == CAPPED:  # its slot locked: started here if it has room, else
            # (full after all) the next heads, as Python's claim goes on to them
            capped = self._start_with_run(
                conn, job, slot=slot, limit=row.o_limit, worker_id=worker_id, now=now
            )
            return finish, capped if capped is not None else in_python()
        values = self.run_values_of(conn, job, worker_id=worker_id, now=now)
        started = self.claim_of(
            job, values, slot=slot, worker_id=worker_id, now=now, run_id=row.o_run_id
        )
        return finish, started

    def cycle_args(
        self, end: dict[str, Any], *, worker_id: str, job_types: Sequence[str], now: datetime
    ) -> dict[str, Any]:
        """A call's arguments but `p_alone`: the end's bind values (`end_binds`), the
        heads' job types and clock, and the start's values."""
        run = run_values(0, now=now, worker_id=worker_id, params=None, log_path=None)
        start = {**value_binds(run), **start_binds(0, now=now, worker_id=worker_id, slot="")}
        args: dict[str, Any] = {f"e_{k}": v for k, v in end.items()}
        args.update({f"h_{k}": v for k, v in type_params(job_types).items()}, h_now=now)
        args.update({f"s_{k}": v for k, v in start.items()})
        args["p_log_dir"] = None if self.log_dir is None else os.path.join(self.log_dir, "")
        return args

    def _call(self, conn: Connection, cycle: Cycle, args: dict[str, Any]) -> Any:
        """The call's row: made alone (`conn`'s transaction not begun on the server yet)
        where this thread's last call could have been, else, or when the call made alone
        could not write (TRANSACTION), in the transaction."""
        last = self._alone_last
        if cycle.writes is not True and getattr(last, "alone", True):
            row = self._call_alone(conn, cycle, args)
            if row is not None:
                last.alone = row.o_alone
                return row
        row = prepared(conn, cycle.call).first(conn, {**args, "p_alone": False})
        last.alone = row is not None and row.o_alone
        return row

    @staticmethod
    def _call_alone(conn: Connection, cycle: Cycle, args: dict[str, Any]) -> Any:
        """The call made alone, its row; None where it cannot be: it found it needs the
        transaction (TRANSACTION, nothing written), or `conn`'s has begun on the server."""
        with outside_transaction(conn) as alone:
            if not alone:
                return None
            row = prepared(conn, cycle.call).first(conn, {**args, "p_alone": True})
        return None if row is None or row.o_code == TRANSACTION else row

    @functools.cached_property
    def _alone_last(self) -> threading.local:
        """Per thread, `alone`: could its last call have been made alone?"""
        return threading.local()

    def cycle(self, conn: Connection, *, n_types: int, bindings: Bindings) -> Cycle | None:
        """The function for the plugins' reads and writes, `n_types` job types and these
        bindings, created on first use; None while it cannot be (tried again after
        RETRY_SECONDS)."""
        reads = self.plugins.end_reads("postgresql")
        writes = self.plugins.end_writes("postgresql")
        key = (reads, writes, n_types, bindings)
        known = self._cycles.get(key)
        if isinstance(known, Cycle):
            return known
        if known is not None and time.monotonic() < known:
            return None
        cycle = Cycle(
            conn.dialect,
            reads=reads,
            writes=writes,
            n_types=n_types,
            bindings=bindings,
            log_name=LOG_NAME,
        )
        made = ensure(conn, cycle)
        self._cycles[key] = cycle if made else time.monotonic() + RETRY_SECONDS
        return cycle if made else None

    @functools.cached_property
    def _cycles(self) -> dict[Any, Cycle | float]:
        return {}
