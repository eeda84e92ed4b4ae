"""submit, jobs, show, cancel, retry: output, --json shapes, exit codes, error lines."""

from __future__ import annotations

import pytest

from scheduler_core import JobStatus, SchedulerService
from tests.cli.conftest import CLI, drain
from tests.support import RUN_KEYS

UNREACHABLE = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}  # nothing listens on port 9

JOB_KEYS = {
    "job_id",
    "job_type",
    "status",
    "params",
    "priority",
    "resource",
    "slot",
    "attempt",
    "max_retries",
    "retry_of",
    "group_id",
    "sequence",
    "held",
    "origin",
    "key",
    "external_id",
    "worker_id",
    "not_before",
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
}


def test_submit_parses_params_and_validates_against_the_flow(
    cli: CLI, setup_svc: SchedulerService
) -> None:
    text, as_json, research = cli.many(
        [
            ["submit", "story", "theme=a city of bridges", "length=300", "--priority", "5"],
            [
                "submit",
                "story",
                "--params-json",
                '{"theme": "tides", "genre": "drama", "length": 100}',
                "length=250",
                "--model",
                "openai/gpt-4o-mini",
                "--max-retries",
                "1",
                "--json",
            ],
            ["submit", "research", "topic=tidal energy", 'tags=["energy","ocean"]', "--json"],
        ]
    )
    assert text.code == 0, text
    assert text.stdout.startswith("queued job ") and "priority 5" in text.stdout
    assert text.stderr == ""  # importing the flows to validate stays quiet

    job = as_json.json()
    assert set(job) == JOB_KEYS
    assert job["params"] == {
        "theme": "tides",
        "genre": "drama",
        "length": 250,  # key=value overrides --params-json, parsed as JSON (a number)
        "model": "openai/gpt-4o-mini",
    }
    assert (job["status"], job["resource"], job["max_retries"]) == ("QUEUED", "external", 1)
    assert as_json.stderr == ""
    card = research.json()
    assert card["params"] == {"topic": "tidal energy", "tags": ["energy", "ocean"]}
    assert card["resource"] == "local"  # the offline default model

    stored = {j.job_id: j for j in setup_svc.list_jobs()}
    assert stored[job["job_id"]].params == job["params"]
    first = next(j for j in stored.values() if j.priority == 5)
    assert first.params == {"theme": "a city of bridges", "length": 300}


@pytest.mark.sqlite_only  # refused before any write: the backend plays no part
def test_submit_queues_quietly_while_the_prefect_api_is_unreachable(
    cli: CLI, setup_svc: SchedulerService
) -> None:
    """The queue is the scheduler's database: a Prefect server that is down (or not
    there) never keeps work from being queued."""
    queued = cli("submit", "story", "theme=a night without a server", env=UNREACHABLE)
    assert queued.code == 0, queued
    assert queued.stdout.startswith("queued job ") and queued.stderr == ""
    (job,) = setup_svc.list_jobs()
    assert (job.job_type, job.status, job.params) == (
        "story",
        JobStatus.QUEUED,
        {"theme": "a night without a server"},
    )


def test_submit_refuses_bad_input_with_one_error_line(
    cli: CLI, setup_svc: SchedulerService
) -> None:
    results = cli.many(
        [
            ["submit", "poem", "theme=x"],
            ["submit", "story", "theme=x", "length=abc"],
            ["submit", "story", "theme=x", "--params-json", "{bad json"],
            ["submit", "story", "theme=x", "--params-json", "[1, 2]"],
            ["submit", "story", "theme"],
            ["submit", "story", "theme=x", "colour=red"],
            ["submit", "story", "theme=x", "--priority", "high"],
        ]
    )
    expected = [
        "unknown job type 'poem'; known: research, story",
        "length: Input should be a valid integer",
        "--params-json is not valid JSON",
        "--params-json must be a JSON object",
        "expected KEY=VALUE",
        "colour",
        "Invalid value for '--priority'",
    ]
    for result, fragment in zip(results, expected, strict=True):
        assert result.code == 2, result
        assert fragment in result.error, result
        assert result.stdout == ""
    assert setup_svc.list_jobs() == []  # nothing was written


