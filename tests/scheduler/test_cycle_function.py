"""PostgreSQL: a worker slot's end and next claim as one call of the generated cycle
function (store/cycle.py) write what the statements run one by one wrote, for every
kind of head: each scenario runs through the worker loop on a fresh schema with the
function and again without it, and the rows are compared."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scheduler_core import JobStatus, Plugin, SchedulerService
from scheduler_core.store import cycle
from scheduler_core.store.cycle import CycleStore
from scheduler_core.tables import JOBS, RUNS
from scheduler_core.values import Job, JobRun
from scheduler_core.webhooks import add_webhook_endpoint, install_webhooks
from scheduler_core.webhooks.models import EVENTS
from tests.conftest import POSTGRES_URL, TEST_SETTINGS, fresh_database, wait_for
from tests.webhooks.support import LOCAL_RECEIVERS

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs SCHEDULER_TEST_POSTGRES_URL")

VOLATILE_JOB = {
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
    "not_before",
    "position",
    "worker_id",
}
VOLATILE_RUN = {"started_at", "finished_at", "worker_id"}
TERMINAL = {s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.SKIPPED)}


def fails(params: dict[str, Any]) -> None:
    if params.get("fail"):
        raise RuntimeError("asked to fail")


def cycle_functions(conn: sa.Connection) -> list[str]:
    """The cycle functions in the connection's schema."""
    return list(
        conn.exec_driver_sql(
            "SELECT proname FROM pg_proc WHERE proname LIKE 'llmsched_cycle_%%' "
            "AND pronamespace = current_schema()::regnamespace"
        ).scalars()
    )


def work_through(svc: SchedulerService, count: int, *, slots: int = 1) -> None:
    """Start the worker loop and wait until `count` jobs COMPLETED; then stop it."""
    svc.start(concurrency=slots)
    try:
        wait_for(
            lambda: len(svc.list_jobs(status=JobStatus.COMPLETED, limit=1000)) == count,
            timeout=30,
            what="every job completed",
        )
    finally:
        svc.stop(timeout=10)


@contextmanager
def queued(tmp_path: Path, jobs: int) -> Iterator[SchedulerService]:
    """A service on a fresh schema with `jobs` jobs of type "a" queued."""
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **TEST_SETTINGS) as svc,
    ):
        svc.register("a", fails)
        for n in range(jobs):
            svc.enqueue_job("a", {"n": n})
        yield svc


def uncapped(svc: SchedulerService) -> None:
    rng = random.Random(7)
    for n in range(30):
        svc.enqueue_job(rng.choice(["a", "b"]), {"n": n}, priority=rng.randrange(10))


def capped(svc: SchedulerService) -> None:
    svc.set_resource_limit("one", 1)
    for n in range(12):
        svc.enqueue_job("c" if n % 3 else "a", {"n": n}, priority=n % 4)


def bound(svc: SchedulerService) -> None:
    svc.set_resource_limit("one", 2)
    svc.bind_resource("one", "one@here")
    for n in range(8):
        svc.enqueue_job("c" if n % 2 else "b", {"n": n})


def groups_and_retries(svc: SchedulerService) -> None:
    svc.create_job_group(
        [
            {"job_type": "a", "params": {"n": 0}, "name": "first"},
            {"job_type": "b", "params": {"n": 1, "from": {"$outputs": "first"}}},
            {"job_type": "f", "params": {"n": 2, "fail": True}},
            {"job_type": "a", "params": {"n": 3}},
        ]
    )
    for n in range(4):
        svc.enqueue_job("f", {"n": 10 + n, "fail": n % 2 == 0}, max_retries=1)
    for n in range(6):
        svc.enqueue_job("a", {"n": 20 + n}, priority=1)


SCENARIOS: dict[str, Callable[[SchedulerService], None]] = {
    "uncapped": uncapped,
    "capped": capped,
    "bound": bound,
    "groups_and_retries": groups_and_retries,
}


