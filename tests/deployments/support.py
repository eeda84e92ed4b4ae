"""The deployment file as the tests read it: the same YAML `prefect deploy` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
PREFECT_FILE = ROOT / "deployments" / "prefect.yaml"
WORK_POOL = "llmsched-pool"
FLOW_NAME = "submit-job-group"
SUBMIT_ENTRYPOINT = "flows/submit.py:submit_job_group"
JOB_POOL = "llmsched"
OFFLINE_MODELS = {"story": "offline/story-writer", "research": "offline/research-analyst"}


def project() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))
    return data


def all_deployments() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = project()["deployments"]
    return found


def deployments() -> list[dict[str, Any]]:
    """The scheduled job groups: deployments of the submit flow."""
    return [d for d in all_deployments() if d["entrypoint"] == SUBMIT_ENTRYPOINT]


def pipeline_deployments() -> list[dict[str, Any]]:
    """The pipelines' own deployments, on the work pool `llmsched worker` serves."""
    return [d for d in all_deployments() if d["entrypoint"] != SUBMIT_ENTRYPOINT]


def deployment(name: str) -> dict[str, Any]:
    (found,) = (d for d in deployments() if d["name"] == name)
    return found


def load_flow(entrypoint: str) -> Flow[..., Any]:
    """The flow `prefect deploy` loads: entrypoints are relative to the project root."""
    path, _, name = entrypoint.partition(":")
    return load_flow_from_entrypoint(f"{ROOT / path}:{name}")


def offline(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same jobs on the offline models, so a test needs no LLM."""
    return [
        {**job, "params": {**job.get("params", {}), "model": OFFLINE_MODELS[job["job_type"]]}}
        for job in jobs
    ]


def stored(params: Any, names: dict[str, int]) -> Any:
    """Params as the scheduler stores them: a reference to a member's outputs carries
    that member's index (scheduler_core/references.py)."""
    if isinstance(params, dict):
        if set(params) == {"$outputs"}:
            return {**params, "member": names[params["$outputs"]]}
        return {key: stored(value, names) for key, value in params.items()}
    if isinstance(params, list):
        return [stored(value, names) for value in params]
    return params
