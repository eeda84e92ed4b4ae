"""The resource classes the pipelines' jobs need and their caps. No Prefect import, so
the command line declares them on every open at no cost."""

from __future__ import annotations

from scheduler_core.service import SchedulerService

RESOURCE_LIMITS: dict[str, int] = {"ollama": 1}
"""Only one Ollama workload runs at a time on an Ollama server (the test plan's RULE-1);
each worker binds the class to its server's slot (flows/pipelines.py)."""


def declare_resources(svc: SchedulerService) -> None:
    """Cap each class on `svc`'s database (written only when it differs)."""
    for resource, limit in RESOURCE_LIMITS.items():
        svc.set_resource_limit(resource, limit)