def run(
    tmp_path: Path, scenario: Callable[[SchedulerService], None], *, home: Path
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The scenario through a one-slot worker until every job ended: each job's row and
    its run's, in the order the runs started, without what differs between any two runs."""
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **{**TEST_SETTINGS, "home": home}) as svc,
    ):
        for name in ("a", "b", "f"):
            svc.register(name, fails)
        svc.register("c", fails, resource="one")
        scenario(svc)
        svc.start(concurrency=1)
        try:
            wait_for(
                lambda: all(j.status.value in TERMINAL for j in svc.list_jobs(limit=1000)),
                timeout=60,
                what="every job ended",
            )
        finally:
            svc.stop(timeout=10)

        def read(conn: sa.Connection) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
            runs = {r.job_id: dict(r._mapping) for r in conn.execute(sa.select(RUNS))}
            jobs = [dict(j._mapping) for j in conn.execute(sa.select(JOBS))]
            jobs.sort(
                key=lambda j: (
                    runs[j["job_id"]]["run_id"] if j["job_id"] in runs else 0,
                    j["job_id"],
                )
            )
            return [
                (
                    {k: v for k, v in job.items() if k not in VOLATILE_JOB},
                    None
                    if (r := runs.get(job["job_id"])) is None
                    else {k: v for k, v in r.items() if k not in VOLATILE_RUN},
                )
                for job in jobs
            ]

        return svc.db.read(read)


# How each end and next claim of the worker loop was written, by scenario, with calls
# made alone where they may be and with every call in a transaction: by one call outside
# a transaction ("alone"); by one that ended the run there and left the claim to the
# dispatcher, its head needing Python ("ended"); by the function alone in the transaction
# ("function"); by the function, then Python's start of the capped head whose slot it
# locked ("capped"); by the function, then Python's claim ("python": a group member or a
# retry); or without the function (an end that queues a retry or ends a group member).
EXPECTED = {
    "uncapped": {"function", "alone"},
    "capped": {"alone", "ended", "function", "capped"},
    "bound": {"ended", "function", "capped"},
    "groups_and_retries": {"alone", "ended", "function", "not used"},
}
EXPECTED_IN_TRANSACTIONS = {
    "uncapped": {"function"},
    "capped": {"function", "capped"},
    "bound": {"function", "capped"},
    "groups_and_retries": {"function", "python", "not used"},
}


