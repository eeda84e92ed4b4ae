"""Fixtures of the rule tests: a job type "job" whose handler the test can hold and release.

The webhook scenarios of test_e2e.py use the webhook tests' `hooked` and `receiver`.
"""

from __future__ import annotations

import pytest

from scheduler_core import SchedulerService
from tests.scheduler.rules_support import GateHandler
from tests.webhooks.conftest import hooked, receiver  # noqa: F401  (fixtures, shared)


@pytest.fixture
def handler() -> GateHandler:
    return GateHandler()


@pytest.fixture
def jobs(svc: SchedulerService, handler: GateHandler) -> SchedulerService:
    svc.register("job", handler, resource="external")
    return svc
