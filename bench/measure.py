"""Figures, targets and the alternating measurement that every row shares.

Each round runs every side once, in turn, so that machine drift (thermal, cache,
another process) hits the baseline and the product alike; a row then reports the
median of the rounds with the min-max spread, and the median of per-round ratios.
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Series:
    """One side's figure, once per round."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def as_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "rounds": self.values}


@dataclass(frozen=True, slots=True)
class Goal:
    """A target as the issue states it; `on_ratio` judges the ratio instead of the figure."""

    text: str
    bound: float
    at_least: bool
    on_ratio: bool = False

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        judged = ratio if self.on_ratio else value
        if judged is None:
            return None
        return judged >= self.bound if self.at_least else judged <= self.bound


@dataclass(slots=True)
class Result:
    """One table row on one backend."""

    row: str
    backend: str
    unit: str
    ours: Series | None = None
    baseline: Series | None = None
    baseline_label: str = ""
    ratios: Series | None = None
    goal: Goal | None = None
    extra_ok: bool = True  # a condition beside the figure, e.g. zero double runs
    note: str = ""
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.ratios.median if self.ratios else None

    @property
    def met(self) -> bool | None:
        if self.error is not None:
            return False
        if self.goal is None or self.ours is None:
            return None
        met = self.goal.met(self.ours.median, self.ratio)
        return None if met is None else met and self.extra_ok

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "backend": self.backend,
            "unit": self.unit,
            "ours": self.ours.as_json() if self.ours else None,
            "baseline": self.baseline.as_json() if self.baseline else None,
            "baseline_label": self.baseline_label,
            "ratio": self.ratios.as_json() if self.ratios else None,
            "target": self.goal.text if self.goal else None,
            "met": self.met,
            "note": self.note,
            "error": self.error,
            "details": self.details,
        }


def compare(
    row: str,
    backend: str,
    unit: str,
    ours: list[float],
    baseline: list[float] | None = None,
    *,
    baseline_label: str = "",
    goal: Goal | None = None,
    **extra: Any,
) -> Result:
    """A row from paired per-round figures; the ratio is ours / baseline per round."""
    ratios = None
    if baseline is not None:
        ratios = Series([o / b if b else float("inf") for o, b in zip(ours, baseline, strict=True)])
    return Result(
        row=row,
        backend=backend,
        unit=unit,
        ours=Series(ours),
        baseline=Series(baseline) if baseline is not None else None,
        baseline_label=baseline_label,
        ratios=ratios,
        goal=goal,
        **extra,
    )


def alternate(rounds: int, sides: Iterable[Callable[[], float]]) -> list[list[float]]:
    """Run every side once per round, in turn; one list of figures per side."""
    order = list(sides)
    figures: list[list[float]] = [[] for _ in order]
    for _ in range(rounds):
        for figure, side in zip(figures, order, strict=True):
            figure.append(side())
    return figures


def rate(n: int, step: Callable[[], object]) -> float:
    """Operations per second of `n` calls of `step`."""
    start = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - start)


def per_call_ms(n: int, run: Callable[[], object]) -> float:
    """Milliseconds per operation of one `run` that performs `n` operations."""
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000 / n


def gaps_ms(spans: Iterable[tuple[float, float]]) -> list[float]:
    """Idle time between consecutive (start, end) spans, in ms, ordered by start."""
    ordered = sorted(spans)
    return [(nxt[0] - cur[1]) * 1000 for cur, nxt in itertools.pairwise(ordered)]


ROOT = Path(__file__).resolve().parents[1]


def spawn(module: str, *args: object) -> subprocess.Popen[bytes]:
    """A fresh Python process running `python -m module args` from the project root."""
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT)


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.005)
