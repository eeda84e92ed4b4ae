"""The library's tests: each on its own database (a SQLite file, or a PostgreSQL schema),
with no spending cap or prices file from the environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flows.library import OutputItem, RunContext, close_library, record_output
from flows.library.caps import DAILY_CAP_ENV, GROUP_CAP_ENV
from flows.library.prices import PRICES_FILE_ENV


@pytest.fixture
def lib(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test's database URL, its library engine closed afterwards."""
    for name in (DAILY_CAP_ENV, GROUP_CAP_ENV, PRICES_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    yield db_url
    close_library(db_url)


@pytest.fixture
def add_output(lib: str) -> Callable[..., OutputItem]:
    """Factory: register an output on the test's database (a research card by default)."""

    def factory(**fields: Any) -> OutputItem:
        values: dict[str, Any] = {
            "kind": "research",
            "path": "/nowhere/out.json",
            "context": RunContext(),
        }
        values.update(fields)
        return record_output(db=lib, **values)

    return factory