def test_jobs_lists_and_filters(cli: CLI, setup_svc: SchedulerService) -> None:
    a = setup_svc.enqueue_job("story", {"theme": "alpha"}, priority=1)
    b = setup_svc.enqueue_job("research", {"topic": "beta"})
    c = setup_svc.enqueue_job("story", {"theme": "gamma"})
    setup_svc.cancel_job(c.job_id or 0)
    group, members = setup_svc.create_job_group(
        [{"job_type": "story", "params": {"theme": "g1"}}], name="g"
    )
    table, everything, stories, cancelled, in_group, newest, bad = cli.many(
        [
            ["jobs"],
            ["jobs", "--json"],
            ["jobs", "--type", "story", "--json"],
            ["jobs", "--status", "cancelled", "--json"],
            ["jobs", "--group", str(group.group_id), "--json"],
            ["jobs", "--limit", "2", "--json"],
            ["jobs", "--status", "sleeping"],
        ]
    )
    assert table.code == 0, table
    header, *rows = table.stdout.strip().splitlines()
    assert header.split()[:3] == ["id", "type", "status"]
    assert [r.split()[:3] for r in rows] == [
        [str(a.job_id), "story", "QUEUED"],
        [str(b.job_id), "research", "QUEUED"],
        [str(c.job_id), "story", "CANCELLED"],
        [str(members[0].job_id), "story", "QUEUED"],
    ]
    assert '{"theme":"alpha"}' in rows[0]
    listed = everything.json()
    assert [j["job_id"] for j in listed] == [a.job_id, b.job_id, c.job_id, members[0].job_id]
    assert all(set(j) == JOB_KEYS for j in listed)
    assert [j["job_id"] for j in stories.json()] == [a.job_id, c.job_id, members[0].job_id]
    assert [j["job_id"] for j in cancelled.json()] == [c.job_id]
    assert [(j["job_id"], j["sequence"]) for j in in_group.json()] == [(members[0].job_id, 0)]
    assert [j["job_id"] for j in newest.json()] == [c.job_id, members[0].job_id]
    assert bad.code == 2 and "unknown job status" in bad.error


def test_show_a_job_with_its_run_and_retry_chain(cli: CLI, setup_svc: SchedulerService) -> None:
    first = setup_svc.enqueue_job("story", {"theme": "t", "fail": "once"}, max_retries=1)
    drain(setup_svc)  # attempt 1 fails, attempt 2 (an automatic retry) fails too
    chain = setup_svc.get_retry_chain(first.job_id or 0)
    assert [j.status for j in chain] == [JobStatus.FAILED, JobStatus.FAILED]
    second = chain[1]
    queued = setup_svc.enqueue_job("research", {"topic": "q"})

    shown, text, pending, missing = cli.many(
        [
            ["show", str(second.job_id), "--json"],
            ["show", str(first.job_id)],
            ["show", str(queued.job_id), "--json"],
            ["show", "9999"],
        ]
    )
    data = shown.json()
    assert set(data) == {"job", "run", "retry_chain"}
    assert set(data["job"]) == JOB_KEYS and set(data["run"]) == RUN_KEYS
    assert data["job"]["attempt"] == 2 and data["job"]["retry_of"] == first.job_id
    run = data["run"]
    assert run["status"] == "FAILED" and run["error"] and "boom: once" in run["error"]
    assert run["exit_code"] is not None and run["finished_at"] and run["log_path"]
    assert [(c["job"]["job_id"], c["run"]["status"]) for c in data["retry_chain"]] == [
        (first.job_id, "FAILED"),
        (second.job_id, "FAILED"),
    ]

    assert text.code == 0, text
    out = text.stdout
    assert out.startswith(f"job {first.job_id}  story  FAILED")
    assert "boom: once" in out and "retry chain (2 jobs)" in out and "log" in out

    empty = pending.json()
    assert empty["run"] is None and len(empty["retry_chain"]) == 1
    assert missing.code == 2 and missing.error == "error: job 9999 does not exist"


