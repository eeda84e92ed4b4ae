"""Every file and directory the scheduler creates is private: the data directory and
what it holds (the database and its -wal/-shm, run logs, the spool, outputs) are 0700
and 0600 whatever the umask, or 2770 and 0660 with LLMSCHED_FILE_MODE=group.

Modes are checked with stat, and, when the tests run as root, by the unprivileged user
`nobody` trying to read what was written: in a directory every user may enter, so that
only the modes we set keep it out.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.outputs import OUTPUT_ROOTS_ENV
from flows.tasks import output_root, write_output
from scheduler_core import SchedulerService
from scheduler_core.errors import ConfigurationError
from scheduler_core.files import FILE_MODE_ENV, open_private, private_dir
from scheduler_core.statuses import JobRunStatus
from scheduler_core.values import Claim, Outcome

SECRET = "whsec-file-modes-4f1d2a"
"""Stored in a job's params, so the database files hold it."""

UNPRIVILEGED = "nobody"


def _nobody_available() -> str | None:
    """Why the `nobody` checks cannot run here, or None."""
    if os.geteuid() != 0:
        return "not running as root: cannot run commands as another user"
    if shutil.which("runuser") is None:
        return "runuser is not installed"
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        return f"no user {UNPRIVILEGED!r} on this machine"
    return None


NOBODY_MISSING = _nobody_available()


def nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", UNPRIVILEGED, "--", *command],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory every user may enter and list (pytest's own are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="llmsched-modes-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def home(base: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two levels that do not exist yet: missing parents are created private too."""
    home = base / "data" / "llmsched"
    monkeypatch.setenv("LLMSCHED_HOME", str(home))
    for name in ("LLMSCHED_DATABASE_URL", "LLMSCHED_LOG_DIR", FILE_MODE_ENV, OUTPUT_ROOTS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return home


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The modes must not depend on the umask; 000 is the one that would widen them."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def fail(_params: dict[str, object]) -> None:
    raise ValueError("a failing run writes its log")


def create_everything(svc: SchedulerService) -> None:
    """Everything we create in the data directory: the database (opened already), a
    run's log, a spooled end and an output."""
    svc.register("job", fail)
    svc.enqueue_job("job", {"token": SECRET}, max_retries=0)
    dispatched = svc.dispatch_one()
    assert dispatched is not None
    job, run = dispatched
    assert run.status == JobRunStatus.FAILED and run.log_path, run
    svc.spool.keep("gone-worker", Claim(job=job, run=run), Outcome(status=JobRunStatus.FAILED))
    write_output(output_root("stories/nightly"), kind="story", about="x", suffix="md", text=SECRET)


def created(home: Path) -> tuple[list[Path], list[Path]]:
    """(directories, files) from the first directory we created down; called while the
    database is open, since closing it removes -wal and -shm."""
    top = home.parent
    dirs, files = [top], []
    for root, dirnames, filenames in os.walk(top):
        dirs += [Path(root, name) for name in dirnames]
        files += [Path(root, name) for name in filenames]
    return dirs, files


def modes(paths: list[Path]) -> dict[str, str]:
    return {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths}


def test_everything_created_is_private_whatever_the_umask(home: Path, umask: int) -> None:
    with SchedulerService.open() as svc:
        create_everything(svc)
        dirs, files = created(home)
        dir_modes, file_modes = modes(dirs), modes(files)
    names = {p.relative_to(home).as_posix() for p in files}
    assert {"jobs.db", "jobs.db-wal", "jobs.db-shm"} <= names, names
    assert any(n.startswith("logs/") for n in names), names
    assert any(n.startswith("spool/") for n in names), names
    assert any(n.startswith("artifacts/stories/nightly/story-x-") for n in names), names
    assert {home, home / "logs", home / "spool", home / "artifacts" / "stories"} <= set(dirs)
    assert dir_modes == {str(d): oct(0o700) for d in dirs}
    assert file_modes == {str(f): oct(0o600) for f in files}


def test_group_mode_shares_with_the_group(
    home: Path, umask: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FILE_MODE_ENV, "group")
    with SchedulerService.open() as svc:
        create_everything(svc)
        dirs, files = created(home)
        found = {**modes(dirs), **modes(files)}
    logs = {str(p) for p in [*dirs, *files] if "logs" in p.relative_to(home.parent).parts}
    assert {name for name in found if name.endswith(("jobs.db-wal", "jobs.db-shm"))}
    assert {k: v for k, v in found.items() if k not in logs} == {
        **{str(d): oct(0o2770) for d in dirs if str(d) not in logs},
        **{str(f): oct(0o660) for f in files if str(f) not in logs},
    }
    # The run log is opened by the executor: never wider than the setting either.
    assert logs and all(int(found[p], 8) & ~0o2770 == 0 for p in logs)


@pytest.mark.parametrize("value", ["public", "0644", "world"])
def test_an_unknown_file_mode_setting_is_refused_before_anything_is_created(
    home: Path, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FILE_MODE_ENV, value)
    with pytest.raises(ConfigurationError, match=f"{FILE_MODE_ENV}=.*'private'.*'group'"):
        SchedulerService.open()
    assert not home.parent.exists()


def test_a_directory_the_user_made_keeps_its_mode_and_the_files_stay_private(
    home: Path,
) -> None:
    """A wider home the user chose is not changed; what we create inside it is private."""
    home.mkdir(parents=True)
    home.chmod(0o755)
    with SchedulerService.open() as svc:
        create_everything(svc)
        _, files = created(home)
        file_modes = modes(files)
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert file_modes == {str(f): oct(0o600) for f in files}
    for sub in ("logs", "spool", "artifacts"):
        assert stat.S_IMODE((home / sub).stat().st_mode) == 0o700, sub


def test_an_existing_wider_database_is_reported_not_changed(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home.mkdir(parents=True, mode=0o700)
    database = home / "jobs.db"
    database.touch()
    database.chmod(0o644)
    with caplog.at_level(logging.WARNING), SchedulerService.open():
        pass
    assert stat.S_IMODE(database.stat().st_mode) == 0o644
    (warning,) = [r for r in caplog.records if "action=database_file_readable" in r.message]
    assert str(database) in warning.message and "chmod go-rwx" in warning.message


def test_open_private_creates_exclusively_and_keeps_an_existing_files_mode(
    tmp_path: Path, umask: int
) -> None:
    path = tmp_path / "out.txt"
    with open_private(path, "x") as file:
        file.write("one")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        open_private(path, "x")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):  # never written through a link
        open_private(tmp_path / "link", "x")
    assert not (tmp_path / "elsewhere").exists()
    path.chmod(0o640)
    with open_private(path, "a") as file:
        file.write("two")
    assert path.read_text() == "onetwo" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(private_dir(tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700


@pytest.mark.skipif(NOBODY_MISSING is not None, reason=str(NOBODY_MISSING))
def test_nobody_can_read_nothing_we_created(home: Path) -> None:
    """The attack as reported: another local user reading the secret. The data directory
    is made traversable first (a user's own choice), so each file's mode is what is
    tested; a control file proves `nobody` reads whatever the modes allow."""
    home.parent.mkdir(mode=0o755)
    home.mkdir(mode=0o755)
    control = home / "control.txt"
    control.write_text(SECRET)
    control.chmod(0o644)
    with SchedulerService.open() as svc:
        create_everything(svc)
        dirs, files = created(home)
        files.remove(control)
        seen = nobody("cat", str(control))
        assert seen.returncode == 0 and SECRET in seen.stdout, seen
        assert nobody("ls", str(home)).returncode == 0  # the home was left as the user made it
        database = [f for f in files if f.name.startswith("jobs.db")]
        assert len(database) == 3 and any(SECRET.encode() in f.read_bytes() for f in database)
        for path in files:
            refused = nobody("cat", str(path))
            assert refused.returncode != 0 and "Permission denied" in refused.stderr, path
            assert SECRET not in refused.stdout
        for path in dirs:
            if path in (home, home.parent):
                continue
            listed = nobody("ls", str(path))
            assert listed.returncode != 0 and "Permission denied" in listed.stderr, path


@pytest.mark.skipif(NOBODY_MISSING is not None, reason=str(NOBODY_MISSING))
def test_nobody_cannot_enter_a_data_directory_we_created(home: Path) -> None:
    with SchedulerService.open():
        assert nobody("ls", str(home.parent)).returncode != 0
        refused = nobody("cat", str(home / "jobs.db"))
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
