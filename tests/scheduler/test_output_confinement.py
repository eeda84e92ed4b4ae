"""Where pipeline outputs may go, through the public API and at run time.

At enqueue, a story or research job whose `output_dir` points outside the artifacts
directory is refused before anything is written. At run time the directory is checked
again with symlinks resolved, so a link inside the artifacts directory that leads out
is refused before anything is created or written through it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.outputs import OUTPUT_ROOTS_ENV, artifacts_dir, prepare_output_dir
from flows.pipelines import install_pipelines
from flows.tasks import output_root, write_output
from scheduler_core import SchedulerService
from scheduler_core.errors import InvalidParamsError, OutputDirError

pytestmark = pytest.mark.usefixtures("no_extra_roots")


@pytest.fixture
def no_extra_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OUTPUT_ROOTS_ENV, raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # queued jobs stay local


@pytest.fixture
def pipelines(open_service: Callable[..., SchedulerService]) -> SchedulerService:
    svc = open_service()
    install_pipelines(svc)
    return svc


@pytest.mark.parametrize(
    ("job_type", "params"),
    [
        ("story", {"theme": "t", "output_dir": "/etc/cron.d"}),
        ("story", {"theme": "t", "output_dir": "../../.ssh"}),
        ("story", {"theme": "t", "output_dir": "~root"}),
        ("story", {"theme": "t", "output_dir": "n" * 256}),
        ("research", {"topic": "t", "output_dir": "/tmp"}),
        ("research", {"topic": "t", "output_dir": "cards/../../.."}),
    ],
)
def test_enqueue_refuses_an_output_dir_outside_and_writes_nothing(
    pipelines: SchedulerService, job_type: str, params: dict[str, str]
) -> None:
    with pytest.raises(OutputDirError) as caught:
        pipelines.enqueue_job(job_type, params)
    assert isinstance(caught.value, InvalidParamsError)
    assert "output_dir" in str(caught.value)
    assert pipelines.list_jobs() == []


def test_a_group_with_one_bad_output_dir_queues_nothing(pipelines: SchedulerService) -> None:
    jobs = [
        {"job_type": "story", "params": {"theme": "fine", "output_dir": "stories"}},
        {"job_type": "story", "params": {"theme": "bad", "output_dir": "/var/tmp"}},
    ]
    with pytest.raises(OutputDirError, match=re.escape("output_dir '/var/tmp' is outside")):
        pipelines.create_job_group(jobs=jobs, name="mixed")
    assert pipelines.list_jobs() == []


def test_a_params_update_cannot_move_the_output_outside(pipelines: SchedulerService) -> None:
    job = pipelines.enqueue_job("story", {"theme": "t", "output_dir": "stories"})
    assert job.job_id is not None
    with pytest.raises(OutputDirError):
        pipelines.update_job_params(job.job_id, {"theme": "t", "output_dir": "/etc"})
    assert pipelines.get_job(job.job_id).params["output_dir"] == "stories"


def test_enqueue_accepts_a_directory_inside_and_an_allowed_root(
    pipelines: SchedulerService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inside = pipelines.enqueue_job("story", {"theme": "t", "output_dir": "stories/nightly"})
    absolute = str(artifacts_dir() / "cards")
    research = pipelines.enqueue_job("research", {"topic": "t", "output_dir": absolute})
    assert [inside.params["output_dir"], research.params["output_dir"]] == [
        "stories/nightly",
        absolute,
    ]
    shared = tmp_path / "shared"
    with pytest.raises(OutputDirError, match=OUTPUT_ROOTS_ENV):
        pipelines.enqueue_job("story", {"theme": "t", "output_dir": str(shared)})
    monkeypatch.setenv(OUTPUT_ROOTS_ENV, str(shared))
    allowed = pipelines.enqueue_job("story", {"theme": "t", "output_dir": str(shared / "x")})
    assert allowed.params["output_dir"] == str(shared / "x")
    assert not shared.exists()  # enqueue reads and creates nothing


def test_the_run_writes_into_a_private_directory_inside() -> None:
    directory = output_root("stories/nightly")
    assert directory == artifacts_dir().resolve() / "stories" / "nightly"
    path = write_output(directory, kind="story", about="a harbour", suffix="md", text="# t\n")
    assert path.parent == directory and path.read_text() == "# t\n"


def test_a_symlink_inside_the_artifacts_directory_that_leads_out_is_refused(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    artifacts = artifacts_dir()
    artifacts.mkdir(parents=True)
    (artifacts / "link").symlink_to(outside)
    (artifacts / "nested").mkdir()
    (artifacts / "nested" / "up").symlink_to("../../..")  # relative, leading out too
    for value in ("link", "link/new/deeper", "nested/up", "nested/up/x", str(artifacts / "link")):
        with pytest.raises(OutputDirError, match="symbolic link") as caught:
            prepare_output_dir(value)
        assert OUTPUT_ROOTS_ENV in str(caught.value)
    assert list(outside.iterdir()) == []  # nothing was created through the link


def test_an_artifacts_directory_that_is_itself_a_link_is_the_operators_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The artifacts directory (or the data directory) may be a symlink the operator
    made, say onto a bigger disk: what lies under its target is inside."""
    disk = tmp_path / "big-disk"
    disk.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / "artifacts").symlink_to(disk)
    monkeypatch.setenv("LLMSCHED_HOME", str(home))
    assert prepare_output_dir("stories") == disk / "stories"
    assert prepare_output_dir(str(disk / "cards")) == disk / "cards"


def test_a_symlink_that_stays_inside_is_followed() -> None:
    artifacts = artifacts_dir()
    (artifacts / "real").mkdir(parents=True)
    (artifacts / "alias").symlink_to("real")
    assert prepare_output_dir("alias/x") == artifacts.resolve() / "real" / "x"


def test_a_file_on_the_way_is_refused() -> None:
    artifacts = artifacts_dir()
    artifacts.mkdir(parents=True)
    (artifacts / "taken").write_text("not a directory")
    with pytest.raises(OutputDirError, match="not a directory"):
        prepare_output_dir("taken/x")


def test_the_run_checks_again_what_enqueue_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job queued where another process allowed more is refused by a worker that
    does not: the worker's own settings decide."""
    with pytest.raises(OutputDirError, match=OUTPUT_ROOTS_ENV):
        output_root(os.path.join(os.sep, "var", "tmp", "llmsched"))