def test_cancel_a_queued_job_and_refuse_the_rest(cli: CLI, setup_svc: SchedulerService) -> None:
    queued = setup_svc.enqueue_job("story", {"theme": "q"})
    other = setup_svc.enqueue_job("story", {"theme": "r"})
    done = setup_svc.enqueue_job("research", {"topic": "d"}, priority=9)
    setup_svc.dispatch_one()  # runs `done` (highest priority)
    cancelled, as_json = cli.many(
        [["cancel", str(queued.job_id)], ["cancel", str(other.job_id), "--json"]]
    )
    again, ended, missing, not_int = cli.many(
        [
            ["cancel", str(other.job_id)],
            ["cancel", str(done.job_id)],
            ["cancel", "777"],
            ["cancel", "abc"],
        ]
    )
    assert cancelled.code == 0 and cancelled.stdout == f"cancelled job {queued.job_id}\n"
    assert as_json.json()["status"] == "CANCELLED"
    assert setup_svc.get_job(queued.job_id or 0).status == JobStatus.CANCELLED
    # Cancelling twice or after the end is refused: exit 2 with the reason. (Cancelling
    # a RUNNING job is refused the same way: tests/cli/test_worker_cli.py.)
    assert again.code == 2 and "CANCELLED and cannot be cancelled" in again.error
    assert ended.code == 2 and "COMPLETED and cannot be cancelled" in ended.error
    assert missing.code == 2 and missing.error == "error: job 777 does not exist"
    assert not_int.code == 2 and "Invalid value for 'job_id'" in not_int.error


def test_priority_of_a_queued_job(cli: CLI, setup_svc: SchedulerService) -> None:
    first = setup_svc.enqueue_job("story", {"theme": "first"})
    second = setup_svc.enqueue_job("story", {"theme": "second"})
    done = setup_svc.enqueue_job("research", {"topic": "d"}, priority=9)
    setup_svc.dispatch_one()  # runs `done` (highest priority)
    # A negative value follows `--`, which ends the options (--db goes before it).
    lowered = cli(
        *("priority", "--db", cli.db_url, str(first.job_id), "--json", "--", "-3"), db=False
    )
    raised, ended, missing, too_big = cli.many(
        [
            ["priority", str(second.job_id), "5"],
            ["priority", str(done.job_id), "1"],
            ["priority", "777", "1"],
            ["priority", str(first.job_id), str(2**31)],
        ]
    )
    assert raised.code == 0 and raised.stdout == f"job {second.job_id} now has priority 5\n"
    assert lowered.json()["priority"] == -3
    assert [j.job_id for j in setup_svc.list_queued_jobs()] == [second.job_id, first.job_id]
    assert ended.code == 2 and ended.error == (
        f"error: job {done.job_id} is COMPLETED: its priority can only change while it is "
        "QUEUED (INV-001)"
    )
    assert missing.code == 2 and missing.error == "error: job 777 does not exist"
    assert too_big.code == 2 and "priority (higher runs first)" in too_big.error
    assert setup_svc.get_job(first.job_id or 0).priority == -3


def test_retry_a_failed_run(cli: CLI, setup_svc: SchedulerService) -> None:
    failed = setup_svc.enqueue_job("story", {"theme": "f", "fail": "always"}, max_retries=0)
    ok = setup_svc.enqueue_job("story", {"theme": "fine"})
    drain(setup_svc)
    failed_run = setup_svc.get_job_run_for_job(failed.job_id or 0)
    ok_run = setup_svc.get_job_run_for_job(ok.job_id or 0)
    assert failed_run is not None and ok_run is not None

    text = cli("retry", str(failed_run.run_id))
    assert text.code == 0, text
    new_id = int(text.stdout.split()[2])
    assert text.stdout == (f"queued job {new_id} (attempt 2, retry of job {failed.job_id})\n")
    again, refused, missing = cli.many(
        [
            ["retry", str(failed_run.run_id), "--json"],
            ["retry", str(ok_run.run_id)],
            ["retry", "4242"],
        ]
    )
    second = again.json()
    assert second["retry_of"] == failed.job_id and second["status"] == "QUEUED"
    assert refused.code == 2 and "only a FAILED or CANCELLED run can be retried" in refused.error
    assert missing.code == 2 and missing.error == "error: job run 4242 does not exist"
    chain = setup_svc.get_retry_chain(failed.job_id or 0)
    assert [j.job_id for j in chain] == [failed.job_id, new_id, second["job_id"]]
