"""A fixed corpus of malformed input, through the command line and the Python API: every
case is refused with exit code 2 (the API: a SchedulerError) and one clean error line,
and the database's row counts stay as they were.

The corpus is deterministic (hypothesis is not a dependency); the commands run in one
process (tests/cli/cli_runner.py), so a few hundred cases take seconds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler_core import SchedulerError, SchedulerService
from scheduler_core.validation import shown
from tests.cli.cli_runner import row_counts
from tests.cli.conftest import OFFLINE, ROOT, cli_env

BIG_IDS = [
    "0",
    "-1",
    "1e3",
    "9223372036854775808",
    "99999999999999999999999999",
    "abc",
    "1.5",
    "",
    "0x10",
]
DEEP = 900


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_json(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def id_commands() -> list[list[str]]:
    commands: list[list[str]] = []
    for bad in BIG_IDS:
        commands += [
            ["show", bad],
            ["cancel", bad],
            ["retry", bad],
            ["priority", bad, "1"],
            ["group", "show", bad],
            ["group", "cancel", bad],
            ["jobs", "--group", bad],
        ]
    return commands


def submit_commands() -> list[list[str]]:
    story = ["submit", "story"]
    bad_params = [
        ["theme="],
        ["theme=   "],
        ["theme=x", "length=10"],
        ["theme=x", "length=1e29"],
        ["theme=x", "length=abc"],
        ["theme=x", "length=-5"],
        ["theme=x", "length=5001"],
        ["theme=x", "length=[1]"],
        ["theme=x", "genre="],
        ["theme=x", "colour=red"],
        ["theme=a\x00b"],
        ["theme=x", f"deep={deep_json(DEEP)}"],
        ["theme=x", f"deep={deep_json(40)}"],
        ["theme=x", "big=" + "y" * (300 * 1024)],
        ["theme=x", "model=nope/none"],
        ["=x"],
        ["theme"],
        ["1theme=x"],
    ]
    commands = [story + p for p in bad_params]
    commands += [
        ["submit", "research", "topic="],
        ["submit", "research", "topic=x", "tags=5"],
        ["submit", "research", "theme=x"],
        ["submit", "poem", "theme=x"],
        ["submit", "../../../../outside/x", "theme=x"],
        ["submit", "", "theme=x"],
        ["submit", "story\x00", "theme=x"],
    ]
    for params_json in [
        "[]",
        "null",
        "1",
        "{",
        '{"theme": NaN}',
        '{"theme": "x", "length": 1e400}',
        '{"theme": "x", "length": Infinity}',
        deep_json(DEEP),
        deep_json(33),
        json.dumps({"theme": "x", "pad": "z" * (300 * 1024)}),
        '{"theme": "x", "length": ' + "9" * 5000 + "}",
        '{"theme": "\\u0000"}',
    ]:
        commands.append([*story, "--params-json", params_json])
    for option, value in [
        ("--priority", str(2**31)),
        ("--priority", "x"),
        ("--max-retries", "-1"),
        ("--max-retries", "1001"),
        ("--timeout", "0"),
        ("--timeout", "-1"),
        ("--timeout", "inf"),
        ("--timeout", "nan"),
        ("--timeout", "1e308"),
        ("--key", "k\x00"),
        ("--key", "k" * 300),
    ]:
        commands.append([*story, "theme=x", option, value])
    commands += [
        ["run", "story", "theme="],
        ["run", "story", "theme=x", "length=1"],
        ["run", "poem"],
        ["run", "story", "theme=x", "--job-timeout", "0"],
        ["jobs", "--status", "bogus"],
        ["jobs", "--limit", "0"],
        ["jobs", "--type", "x\x00"],
    ]
    return commands


def group_files(tmp: Path) -> dict[str, Path]:
    """Malformed group files by name: made once per test in `tmp`."""
    files: dict[str, Path] = {}

    def write(name: str, content: str | bytes) -> None:
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        files[name] = path

    member = {"job_type": "story", "params": {"theme": "x"}}
    fifo = tmp / "fifo.yaml"
    os.mkfifo(fifo)
    files["fifo.yaml"] = fifo
    files["dev-zero"] = Path("/dev/zero")
    files["dev-null"] = Path("/dev/null")
    files["directory"] = tmp
    files["missing.yaml"] = tmp / "missing.yaml"
    write("deep.json", '{"jobs": [{"job_type": "story", "params": ' + deep_json(DEEP) + "}]}")
    write("deep.yaml", "jobs:\n- job_type: story\n  params: " + deep_json(DEEP) + "\n")
    write("deep-list.yaml", "jobs: " + "[" * DEEP + "]" * DEEP + "\n")
    write("deep-params.json", json.dumps({"jobs": [{"job_type": "story", "params": nested(33)}]}))
    with (tmp / "huge.yaml").open("wb") as file:
        file.truncate(17 * 1024 * 1024)  # sparse: its size, not its content, is refused
    files["huge.yaml"] = tmp / "huge.yaml"
    write("too-many.json", json.dumps({"jobs": [member] * 50_001}))
    write("binary.yaml", bytes(range(256)))
    write("latin1.yaml", "jobs: [{job_type: story, params: {theme: caf\xe9}}]".encode("latin-1"))
    write("empty.yaml", "")
    write("list.yaml", "[]")
    write("scalar.yaml", "5")
    write("jobs-int.yaml", "jobs: 5")
    write("jobs-empty.yaml", "jobs: []")
    write("unknown-top.yaml", "jobs: [{job_type: story}]\ncron: daily\n")
    write("member-scalar.yaml", "jobs: [5]")
    write("member-unknown.yaml", "jobs: [{job_type: story, retries: 2}]")
    write("no-type.yaml", "jobs: [{params: {theme: x}}]")
    write("type-int.yaml", "jobs: [{job_type: 5}]")
    write("type-unknown.yaml", "jobs: [{job_type: poem}]")
    write("type-path.yaml", "jobs: [{job_type: '../../x'}]")
    write("params-list.yaml", "jobs: [{job_type: story, params: [1, 2]}]")
    write(
        "params-empty-theme.yaml",
        "jobs:\n"
        + "- {job_type: story, params: {theme: x}}\n" * 3
        + "- {job_type: story, params: {theme: ''}}\n",
    )
    write("params-length.yaml", "jobs: [{job_type: story, params: {theme: x, length: 1e29}}]")
    write("priority-str.yaml", "jobs: [{job_type: story, params: {theme: x}, priority: high}]")
    write("priority-big.yaml", "jobs: [{job_type: story, params: {theme: x}, priority: 4e12}]")
    write("retries-neg.yaml", "jobs: [{job_type: story, params: {theme: x}, max_retries: -1}]")
    write("big-int.yaml", "jobs: [{job_type: story, params: {theme: x, n: " + "9" * 5000 + "}}]")
    write("big-int.json", '{"jobs": [{"job_type": "story", "params": {"n": ' + "9" * 5000 + "}}]}")
    write("bad-date.yaml", "jobs: [{job_type: story, params: {theme: x, when: 2001-13-45}}]")
    write("tabs.yaml", "jobs:\n\t- job_type: story\n")
    write("unclosed.json", '{"jobs": [')
    write("nul-name.json", json.dumps({"name": "a\x00b", "jobs": [member]}))
    write("long-name.json", json.dumps({"name": "n" * 300, "jobs": [member]}))
    write("name-int.yaml", "name: 5\njobs: [{job_type: story, params: {theme: x}}]")
    write("nul-theme.json", json.dumps({"jobs": [{"job_type": "story", "params": {"t": "\x00"}}]}))
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    write("laughs.yaml", "\n".join(laughs) + "\njobs: [{job_type: story, params: {t: *a8}}]\n")
    return files


def group_commands(files: dict[str, Path]) -> list[list[str]]:
    commands = [["group", "submit", str(path)] for path in files.values()]
    good = files["params-length.yaml"].with_name("good.yaml")
    good.write_text("jobs: [{job_type: story, params: {theme: x}}]\n", encoding="utf-8")
    commands += [
        ["group", "submit", str(good), "--name", "a\x00b"],
        ["group", "submit", str(good), "--name", "n" * 300],
        ["group", "submit", str(good), "--key", "k\x00"],
    ]
    return commands


def run_commands(db_url: str, commands: list[list[str]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.cli.cli_runner", db_url],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cli_env(**OFFLINE),  # as the `cli` fixture: this test has no Prefect server
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


@pytest.fixture
def schema(setup_svc: SchedulerService) -> SchedulerService:
    """The schema exists before the first command, so row counts compare."""
    return setup_svc


# The CLI's checks are the API's (the API corpus below runs on both backends).
@pytest.mark.sqlite_only
def test_every_malformed_command_is_refused_with_one_line_and_writes_nothing(
    schema: SchedulerService, db_url: str, tmp_path: Path
) -> None:
    files_dir = tmp_path / "files"
    files_dir.mkdir()
    warm_up = ["submit", "story", "theme=warm-up"]  # declares the pipelines' resources
    corpus = id_commands() + submit_commands() + group_commands(group_files(files_dir))
    assert len(corpus) >= 150
    results = run_commands(db_url, [warm_up, *corpus])
    first, rest = results[0], results[1:]
    assert first["code"] == 0, first
    problems = []
    for result in rest:
        lines = result["stderr"].splitlines()
        clean = (
            result["code"] == 2
            and result["stdout"] == ""
            and len(lines) == 1
            and lines[0].startswith("error: ")
            and "Traceback" not in result["stderr"]
            and not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in lines[0])
            and result["rows"] == first["rows"]
        )
        if not clean:
            shown = [a[:60] for a in result["args"]]
            problems.append(f"{shown}: code {result['code']} {result['stderr'][:300]!r}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------- the Python API


def api_cases(svc: SchedulerService) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(name, call) for a corpus of bad calls of the public API."""
    bad_ids: list[Any] = [0, -1, 2**63, 2**64, 10**5000, True, "1", 1.0, None, [1]]
    for bad in bad_ids:
        for method in (
            "get_job",
            "cancel_job",
            "get_job_group",
            "cancel_job_group",
            "get_job_run",
            "get_job_run_for_job",
            "retry_run",
            "retry_job",
            "get_retry_chain",
            "release_reservation",
        ):
            yield f"{method}({shown(bad, 20)})", lambda m=method, b=bad: getattr(svc, m)(b)
        yield f"set_priority({shown(bad, 20)})", lambda b=bad: svc.set_priority(b, 1)
        yield f"update_job_params({shown(bad, 20)})", lambda b=bad: svc.update_job_params(b, {})
        yield f"set_external_id({shown(bad, 20)})", lambda b=bad: svc.set_external_id(b, "x")
        if bad is not None:  # None: no group filter
            yield f"list_jobs(group_id={shown(bad, 20)})", lambda b=bad: svc.list_jobs(group_id=b)
    bad_params: list[Any] = [
        nested(DEEP),
        nested(33),
        {"big": "x" * (300 * 1024)},
        {"nul": "\x00"},
        {"nan": math.nan},
        {"set": {1}},
        {"huge": 10**5000},
        {(1, 2): "tuple key"},
        [1],
        "params",
    ]
    bomb: Any = ["x"] * 10
    for _ in range(8):
        bomb = [bomb] * 10
    bad_params.append({"bomb": bomb})
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    bad_params.append(cyclic)
    for i, params in enumerate(bad_params):
        yield f"enqueue_job(params #{i})", lambda p=params: svc.enqueue_job("job", p)
        yield (
            f"create_job_group(params #{i})",
            lambda p=params: svc.create_job_group([{"job_type": "job", "params": p}]),
        )
    keyword_cases: list[tuple[str, dict[str, Any]]] = [
        ("not_before", {"not_before": "2030-01-01T00:00:00Z"}),
        ("naive not_before", {"not_before": datetime(2030, 1, 1)}),
        ("origin", {"origin": "bogus"}),
        ("origin list", {"origin": ["queue"]}),
        ("priority", {"priority": 2**31}),
        ("priority str", {"priority": "1"}),
        ("max_retries", {"max_retries": -1}),
        ("position", {"position": 2**63}),
        ("timeout", {"timeout_seconds": math.inf}),
        ("timeout nan", {"timeout_seconds": math.nan}),
        ("key", {"key": "k\x00"}),
        ("key int", {"key": 5}),
        ("external_id", {"external_id": "e" * 65}),
    ]
    for name, kwargs in keyword_cases:
        yield f"enqueue_job({name})", lambda k=kwargs: svc.enqueue_job("job", {}, **k)
    for job_type in (["job"], None, 5, "", "../x", "job\x00"):
        yield f"enqueue_job({shown(job_type, 20)})", lambda t=job_type: svc.enqueue_job(t, {})
    for jobs in (None, "job", {"job_type": "job"}, [], [5], [{"job_type": "job"}] * 50_001):
        label = f"{type(jobs).__name__}({len(jobs) if hasattr(jobs, '__len__') else ''})"
        if jobs != []:  # an empty batch queues nothing and is no error
            yield f"enqueue_jobs({label})", lambda j=jobs: svc.enqueue_jobs(j)
        yield f"create_job_group({label})", lambda j=jobs: svc.create_job_group(j)
    member = [{"job_type": "job"}]
    for name in ("a\x00b", "n" * 257, 5, None):
        yield (
            f"create_job_group(name={shown(name, 20)})",
            lambda n=name: svc.create_job_group(member, name=n),
        )
    yield "create_job_group(origin)", lambda: svc.create_job_group(member, origin="bogus")
    yield "create_job_group(key)", lambda: svc.create_job_group(member, key="k\x00")
    for resource in ("../x", "..", ".x", "a@b@c", "@x", "x@", "", "a/b", 5, "x" * 65):
        yield (
            f"set_resource_limit({shown(resource, 20)})",
            lambda r=resource: svc.set_resource_limit(r, 1),
        )
    for limit in (0, -1, True, 1.5, "1"):
        yield (
            f"set_resource_limit(limit={shown(limit, 20)})",
            lambda n=limit: svc.set_resource_limit("capped", n),
        )
    for name in ("../../../../outside/x", "", " job", "a/b", "t" * 129, 5, ".hidden"):
        yield f"register({shown(name, 20)})", lambda n=name: svc.register(n, lambda p: None)
    for ttl in (math.inf, math.nan, 0, -1, "1", True, 10**9):
        yield (
            f"reserve_next_slot(ttl={shown(ttl, 20)})",
            lambda t=ttl: svc.reserve_next_slot("me", ttl=t),
        )
    for by in (5, "b" * 257, "a\x00"):
        yield f"reserve_next_slot({shown(by, 20)})", lambda b=by: svc.reserve_next_slot(b)
    for status in (5, "bogus", ["QUEUED", 5], object()):
        yield f"list_jobs({shown(status, 20)})", lambda s=status: svc.list_jobs(s)
    for limit in (0, -1, "x", 1.5, True):
        yield f"list_jobs(limit={shown(limit, 20)})", lambda n=limit: svc.list_jobs(limit=n)
        yield (
            f"queued_without_external_id({shown(limit, 20)})",
            lambda n=limit: svc.queued_without_external_id(n),
        )
    for ids in ("abc", None, [5], ["x\x00"]):
        yield f"jobs_by_external_id({shown(ids, 20)})", lambda i=ids: svc.jobs_by_external_id(i)
    for key in (5, None, "k\x00"):
        yield f"job_by_key({shown(key, 20)})", lambda k=key: svc.job_by_key(k)
        yield f"group_by_key({shown(key, 20)})", lambda k=key: svc.group_by_key(k)
    yield "execute_direct(timeout=nan)", lambda: svc.execute_direct("job", {}, timeout=math.nan)
    yield (
        "execute_direct(reservation_id=0)",
        lambda: svc.execute_direct("job", {}, reservation_id=0),
    )
    yield "execute_direct(reserved_by=5)", lambda: svc.execute_direct("job", {}, reserved_by=5)


@pytest.fixture
def jobs(svc: SchedulerService) -> SchedulerService:
    svc.register("job", lambda params: None, resource="external")
    return svc


def test_every_malformed_api_call_raises_a_scheduler_error_and_writes_nothing(
    jobs: SchedulerService,
) -> None:
    before = row_counts(jobs.db.engine)
    registered = jobs.registry.names()
    problems = []
    cases = list(api_cases(jobs))
    assert len(cases) >= 200
    for name, call in cases:
        try:
            call()
        except SchedulerError as exc:
            if not str(exc).strip():
                problems.append(f"{name}: empty message")
        except Exception as exc:  # the finding: anything else escapes as a bug
            problems.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            problems.append(f"{name}: accepted")
    assert not problems, "\n".join(problems)
    assert row_counts(jobs.db.engine) == before
    assert jobs.registry.names() == registered