class Calls(list[str]):
    """How each `end_then_claim` was written (EXPECTED's words); `refused`: how many
    calls were tried alone and made in the transaction instead (they raised
    IN_TRANSACTION, or the transaction had begun: the call that made the function)."""

    refused = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """How each `end_then_claim` was written."""
    seen = Calls()
    python: list[str] = []  # Python's claims and starts inside the current call
    end_then_claim, claim_many = CycleStore.end_then_claim, CycleStore.claim_many
    start_with_run, call_alone = CycleStore._start_with_run, CycleStore._call_alone

    def spy_end(self: CycleStore, *args: Any, **kwargs: Any) -> Any:
        python.clear()
        done = end_then_claim(self, *args, **kwargs)
        seen.append(
            "not used"
            if done is None
            else "python"
            if "claim" in python
            else "capped"
            if "start" in python
            else "made alone, yet in a transaction"
            if "in a transaction" in python
            else "alone"
            if "alone" in python
            else "ended"
            if "ended" in python
            else "function"
        )
        return done

    def spy_alone(conn: sa.Connection, *args: Any) -> Any:
        row = call_alone(conn, *args)
        # Made alone, the call committed by itself: no transaction is open after it.
        open_after = conn.connection.dbapi_connection.info.transaction_status != 0
        python.append(
            "refused"
            if row is None
            else "in a transaction"
            if open_after
            else "ended"
            if row.o_code == cycle.ENDED
            else "alone"
        )
        seen.refused += row is None
        return row

    def spy_claim(self: CycleStore, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("after_end"):
            python.append("claim")
        return claim_many(self, *args, **kwargs)

    def spy_start(self: CycleStore, *args: Any, **kwargs: Any) -> Any:
        python.append("start")
        return start_with_run(self, *args, **kwargs)

    monkeypatch.setattr(CycleStore, "end_then_claim", spy_end)
    monkeypatch.setattr(CycleStore, "claim_many", spy_claim)
    monkeypatch.setattr(CycleStore, "_start_with_run", spy_start)
    monkeypatch.setattr(CycleStore, "_call_alone", staticmethod(spy_alone))
    yield seen


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "in_transactions"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_cycle_function_writes_what_the_statements_wrote(
    tmp_path: Path, name: str, alone: bool, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = SCENARIOS[name]
    if not alone:
        monkeypatch.setattr(CycleStore, "_call_alone", staticmethod(lambda *a: None))
    with_function = run(tmp_path / "with", scenario, home=tmp_path / "home")
    assert set(calls) == (EXPECTED if alone else EXPECTED_IN_TRANSACTIONS)[name]
    if name == "uncapped" and alone:  # the first call made the function: in a transaction
        assert calls[1:] == ["alone"] * (len(calls) - 1)
    monkeypatch.setattr(CycleStore, "end_then_claim", lambda *a, **k: None)
    without = run(tmp_path / "without", scenario, home=tmp_path / "home")
    assert with_function == without
    assert len(with_function) >= 8


def test_one_function_per_shape_created_once_and_kept(tmp_path: Path) -> None:
    with queued(tmp_path, 20) as svc:
        work_through(svc, 20, slots=4)
        assert len(svc.db.read(cycle_functions)) == 1


def test_a_function_the_server_refuses_leaves_the_worker_writing_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses to create the function (as for a role without the right to):
    one warning, and every end and claim written by the statements one by one, in the
    transaction the refusal happened in."""
    real = cycle.Cycle

    class Refused(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.create = f"CREATE FUNCTION {self.name}() RETURNS int LANGUAGE no_such AS ''"

    monkeypatch.setattr(cycle, "Cycle", Refused)
    caplog.set_level(logging.WARNING, logger="scheduler_core.store")
    with queued(tmp_path, 10) as svc:
        work_through(svc, 10)
    warnings = [r for r in caplog.records if "cycle_function_unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_a_function_dropped_while_a_job_runs_is_made_again_and_the_end_written_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scheduler_core")
    ran: list[int] = []
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **TEST_SETTINGS) as svc,
    ):

        def job(params: dict[str, Any]) -> None:
            ran.append(params["n"])
            if params["n"] == 5:  # the function exists by now: the ends before used it

                def drop(conn: sa.Connection) -> None:
                    (name,) = cycle_functions(conn)
                    conn.exec_driver_sql(f"DROP FUNCTION {name}")

                svc.db.write(drop)

        svc.register("a", job)
        for n in range(10):
            svc.enqueue_job("a", {"n": n})
        work_through(svc, 10)
        assert sorted(ran) == list(range(10))
        assert len(svc.db.read(cycle_functions)) == 1
    retried = [r for r in caplog.records if "action=db_retry" in r.getMessage()]
    assert len(retried) == 1 and "llmsched_cycle_" in retried[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_function_runs_the_end_with_its_dispatch_lock_then_the_heads_then_the_start(
    tmp_path: Path,
) -> None:
    """The order that keeps a reservation from slipping between an end and the claim
    after it (test_rules_direct.py watches it on Python's path): the end statement takes
    the shared dispatch lock, and the heads, a later statement, read after it."""
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **TEST_SETTINGS) as svc,
    ):
        made = cycle.Cycle(
            svc.db.engine.dialect,
            reads=svc.store.plugins.end_reads("postgresql"),
            writes=svc.store.plugins.end_writes("postgresql"),
            n_types=1,
            bindings=(),
            log_name="{job_type}-{job_id}-{attempt}",
        )
    body = made.create
    lock = body.index("pg_advisory_xact_lock_shared(")
    assert body.index("UPDATE job_run") < lock < body.index("FOR UPDATE SKIP LOCKED")
    assert body.index("FOR UPDATE SKIP LOCKED") < body.index("INSERT INTO job_run")


def test_a_capped_head_whose_slot_is_full_is_passed_over_for_the_next(
    tmp_path: Path, calls: Calls
) -> None:
    """Two slots; one runs the only job the capped class may run. The other slot's ends
    pass over the queued job of that class, first in line, to the uncapped ones (the
    heads offer no job of a full slot), and the capped job runs only after the first one
    ended."""
    release = threading.Event()
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **TEST_SETTINGS) as svc,
    ):
        svc.set_resource_limit("one", 1)

        def capped_job(params: dict[str, Any]) -> None:
            if params["n"] == 0:
                release.wait(30)

        svc.register("c", capped_job, resource="one")
        svc.register("a", fails)
        first = svc.enqueue_job("c", {"n": 0}, priority=9)
        svc.start(concurrency=2)
        try:
            wait_for(lambda: svc.get_job(first.job_id or 0).status == JobStatus.RUNNING)
            second = svc.enqueue_job("c", {"n": 1}, priority=9)
            for n in range(6):
                svc.enqueue_job("a", {"n": n})
            wait_for(
                lambda: len(svc.list_jobs(status=JobStatus.COMPLETED, job_type="a")) == 6,
                timeout=30,
                what="the uncapped jobs, past the full slot",
            )
            assert svc.get_job(second.job_id or 0).status == JobStatus.QUEUED
            release.set()
            wait_for(
                lambda: svc.get_job(second.job_id or 0).status == JobStatus.COMPLETED,
                timeout=30,
                what="the second capped job",
            )
        finally:
            release.set()
            svc.stop(timeout=10)
        first_run = svc.get_job_run_for_job(first.job_id or 0)
        second_run = svc.get_job_run_for_job(second.job_id or 0)
        assert first_run and second_run and first_run.finished_at and second_run.started_at
        assert second_run.started_at >= first_run.finished_at
    assert "alone" in calls and set(calls) <= {"alone", "ended", "function", "capped"}


def test_a_capped_slot_found_full_after_its_lock_hands_the_claim_to_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: Calls
) -> None:
    """The heads saw room, and another worker filled the slot before the function locked
    it (made here by the capped start after the first end finding it full): Python's
    claim goes on from the heads, as it would have without the function, and every job
    runs once."""
    starts: list[int] = []
    start_with_run = CycleStore._start_with_run

    def full_once(self: CycleStore, conn: Any, job: Any, **kwargs: Any) -> Any:
        starts.append(job.job_id)
        if len(starts) == 2:  # the first start after an end: the dispatcher made the first
            return None
        return start_with_run(self, conn, job, **kwargs)

    monkeypatch.setattr(CycleStore, "_start_with_run", full_once)
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **TEST_SETTINGS) as svc,
    ):
        svc.set_resource_limit("one", 1)
        svc.register("c", fails, resource="one")
        for n in range(4):
            svc.enqueue_job("c", {"n": n})
        work_through(svc, 4)
        runs = [svc.get_job_run_for_job(j.job_id or 0) for j in svc.list_jobs()]
    # The refused one, the capped starts after it, the last end with nothing to claim.
    assert calls == ["python", "capped", "capped", "function"]
    assert starts[1] == starts[2]  # the same head, started by Python's claim
    assert all(r is not None and r.status.value == "COMPLETED" for r in runs)


class Writes(Plugin):
    """Writes a row at every run's end, and does not say when it does not: its ends are
    never made alone."""

    def on_terminal_run_in_tx(self, conn: sa.Connection, job: Job, run: JobRun) -> None:
        conn.exec_driver_sql(f"INSERT INTO ended_seen VALUES ({job.job_id})")


class Notes(Plugin):
    """Notes each end in its transaction and collects the notes once it committed, as
    flows/prefect_sync.py does; writes nothing."""

    def __init__(self) -> None:
        self.published: list[int] = []

    def writes_with_end(self, dialect: str) -> bool:
        return False

    def on_terminal_run_in_tx(self, conn: sa.Connection, job: Job, run: JobRun) -> None:
        conn.info.setdefault("notes", []).append(job.job_id)

    def after_write(self, conn: sa.Connection, committed: bool) -> None:
        notes = conn.info.pop("notes", [])
        if committed:
            self.published += notes


def test_an_enabled_webhook_endpoint_keeps_each_end_in_a_transaction_with_its_event(
    tmp_path: Path, calls: Calls
) -> None:
    """An end whose event is written in its transaction is not made alone: the one call
    that tried raised before writing, and every later one went to the transaction."""
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **TEST_SETTINGS) as svc,
    ):
        install_webhooks(svc, **LOCAL_RECEIVERS)
        add_webhook_endpoint(svc, "http://127.0.0.1:9/hook")  # nothing listens: kept
        svc.register("a", fails)
        for n in range(12):
            svc.enqueue_job("a", {"n": n})
        work_through(svc, 12)
        events = svc.db.read(
            lambda c: c.execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar_one()
        )
    assert events == 12
    assert "alone" not in calls and calls.refused <= 1


def test_a_plugin_that_writes_at_the_end_keeps_every_end_in_its_transaction(
    tmp_path: Path, calls: Calls
) -> None:
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **TEST_SETTINGS) as svc,
    ):
        svc.db.write(lambda c: c.exec_driver_sql("CREATE TABLE ended_seen (job_id int)"))
        svc.add_plugin(Writes())
        svc.register("a", fails)
        ids = sorted(svc.enqueue_job("a", {"n": n}).job_id or 0 for n in range(10))
        work_through(svc, 10)
        seen = svc.db.read(lambda c: c.exec_driver_sql("SELECT job_id FROM ended_seen").all())
    assert sorted(r[0] for r in seen) == ids
    assert "alone" not in calls and calls.refused == 0 and "function" in calls


def test_a_plugin_that_only_notes_sees_its_ends_made_alone_as_committed(
    tmp_path: Path, calls: Calls
) -> None:
    notes = Notes()
    with (
        fresh_database("postgres", tmp_path) as url,
        SchedulerService.open(url, **TEST_SETTINGS) as svc,
    ):
        svc.add_plugin(notes)
        svc.register("a", fails)
        ids = sorted(svc.enqueue_job("a", {"n": n}).job_id or 0 for n in range(10))
        work_through(svc, 10)
    assert sorted(notes.published) == ids
    assert calls.count("alone") >= 8 and calls.refused <= 1  # the first: it made the function
