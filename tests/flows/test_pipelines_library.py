"""The pipelines with their library, through the scheduler and the fake LLM server: research
feeds stories, nothing is generated twice, every call is accounted for and capped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from flows import story as story_module
from flows.library import get_output, list_outputs, output_at, usage_summary
from flows.library.caps import DAILY_CAP_ENV, GROUP_CAP_ENV
from flows.library.prices import PRICES_FILE_ENV, cost_usd
from flows.pipelines import install_pipelines
from flows.structures import Structure, pick_structure
from scheduler_core import JobStatus, SchedulerService
from tests.flows.support import dispatch_until_ended
from tests.llm_server.process import LLMServerProcess

HOSTED = "openai/gpt-4o-mini"


@pytest.fixture
def pipelines(
    svc: SchedulerService, fake_llm: LLMServerProcess, monkeypatch: pytest.MonkeyPatch
) -> SchedulerService:
    for name in (DAILY_CAP_ENV, GROUP_CAP_ENV, PRICES_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    install_pipelines(svc)
    return svc


def run_group(svc: SchedulerService, jobs: list[dict[str, Any]]) -> list[Any]:
    group, members = svc.create_job_group(jobs=jobs, name="library")
    for _ in members:
        dispatch_until_ended(svc)
    assert svc.get_job_group(group.group_id or 0).status.is_terminal
    return [svc.get_job_run_for_job(m.job_id or 0) for m in members]


def story_requests(fake_llm: LLMServerProcess) -> list[dict[str, Any]]:
    """The story-writing calls the fake server saw (not the research or check calls)."""
    requests = fake_llm.stats()["requests"]
    return [r for r in requests if r.get("messages") and not r["json"]]


def front_matter(path: str) -> dict[str, Any]:
    header = Path(path).read_text().split("---\n")[1]
    return {
        key: json.loads(value)
        for key, _, value in (line.partition(": ") for line in header.splitlines())
    }


def test_research_feeds_two_stories_of_a_group(
    pipelines: SchedulerService,
    fake_llm: LLMServerProcess,
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picked_with: list[list[str]] = []  # the history each pick was given

    def pick(recent: Sequence[str], **options: Any) -> Structure:
        picked_with.append(list(recent))
        return pick_structure(recent, **options)

    monkeypatch.setattr(story_module, "pick_structure", pick)
    common = {"model": HOSTED, "output_dir": str(out_dir), "length": 200}
    research, first, second = run_group(
        pipelines,
        [
            {
                "job_type": "research",
                "name": "tides",
                "params": {"topic": "tidal energy", "tags": ["ocean"], "model": HOSTED},
            },
            {
                "job_type": "story",
                "params": {"theme": "a harbour at night", "cards": {"$outputs": "tides"}, **common},
            },
            {
                "job_type": "story",
                "params": {
                    "theme": "a ferry that never docks",
                    "cards": {"$outputs": "tides"},
                    **common,
                },
            },
        ],
    )

    card = output_at(research.artifacts[0])
    assert card is not None and card.kind == "research" and len(card.key_concepts) >= 3
    written = story_requests(fake_llm)
    assert len(written) == 2
    for run, request in zip((first, second), written, strict=True):
        prompt = request["messages"][-1]["content"]
        assert all(concept in prompt for concept in card.key_concepts)
        assert front_matter(run.artifacts[0])["cards"] == [card.id]
        story = output_at(run.artifacts[0])
        assert story is not None and story.cards_used == [card.id]
        sidecar = json.loads(Path(run.artifacts[0] + ".meta.json").read_text())
        assert sidecar["cards_used"] == [card.id] and sidecar["output_id"] == story.id
        assert (sidecar["job_id"], sidecar["run_id"], sidecar["flow_run_id"]) == (
            run.job_id,
            run.run_id,
            run.flow_run_id,
        )
    # The picker was given the library's history: the second story saw the first's
    # structure as the latest, so it could not repeat it.
    first_structure = front_matter(first.artifacts[0])["structure"]
    assert picked_with[-1][-1] == first_structure
    assert front_matter(second.artifacts[0])["structure"] != first_structure


def test_a_research_topic_is_researched_first_when_the_library_has_no_card(
    pipelines: SchedulerService, fake_llm: LLMServerProcess, out_dir: Path
) -> None:
    params = {"theme": "a lighthouse", "research_topic": "fog signals", "output_dir": str(out_dir)}
    pipelines.enqueue_job("story", {**params, "model": HOSTED})
    job, run = dispatch_until_ended(pipelines)
    assert job.status == JobStatus.COMPLETED, run.error
    [card] = list_outputs(kind="research")
    assert card.topic == "fog signals" and card.job_id == job.job_id  # the story's own job
    assert front_matter(run.artifacts[0])["cards"] == [card.id]

    # The next story on that topic takes the card from the library: no research call.
    fake_llm.reset()
    pipelines.enqueue_job("story", {**params, "theme": "a foghorn", "model": HOSTED})
    job, run = dispatch_until_ended(pipelines)
    assert job.status == JobStatus.COMPLETED, run.error
    assert [r["json"] for r in fake_llm.stats()["requests"]] == [False]
    assert front_matter(run.artifacts[0])["cards"] == [card.id]


@pytest.mark.parametrize("kind", ["story", "research"])
def test_a_repeated_output_is_rewritten_then_skipped(
    pipelines: SchedulerService, fake_llm: LLMServerProcess, out_dir: Path, kind: str
) -> None:
    """`openai/repeat-…` writes the same text whatever it is asked: the first output is kept, the
    second is a near-duplicate at every try (1 + LLMSCHED_NOVELTY_REWRITES = 3) and its job
    ends without writing, in a Prefect state named Skipped that says of what, its outputs
    the earlier one."""
    about = {"story": "theme", "research": "topic"}[kind]
    params = {"model": "openai/repeat-writer", "output_dir": str(out_dir)}
    pipelines.enqueue_job(kind, {about: "the first one", **params})
    first_job, first_run = dispatch_until_ended(pipelines)
    assert first_job.status == JobStatus.COMPLETED, first_run.error
    [first] = list_outputs(kind=kind)

    fake_llm.reset()
    pipelines.enqueue_job(kind, {about: "another one", **params})
    job, run = dispatch_until_ended(pipelines)

    assert job.status == JobStatus.COMPLETED
    assert run.artifacts == [first.path]  # what a later member using its outputs gets
    calls = [r for r in fake_llm.stats()["requests"] if r.get("messages")]
    assert len(calls) == 3  # the draft and two rewrites
    assert "angle" in json.dumps(calls[-1]["messages"])  # a rewrite asks for another angle
    assert list_outputs(kind=kind) == [first]
    state = asyncio.run(_flow_run_state(run.flow_run_id))
    assert state.name == "Skipped"
    assert f"near-duplicate of output {first.id} ({first.path})" in (state.message or "")


def test_on_duplicate_fail_fails_the_job_naming_the_earlier_output(
    pipelines: SchedulerService, out_dir: Path
) -> None:
    params = {"model": "openai/repeat-writer", "output_dir": str(out_dir), "on_duplicate": "fail"}
    pipelines.enqueue_job("story", {"theme": "the first one", **params})
    dispatch_until_ended(pipelines)
    [first] = list_outputs(kind="story")
    pipelines.enqueue_job("story", {"theme": "another one", **params}, max_retries=0)
    job, run = dispatch_until_ended(pipelines)
    assert job.status == JobStatus.FAILED
    assert f"near-duplicate of output {first.id}" in (run.error or "")
    assert "after 3 tries" in (run.error or "")


def test_usage_and_cost_match_the_servers_token_counts(
    pipelines: SchedulerService, fake_llm: LLMServerProcess, out_dir: Path
) -> None:
    runs = run_group(
        pipelines,
        [
            {"job_type": "research", "params": {"topic": "kelp forests", "model": HOSTED}},
            {
                "job_type": "story",
                "params": {
                    "theme": "a diver's last dive",
                    "model": HOSTED,
                    "post_check": "warn",
                    "output_dir": str(out_dir),
                },
            },
        ],
    )
    served = [r["usage"] for r in fake_llm.stats()["requests"] if "usage" in r]
    assert len(served) == 3  # the card, the story and its post-check
    tokens_in, tokens_out = (sum(u[i] for u in served) for i in (0, 1))
    [total] = usage_summary(by=(), group_id=get_output_group(runs))
    assert (total.calls, total.input_tokens, total.output_tokens) == (3, tokens_in, tokens_out)
    assert total.cost_usd == pytest.approx(cost_usd(HOSTED, tokens_in, tokens_out))
    story = output_at(runs[1].artifacts[0])
    assert story is not None
    assert (story.input_tokens, story.output_tokens) == (
        sum(u[0] for u in served[1:]),
        sum(u[1] for u in served[1:]),
    )


def get_output_group(runs: list[Any]) -> int:
    item = output_at(runs[0].artifacts[0])
    assert item is not None and item.group_id is not None
    return item.group_id


def test_a_spending_cap_stops_hosted_work_at_the_cap(
    pipelines: SchedulerService,
    fake_llm: LLMServerProcess,
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipelines.enqueue_job("research", {"topic": "salt marshes", "model": HOSTED})
    job, run = dispatch_until_ended(pipelines)
    assert job.status == JobStatus.COMPLETED, run.error
    [spent] = usage_summary(by=())
    monkeypatch.setenv(DAILY_CAP_ENV, f"{spent.cost_usd:.6f}")  # reached: nothing more
    fake_llm.reset()

    pipelines.enqueue_job("research", {"topic": "mud flats", "model": HOSTED}, max_retries=0)
    job, run = dispatch_until_ended(pipelines)
    assert job.status == JobStatus.FAILED
    assert "LLMSCHED_DAILY_SPEND_CAP_USD" in (run.error or "") and "not made" in (run.error or "")
    assert fake_llm.stats()["requests"] == []
    # Local models are never capped.
    pipelines.enqueue_job("research", {"topic": "mud flats", "model": "offline/analyst"})
    job, run = dispatch_until_ended(pipelines)
    assert job.status == JobStatus.COMPLETED, run.error
    assert get_output(output_at(run.artifacts[0]).id or 0).cost_usd == 0  # type: ignore[union-attr]


async def _flow_run_state(flow_run_id: str | None) -> Any:
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
    return flow_run.state
