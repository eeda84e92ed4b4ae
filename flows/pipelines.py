"""The job types this package provides: `story` and `research`, each a Prefect flow.

A job's resource class follows from its model: `ollama/...` needs its Ollama server's one
slot, hosted APIs run beside it (`external`), the offline model is `local`. Each process
binds `ollama` to the server its OLLAMA_HOST names (ollama_servers.py).
"""

from __future__ import annotations

import inspect
from typing import Any

from prefect import Flow

from flows.executor import PrefectExecutor, install_prefect, register_flow
from flows.llm import resolve_model
from flows.ollama_servers import OLLAMA_RESOURCE, named_server, ollama_slot_name
from flows.research import research_pipeline
from flows.resources import declare_resources
from flows.story import story_pipeline
from scheduler_core.service import SchedulerService

PIPELINES: dict[str, Flow[..., Any]] = {
    "story": story_pipeline,
    "research": research_pipeline,
}


def default_model(flow: Flow[..., Any]) -> str:
    return str(inspect.signature(flow.fn).parameters["model"].default)


def resource_by_model(flow: Flow[..., Any]) -> Any:
    fallback = default_model(flow)

    def resource(params: dict[str, Any]) -> str:
        """The model's class; an Ollama job that names its server, that server's slot."""
        resource = str(resolve_model(str(params.get("model") or fallback)).resource)
        host = params.get("ollama_host")
        if resource == OLLAMA_RESOURCE and host is not None:
            return ollama_slot_name(named_server(host))
        return resource

    return resource


def install_pipelines(svc: SchedulerService) -> PrefectExecutor:
    """Register every pipeline on `svc` and run its jobs as Prefect flow runs; the Ollama
    server this process calls takes one job at a time (the `ollama` resource's cap, bound
    to the server's slot)."""
    executor = install_prefect(svc)
    declare_resources(svc)
    svc.bind_resource(OLLAMA_RESOURCE, ollama_slot_name())
    for job_type, flow in PIPELINES.items():
        register_flow(svc, job_type, flow, resource=resource_by_model(flow))
    return executor
