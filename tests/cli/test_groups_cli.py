"""group submit / show / cancel, and group files that are not valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler_core import JobGroupStatus, JobStatus, SchedulerService
from tests.cli.conftest import CLI

GROUP_KEYS = {
    "group_id",
    "name",
    "status",
    "size",
    "origin",
    "key",
    "cancel_requested",
    "created_at",
    "started_at",
    "finished_at",
}


def test_group_submit_from_yaml_and_json(
    cli: CLI, setup_svc: SchedulerService, tmp_path: Path
) -> None:
    yaml_file = tmp_path / "nightly.yaml"
    yaml_file.write_text(
        "name: nightly\n"
        "jobs:\n"
        "  - job_type: story\n"
        "    params: {theme: dawn, length: 300}\n"
        "    priority: 2\n"
        "  - job_type: research\n"
        "    params:\n"
        "      topic: tides\n"
        "      tags: [ocean]\n"
    )
    json_file = tmp_path / "batch.json"
    json_file.write_text(json.dumps({"jobs": [{"job_type": "story", "params": {"theme": "x"}}]}))
    text, as_json, renamed = cli.many(
        [
            ["group", "submit", str(yaml_file)],
            ["group", "submit", str(json_file), "--json"],
            ["group", "submit", str(yaml_file), "--name", "adhoc", "--json"],
        ]
    )
    assert text.code == 0, text
    assert text.stdout.startswith("queued group ") and "'nightly': 2 jobs" in text.stdout
    assert text.stderr == ""
    data = as_json.json()
    assert set(data) == {"group", "jobs"} and set(data["group"]) == GROUP_KEYS
    assert data["group"]["name"] == "batch"  # no name in the file: the file's stem
    assert [j["params"] for j in data["jobs"]] == [{"theme": "x"}]
    adhoc = renamed.json()
    assert adhoc["group"]["name"] == "adhoc" and adhoc["group"]["size"] == 2
    assert [(j["job_type"], j["sequence"], j["priority"]) for j in adhoc["jobs"]] == [
        ("story", 0, 2),
        ("research", 1, 0),
    ]
    assert adhoc["jobs"][1]["params"] == {"topic": "tides", "tags": ["ocean"]}
    members = setup_svc.list_jobs(group_id=adhoc["group"]["group_id"])
    assert [m.job_type for m in members] == ["story", "research"]


@pytest.mark.sqlite_only  # refused before any write: the backend plays no part
def test_group_files_that_are_not_valid(
    cli: CLI, setup_svc: SchedulerService, tmp_path: Path
) -> None:
    files = {
        "missing.yaml": None,
        "broken.yaml": "jobs: [unclosed\n",
        "broken.json": '{"jobs": [',
        "list.yaml": "- job_type: story\n",
        "empty.yaml": "name: nothing\njobs: []\n",
        "extra.yaml": "name: n\nowner: me\njobs: [{job_type: story, params: {theme: x}}]\n",
        "jobkey.yaml": "jobs: [{job_type: story, params: {theme: x}, retries: 2}]\n",
        "type.yaml": "jobs:\n  - {job_type: story, params: {theme: x}}\n  - {job_type: poem}\n",
        "params.yaml": "jobs: [{job_type: story, params: {theme: x, length: lots}}]\n",
        "binary.yaml": b"\xff\xfe\x00\x01",
    }
    for name, content in files.items():
        if isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        elif content is not None:
            (tmp_path / name).write_text(content)
    results = cli.many([["group", "submit", str(tmp_path / name)] for name in files])
    expected = {
        "missing.yaml": "cannot be read: No such file or directory",
        "broken.yaml": "not valid YAML or JSON at line 2",
        "broken.json": "not valid JSON",
        "list.yaml": "expected a mapping with 'jobs'",
        "empty.yaml": "'jobs' must be a non-empty list",
        "extra.yaml": "unknown keys ['owner']",
        "jobkey.yaml": "jobs[0] has unknown keys ['retries']",
        "type.yaml": "jobs[1]: unknown job type 'poem'; known: research, story",
        "params.yaml": "jobs[0]: params for job type 'story' are invalid",
        "binary.yaml": "not a text file",
    }
    for name, result in zip(files, results, strict=True):
        assert result.code == 2, result
        assert result.error.startswith(f"error: group file '{tmp_path / name}': "), result
        assert expected[name] in result.error, result
    assert setup_svc.list_jobs() == []


def test_group_show_and_cancel(cli: CLI, setup_svc: SchedulerService) -> None:
    group, _ = setup_svc.create_job_group(
        [
            {"job_type": "story", "params": {"theme": "one"}},
            {"job_type": "story", "params": {"theme": "two", "fail": "bad"}, "max_retries": 0},
            {"job_type": "story", "params": {"theme": "three"}},
        ],
        name="trio",
    )
    setup_svc.dispatch_one()  # member 0 completes
    setup_svc.dispatch_one()  # member 1 fails: member 2 is skipped, the group is PARTIAL
    other, _ = setup_svc.create_job_group(
        [{"job_type": "research", "params": {"topic": t}} for t in ("a", "b")], name="pair"
    )
    gid, oid = str(group.group_id), str(other.group_id)
    shown, text, missing = cli.many(
        [["group", "show", gid, "--json"], ["group", "show", gid], ["group", "show", "999"]]
    )
    data = shown.json()
    assert set(data) == {"group", "jobs"} and data["group"]["status"] == "PARTIAL"
    assert [(m["job"]["status"], (m["run"] or {}).get("status")) for m in data["jobs"]] == [
        ("COMPLETED", "COMPLETED"),
        ("FAILED", "FAILED"),
        ("SKIPPED", "SKIPPED"),
    ]
    assert text.code == 0 and text.stdout.startswith(f"group {gid} 'trio'  PARTIAL")
    assert "boom: bad" in text.stdout
    assert missing.code == 2 and missing.error == "error: job group 999 does not exist"

    cancelled, ended, unknown = cli.many(
        [["group", "cancel", oid], ["group", "cancel", gid], ["group", "cancel", "999"]]
    )
    assert cancelled.code == 0, cancelled
    assert cancelled.stdout == f"group {oid}: 2 member(s) cancelled; group is CANCELLED\n"
    assert setup_svc.get_job_group(other.group_id or 0).status == JobGroupStatus.CANCELLED
    assert {j.status for j in setup_svc.list_jobs(group_id=other.group_id)} == {JobStatus.CANCELLED}
    assert ended.code == 0 and "already ended PARTIAL" in ended.stdout
    assert unknown.code == 2 and unknown.error == "error: job group 999 does not exist"
    again = cli("group", "cancel", oid, "--json").json()
    assert set(again) == GROUP_KEYS and again["status"] == "CANCELLED"


def test_submissions_with_a_key_queue_once(
    cli: CLI, setup_svc: SchedulerService, tmp_path: Path
) -> None:
    group_file = tmp_path / "nightly.yaml"
    group_file.write_text("jobs:\n  - job_type: story\n    params: {theme: dawn}\n")
    first, again = (cli("group", "submit", str(group_file), "--key", "night-1") for _ in range(2))
    assert first.stdout.startswith("queued group "), first
    (job,) = setup_svc.list_jobs()
    assert again.code == 0 and again.stdout == (
        f"group {job.group_id} 'nightly' was queued with key 'night-1' before (QUEUED; jobs "
        f"{job.job_id}): nothing queued\n"
    )
    single = [cli("submit", "story", "theme=dusk", "--key", "dusk-1") for _ in range(2)]
    assert single[0].stdout.startswith("queued job ")
    job_id = int(single[0].stdout.split()[2])
    assert single[1].stdout == (
        f"job {job_id} was queued with key 'dusk-1' before (QUEUED): nothing queued\n"
    )
    other = cli("submit", "story", "theme=other", "--key", "dusk-1")
    assert other.code == 2 and other.error == (
        f"error: key 'dusk-1' already names job {job_id} (story) with other params; use a new "
        "key for different work"
    )
    assert len(setup_svc.list_jobs()) == 2
