"""What a finished draft goes through before it becomes an output, for every pipeline:
compared with everything generated before (flows/novelty), and once saved, registered in
the output library with what it cost, remembered for later comparisons, and described by
a sidecar and the run's artifact (flows/library).

A near-duplicate is rewritten by the pipeline (another structure or angle) up to
LLMSCHED_NOVELTY_REWRITES times; then the job ends as `on_duplicate` says: `skip` (the
default) completes it without writing anything, in a Prefect state named "Skipped", its
outputs the earlier output it repeats, so a nightly group goes on and a later member
that uses them draws on that one; `fail` fails it, and the scheduler's retry rule
applies as to any failure.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from prefect import get_run_logger
from prefect.states import Completed, State

from flows.library import (
    OutputItem,
    OutputNotFoundError,
    current_run_context,
    get_output,
    record_output,
    sidecar_data,
    sidecar_markdown,
    usage_summary,
    write_sidecar,
)
from flows.llm import LLMResponseError
from flows.novelty import NoveltyVerdict, acheck_novelty, aremember
from flows.novelty.settings import novelty_settings

OnDuplicate = Literal["skip", "fail"]
ON_DUPLICATE: tuple[str, ...] = get_args(OnDuplicate)
SKIPPED = "Skipped"
"""The name of the Completed state a run skipped as a near-duplicate ends in."""


class NearDuplicateError(LLMResponseError):
    """Under `on_duplicate="fail"`: every draft repeated an earlier output. Another
    attempt samples again, so it stays retryable like other unusable replies."""


@dataclass(frozen=True)
class Novelty:
    """A draft's novelty verdict, and the earlier output it resembles most (if any)."""

    verdict: NoveltyVerdict
    nearest: OutputItem | None

    @property
    def duplicate(self) -> bool:
        return self.verdict.duplicate

    def describe(self) -> str:
        nearest = self.nearest
        what = f"output {nearest.id} ({nearest.path})" if nearest else "an earlier output"
        return (
            f"near-duplicate of {what}: similarity {self.verdict.similarity:.2f} at or above "
            f"{self.verdict.threshold:g} ({self.verdict.method})"
        )


def check_on_duplicate(value: str) -> OnDuplicate:
    if value not in ON_DUPLICATE:
        raise ValueError(
            f"on_duplicate must be one of {', '.join(ON_DUPLICATE)}, got {value!r}: pass "
            "on_duplicate='skip' to end a repeated output's job without it, or 'fail'"
        )
    return value  # type: ignore[return-value]


def rewrites() -> int:
    """How many rewrites a near-duplicate gets (LLMSCHED_NOVELTY_REWRITES)."""
    return novelty_settings().novelty_rewrites


async def compare(kind: str, text: str, *, ollama_host: str | None) -> Novelty:
    """`text` against every earlier output of `kind`, on every worker (flows/novelty)."""
    verdict = await acheck_novelty(kind, text, ollama_host=ollama_host)
    nearest = None
    if verdict.nearest_item_id is not None and verdict.nearest_item_id.isdigit():
        try:
            nearest = await asyncio.to_thread(get_output, int(verdict.nearest_item_id))
        except OutputNotFoundError:
            nearest = None
    get_run_logger().info(
        "novelty: nearest %s %s at %.2f (%s, threshold %g, %d compared)",
        kind,
        nearest.id if nearest else "-",
        verdict.similarity,
        verdict.method,
        verdict.threshold,
        verdict.compared,
    )
    return Novelty(verdict=verdict, nearest=nearest)


def end_as_duplicate(novelty: Novelty, *, tries: int, on_duplicate: str) -> State[list[str]]:
    """The run's end once every draft was a near-duplicate (see the module's docstring)."""
    message = f"{novelty.describe()}, after {tries} {'try' if tries == 1 else 'tries'}"
    if on_duplicate == "fail":
        raise NearDuplicateError(
            f"{message}; retry, raise LLMSCHED_NOVELTY_THRESHOLD, or pass on_duplicate='skip'"
        )
    get_run_logger().warning("skipped, nothing saved: %s", message)
    # The earlier output stands for this one: a later group member that takes this job's
    # outputs ({"$outputs": name}) draws on it, as it would have on a new one.
    earlier = [novelty.nearest.path] if novelty.nearest is not None else []
    return Completed(name=SKIPPED, message=message, data=earlier)


@dataclass(frozen=True)
class Accepted:
    item: OutputItem
    sidecar: Path
    table: str
    """The sidecar as Markdown, for the run's artifact."""


async def accept(
    kind: str,
    path: str,
    text: str,
    *,
    novelty: Novelty,
    model: str,
    started: float,
    ollama_host: str | None,
    **fields: Any,
) -> Accepted:
    """Register the saved output `path` (`fields`: record_output's title, topic, tags,
    key_concepts, structure, structure_kind, cards_used) with the tokens every model call
    of this run used and the time since `started` (time.monotonic()), remember `text` for
    later comparisons, and write its sidecar."""
    context = current_run_context()

    def register() -> OutputItem:
        totals = (
            usage_summary(by=(), flow_run_id=context.flow_run_id) if context.flow_run_id else []
        )
        return record_output(
            kind=kind,
            path=path,
            model=model,
            input_tokens=totals[0].input_tokens if totals else None,
            output_tokens=totals[0].output_tokens if totals else None,
            duration_seconds=round(time.monotonic() - started, 3),
            nearest_id=novelty.nearest.id if novelty.nearest else None,
            similarity=round(novelty.verdict.similarity, 4) if novelty.nearest else None,
            context=context,
            **fields,
        )

    item = await asyncio.to_thread(register)
    await aremember(item.id or 0, kind, text, ollama_host=ollama_host)
    data = sidecar_data(item, run_id=context.run_id, novelty_method=novelty.verdict.method)
    sidecar = await asyncio.to_thread(write_sidecar, path, data)
    get_run_logger().info("registered %s %s; sidecar %s", kind, item.id, sidecar)
    return Accepted(item=item, sidecar=sidecar, table=sidecar_markdown(data))
