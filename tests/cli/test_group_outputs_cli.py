"""Group files whose members use an earlier member's outputs (`name` + `{"$outputs": name}`):
checked at `llmsched group submit` by the pipelines' own validators, shown as stored by
`llmsched show`, resolved when the member starts, also as a Prefect flow run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler_core import JobGroupStatus, JobRunStatus, SchedulerService
from tests.cli.conftest import CLI, ROOT, cli_env, drain
from tests.conftest import TEST_SETTINGS, wait_for
from tests.scheduler.rules_support import count_rows
from tests.support import terminate

GROUP = """\
name: card-then-follow-up
jobs:
  - job_type: research
    name: card
    params: {topic: tides, output_dir: OUT}
  - job_type: research
    params:
      topic: tidal energy
      tags: {$outputs: card}
      output_dir: OUT
"""


def group_file(tmp_path: Path, text: str, name: str = "group.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("OUT", str(tmp_path / "out")))
    return path


def test_a_group_file_passes_a_members_outputs_to_a_later_member(
    cli: CLI, db_url: str, tmp_path: Path
) -> None:
    submitted = cli("group", "submit", str(group_file(tmp_path, GROUP)), "--json")
    data = submitted.json()
    follow_up = data["jobs"][1]
    assert follow_up["params"]["tags"] == {"$outputs": "card", "member": 0}
    shown = cli("show", str(follow_up["job_id"]), "--json").json()
    assert shown["job"]["params"]["tags"] == {"$outputs": "card", "member": 0}
    assert shown["run"] is None

    received: list[dict[str, Any]] = []

    def research(params: dict[str, Any]) -> list[str]:
        received.append(params)
        return [f"{params['output_dir']}/{params['topic']}.json"]

    with SchedulerService.open(db_url, **TEST_SETTINGS) as svc:
        svc.register("research", research, resource="external")
        assert drain(svc) == 2
        run = svc.get_job_run_for_job(follow_up["job_id"])
        status = svc.get_job_group(data["group"]["group_id"]).status
    card = [f"{tmp_path / 'out'}/tides.json"]
    assert received[1]["tags"] == card
    assert run is not None and run.params_snapshot["tags"] == card
    assert status == JobGroupStatus.COMPLETED


def member(job_type: str, params: str, name: str | None = None) -> str:
    named = f"    name: {name}\n" if name is not None else ""
    return f"  - job_type: {job_type}\n{named}    params: {params}\n"


BAD = {
    "unknown.yaml": (
        GROUP.replace("$outputs: card", "$outputs: cart"),
        "jobs[1]: params.tags refers to the outputs of 'cart', but no member of the group has "
        "that name (names: card); give the producing member name: <label>",
    ),
    "later.yaml": (
        "jobs:\n"
        + member("research", "{topic: a, tags: {$outputs: next}}")
        + member("research", "{topic: b}", name="next"),
        "jobs[0]: params.tags refers to the outputs of 'next', which does not come before "
        "this member: a member may use only the outputs of members before it (reorder the jobs)",
    ),
    "self.yaml": (
        "jobs:\n" + member("research", "{topic: a, tags: {$outputs: me}}", name="me"),
        "jobs[0]: params.tags refers to the outputs of 'me', this member itself",
    ),
    "str.yaml": (
        "jobs:\n"
        + member("research", "{topic: a}", name="card")
        + member("story", "{theme: {$outputs: card}}"),
        "jobs[1]: params for job type 'story' are invalid: ",
    ),
    "name.yaml": (
        "jobs:\n" + member("research", "{topic: a}", name="[card]"),
        "jobs[0]: name must be 1-64 letters, digits or _ . -, starting with a letter or digit "
        "(e.g. research), got ['card']",
    ),
}


@pytest.mark.sqlite_only  # refused before any write: the backend plays no part
def test_bad_references_in_a_group_file_are_refused_with_one_line(
    cli: CLI, setup_svc: SchedulerService, tmp_path: Path
) -> None:
    files = {name: group_file(tmp_path, text, name) for name, (text, _) in BAD.items()}
    before = count_rows(setup_svc)
    results = cli.many([["group", "submit", str(path)] for path in files.values()])
    for (name, (_, expected)), result in zip(BAD.items(), results, strict=True):
        assert result.code == 2, result
        assert result.error.startswith(f"error: group file {str(files[name])!r}: {expected}")
        assert result.stdout == ""
    assert "theme" in results[3].error and "valid string" in results[3].error
    assert count_rows(setup_svc) == before


@pytest.fixture
def worker(prefect_api: str, db_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmsched", "worker", "--db", db_url],
        cwd=ROOT,
        env=cli_env(LLMSCHED_HEARTBEAT_INTERVAL="0.5"),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    yield proc
    terminate(proc)


@pytest.mark.sqlite_only  # a real worker and Prefect; the backends are covered in-process
def test_the_pipelines_flow_run_receives_the_outputs(
    cli: CLI,
    setup_svc: SchedulerService,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    submitted = cli("group", "submit", str(group_file(tmp_path, GROUP)), "--json").json()
    group_id = submitted["group"]["group_id"]

    def ended() -> bool:
        if worker.poll() is not None:
            raise AssertionError((tmp_path / "worker.log").read_text())
        return setup_svc.get_job_group(group_id).status.is_terminal

    wait_for(ended, timeout=120, what="the group to end")
    card, follow_up = (setup_svc.get_job_run_for_job(j["job_id"]) for j in submitted["jobs"])
    assert card is not None and follow_up is not None
    assert (card.status, follow_up.status) == (JobRunStatus.COMPLETED, JobRunStatus.COMPLETED)
    assert follow_up.params_snapshot["tags"] == card.artifacts
    assert follow_up.flow_run_id is not None
    written = json.loads(Path(follow_up.artifacts[0]).read_text())
    assert written["tags"] == card.artifacts  # the flow run got the card's path
